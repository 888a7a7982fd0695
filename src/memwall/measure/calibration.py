"""The calibration store: terms measured lazily, cached per machine, checked before reuse.

A calibration is a JSON record (`data`, its format and keys: `memwall.records.calibration`) of
measured terms (`memwall.measure.terms`), keyed by kernel dtype (fp32, bf16, int8) or by the key
the caller names (overhead, eager pointwise, block).
It is cached per machine, thread count and library versions in the user data directory
(`MEMWALL_DATA_DIR` overrides it); `recalibrate=True` measures again. A cached record older
than MAX_AGE_DAYS, or one a spot measurement now disagrees with, is measured again. When the
data directory cannot be written the terms are kept in memory and `save_error` says why.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
import transformers

from memwall.io import write_json
from memwall.measure import block as B
from memwall.measure import terms as T
from memwall.measure.machine import LoadMonitor, age_days, cpu_model, load_average, now_iso
from memwall.measure.terms import CalConfig, default_config
from memwall.precision import DTYPE_BYTES
from memwall.records import store
from memwall.records.calibration import (
    CAL_FORMAT,
    KERNEL_DTYPES,
    PER_ACT,
    PER_DTYPE,
    CalibrationRecord,
    block_key,
    eager_key,
    interp_log,
    overhead_key,
    step_kind,
)
from memwall.spec import ModelSpec, act_dtype, kernel_dtype, runnable_precision
from memwall.version import __version__

MAX_AGE_DAYS = 7.0  # a cached calibration older than this is measured again
SPOT_TOLERANCE = 1.2  # a cached calibration must agree with a spot check within this factor
SPOT_LOOKS = 3  # ... in one of this many looks (a blip is not a change)
NOISY_SPREAD = 0.30  # a term whose interleaved rounds differ more than this is noisy
BUSY_LIMIT = 0.5  # cores other processes may keep busy during a calibration


def machine_key() -> dict[str, Any]:
    """What a calibration depends on: the CPU, threads and library versions."""
    return {
        "cpu_model": cpu_model()[0],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "memwall": __version__,
    }


def calibration_path(cfg: CalConfig) -> Path:
    """Where the calibration of this machine (and configuration) is cached."""
    k = machine_key()
    slug = hashlib.sha1(json.dumps([k, cfg.name], sort_keys=True).encode()).hexdigest()[:12]
    return store.calibration_path(slug)


def _read_cached(path: Path) -> dict[str, Any] | None:
    """The cached record at `path` if it is one of ours and recent enough, else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or data.get("format") != CAL_FORMAT:
        return None
    if age_days(data.get("date")) > MAX_AGE_DAYS:
        return None  # machines and their loads change: measure again
    if data.get("noisy"):
        return None  # measured while the machine was busy: never reused
    return data


def _fresh(cfg: CalConfig) -> dict[str, Any]:
    return {
        "format": CAL_FORMAT,
        "key": machine_key(),
        "config": cfg.name,
        "sizes": {"width": cfg.width, "gemv_bytes": cfg.gemv_bytes},
        "date": now_iso(),
        "load_average_1min": load_average(),
    }


R = TypeVar("R")


def calmer(
    measure: Callable[[], R], spread: Callable[[R], float], retry: Callable[[], bool] = lambda: True
) -> R:
    """`measure()`, and when its spread is over NOISY_SPREAD (and `retry()` says so, asked
    then) once more, keeping the calmer of the two: a passing stall moves one measurement,
    not both."""
    first = measure()
    if spread(first) <= NOISY_SPREAD or not retry():
        return first
    return min(first, measure(), key=spread)


def combine(values: list[Any]) -> tuple[Any, float]:
    """(median of repeated measurements, their relative spread (max - min) / median).

    Values are numbers, [[x, y], ...] curves (x kept, y combined; spread: the median point's)
    or dicts of either (spread: the largest part's)."""
    first = values[0]
    if isinstance(first, dict):
        parts = {k: combine([v[k] for v in values]) for k in first}
        return {k: v for k, (v, _) in parts.items()}, max(
            (s for _, s in parts.values()), default=0.0
        )
    if isinstance(first, list):
        pts, spreads = [], []
        for i, (x, _) in enumerate(first):
            y, s = combine([v[i][1] for v in values])
            pts.append([x, y])
            spreads.append(s)
        # a curve's spread is its typical point's: each point keeps the median of the rounds,
        # so one point a round upset (an allocation that page-faulted once) does not move it
        return pts, statistics.median(spreads) if spreads else 0.0
    ys = [float(v) for v in values]
    med = statistics.median(ys)
    return med, (max(ys) - min(ys)) / med if med > 0 else 0.0


def _pack(res: tuple[dict, float]) -> dict:
    curves, dispatch = res
    return {"curves": curves, "dispatch": dispatch}


@dataclass
class Calibration:
    """Measured calibration terms (JSON-able `data`), measured lazily and cached on disk."""

    data: dict[str, Any]
    cfg: CalConfig = field(default_factory=CalConfig)
    path: Path | None = None
    on_measure: Callable[[str], None] | None = None  # progress: called before each measurement
    _checked: set[str] = field(default_factory=set)  # dtypes whose cached terms were checked
    save_error: str = ""  # why the record could not be written ("" when it was, or need not be)
    spot: dict[str, Any] = field(default_factory=dict)  # the last spot check of a cached record
    speed_now: dict[str, float] = field(default_factory=dict)  # the last `speed` probe

    @classmethod
    def load(
        cls,
        cfg: CalConfig | None = None,
        recalibrate: bool = False,
        on_measure: Callable[[str], None] | None = None,
        persist: bool = True,
    ) -> Calibration:
        cfg = cfg or default_config()
        path = calibration_path(cfg) if persist else None
        data = None
        if path is not None and path.is_file() and not recalibrate:
            data = _read_cached(path)
        return cls(data or _fresh(cfg), cfg, path, on_measure)

    def _save(self) -> None:
        """Write the record, unless it is noisy: a noisy record is used for this run only and
        never replaces a good one on disk."""
        if self.path is None or self.data.get("noisy"):
            return
        try:
            write_json(self.path, self.data, indent=1, mkdir=True)
            self.save_error = ""
        except OSError as e:
            self.save_error = (
                f"calibration not saved (kept for this run only): cannot write "
                f"{self.path.parent}: {e.strerror or type(e).__name__}"
            )

    def _section(self, name: str, key: str, fn: Callable[[], Any]) -> Any:
        sec = self.data.setdefault(name, {})
        if key not in sec:
            if self.on_measure:
                self.on_measure(f"calibrating {name} {key}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sec[key] = fn()
            self._save()
        return sec[key]

    def ensure(self, dtype: str) -> None:
        """Measure every per-dtype term of kernel `dtype` (fp32, bf16, int8; a runnable
        precision name is read as its kernels' dtype) not measured yet: `cfg.rounds` times,
        interleaved (each round times every missing term once), keeping each point's median
        and the spread between rounds, and the load other processes put on the machine."""
        dtype = dtype if dtype in KERNEL_DTYPES else kernel_dtype(dtype)
        if dtype in self.data.get("linear", {}) and dtype not in self._checked:
            self._spot_check(dtype)
        act = act_dtype(dtype)
        todo = [(n, dtype) for n in PER_DTYPE] + [(n, act) for n in PER_ACT]
        todo = [(n, k) for n, k in todo if k not in self.data.get(n, {})]
        if not todo:
            return
        if self.on_measure:
            self.on_measure(f"calibrating {dtype} ({self.cfg.rounds} interleaved rounds)")
        with LoadMonitor() as load, warnings.catch_warnings():
            warnings.simplefilter("ignore")

            def retry() -> bool:
                """Rounds that disagree on a machine nobody else loads are a passing stall:
                measure once more. On a busy machine they would disagree again."""
                if load.so_far() > BUSY_LIMIT:
                    return False
                if self.on_measure:
                    self.on_measure(
                        f"calibrating {dtype} again: its rounds varied more than "
                        f"{100 * NOISY_SPREAD:.0f}%"
                    )
                return True

            values, spreads = calmer(
                lambda: self._rounds(todo, dtype, act),
                lambda r: max(r[1].values(), default=0.0),
                retry,
            )
        for (name, key), value in zip(todo, values, strict=True):
            self.data.setdefault(name, {})[key] = value
        self._judge(dtype, spreads, load.others_busy_cores)
        self._checked.add(dtype)  # measured now: nothing to spot-check in this run
        self._save()

    def _rounds(
        self, todo: list[tuple[str, str]], dtype: str, act: str
    ) -> tuple[list[Any], dict[str, float]]:
        """`cfg.rounds` interleaved rounds of `todo`: each term's combined value (in `todo`'s
        order) and its spread between rounds, keyed "name/key"."""
        rounds = [self._one_round(todo, dtype, act) for _ in range(max(1, self.cfg.rounds))]
        combined = [combine([r[name] for r in rounds]) for name, _ in todo]
        spreads = {f"{n}/{k}": s for (n, k), (_, s) in zip(todo, combined, strict=True)}
        return [v for v, _ in combined], spreads

    def _one_round(self, todo: list[tuple[str, str]], dtype: str, act: str) -> dict[str, Any]:
        """Every term of `todo` timed once (a Linear curve first: GEMV subtracts its dispatch)."""
        cfg, names = self.cfg, {n for n, _ in todo}
        out: dict[str, Any] = {}
        lin = self.data.get("linear", {}).get(dtype)
        if "linear" in names:
            lin = out["linear"] = _pack(T.measure_linear(dtype, cfg))
        steps = {
            "gemv_bandwidth": lambda: T.measure_gemv(dtype, cfg, lin["dispatch"]),
            "sdpa": lambda: T.measure_sdpa(act, cfg),
            "sdpa_decode_bandwidth": lambda: T.measure_sdpa_decode(act, cfg),
            "pointwise": lambda: T.measure_pointwise(act, cfg),
            "kv_concat_bandwidth": lambda: T.measure_kv_concat(act, cfg),
        }
        for name, fn in steps.items():
            if name in names:
                out[name] = fn()
        return out

    def _judge(self, dtype: str, spreads: dict[str, float], others_busy: float) -> None:
        """Store the spread and load of this dtype's terms; flag the record noisy when the
        rounds disagree or other processes kept the CPUs busy (a noisy record is used for
        this run only: `load` does not reuse it)."""
        self.data.setdefault("spread", {}).update(spreads)
        self.data.setdefault("load", {})[dtype] = {
            "others_busy_cores": others_busy,
            "load_average_1min": load_average(),
        }
        reasons = self.data.setdefault("noise", [])
        worst = max(spreads.items(), key=lambda kv: kv[1], default=("", 0.0))
        if worst[1] > NOISY_SPREAD:
            reasons.append(
                f"{worst[0]} varied {100 * worst[1]:.0f}% between interleaved rounds "
                f"(limit {100 * NOISY_SPREAD:.0f}%)"
            )
        if others_busy > BUSY_LIMIT:
            reasons.append(
                f"other processes kept {others_busy:.1f} cores busy while {dtype} was "
                f"calibrated (limit {BUSY_LIMIT})"
            )
        self.data["noisy"] = bool(reasons)

    def status(self) -> dict[str, Any]:
        """What the outputs say about this calibration: age, load, spread, noise flag."""
        d = self.data
        spread = d.get("spread", {})
        busy = [v.get("others_busy_cores", 0.0) for v in d.get("load", {}).values()]
        return {
            "date": d.get("date"),
            "age_days": max(0.0, age_days(d.get("date"))),
            "load_average_1min": d.get("load_average_1min"),
            "others_busy_cores": max(busy, default=None),
            "max_spread": max(spread.values(), default=None),
            "rounds": self.cfg.rounds,
            "noisy": bool(d.get("noisy")),
            "noise": list(d.get("noise", [])),
            "saved": self.path is not None and not self.save_error and not d.get("noisy"),
            "spot_check": dict(self.spot) or None,
            "speed_now": dict(self.speed_now) or None,
            "speed_now_means": "time of the speed probe (Linear d->4d at M=256, FFN GEMV from "
            "DRAM, one tiny call) now / when calibrated; > 1: the machine runs slower now",
            "block": {
                k: {"per_layer": b.get("per_layer"), "spread": b.get("spread")}
                for k, b in d.get("block", {}).items()
            },
        }

    def speed(self, dtype: str) -> dict[str, float]:
        """How much slower (> 1) or faster this machine runs now than when `dtype`'s terms
        were measured: time factors for compute, memory and dispatch, from `terms.probe`
        (the same kernels, timed the same way, now). A shared or virtual machine drifts:
        this one ran the same kernels 15-20% slower from one minute to the next."""
        dtype = dtype if dtype in KERNEL_DTYPES else kernel_dtype(dtype)
        rec = CalibrationRecord(self.data)
        lin = self.data["linear"][dtype]
        esize = DTYPE_BYTES[dtype]
        ref = {
            "compute": interp_log(lin["curves"]["up"], T.PROBE_M),
            "memory": rec.gemv_bandwidth(dtype, 4.0 * self.cfg.width**2 * esize),
            "dispatch": lin["dispatch"],
        }
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            now = T.probe(dtype, self.cfg)
        self.speed_now = {
            "compute": ref["compute"] / now["compute"],
            "memory": ref["memory"] / now["memory"],
            "dispatch": now["dispatch"] / ref["dispatch"],
        }
        return dict(self.speed_now)

    def _spot_check(self, dtype: str) -> None:
        """Reuse a cached calibration only if this machine still runs like it: the speed
        probe, timed now, must agree within SPOT_TOLERANCE in one of SPOT_LOOKS looks (a
        calibration taken while the machine ran faster or slower is otherwise kept for days:
        on this VM one read 1.3x faster than the machine ran 2 h later, and predicted GPT-2
        int8 generation 34% too fast). Eight looks in a row agreed within 5-12% (compute,
        memory) and 15-26% (the one-call dispatch time) there."""
        self._checked.add(dtype)
        ok, ratios, looks = False, {}, 0
        while looks < SPOT_LOOKS and not ok:
            looks += 1
            ratios = self.speed(dtype)
            ok = all(1 / SPOT_TOLERANCE <= x <= SPOT_TOLERANCE for x in ratios.values())
        self.spot = {
            "dtype": dtype,
            "what": "speed probe (Linear d->4d at M=256, FFN GEMV from DRAM, one tiny Linear "
            "call): time now / time cached",
            "ratios": ratios,
            "looks": looks,
            "tolerance": SPOT_TOLERANCE,
            "agreed": ok,
        }
        if ok:
            return
        if self.on_measure:
            self.on_measure("cached calibration disagrees with this machine now: remeasuring")
        for key in PER_DTYPE + PER_ACT:
            self.data.get(key, {}).pop(dtype, None)
            self.data.get(key, {}).pop(act_dtype(dtype), None)
        for key in ("overhead", "eager_pointwise", "block"):
            self.data[key] = {}
        self.data["date"] = now_iso()

    def ensure_overhead(
        self, key: str, spec: ModelSpec, config: dict, precision: str, kind: str
    ) -> dict:
        """The framework overhead of `spec`'s architecture at `precision` (`kind` forward or
        decode), stored under `key`."""
        return self._section(
            "overhead", key, lambda: T.measure_overhead(spec, config, precision, kind, self.cfg)
        )

    def ensure_eager(self, key: str, spec: ModelSpec, act: str) -> dict:
        """The family's eager pointwise code at activation dtype `act`, stored under `key`."""
        return self._section(
            "eager_pointwise", key, lambda: T.measure_eager_pointwise(spec, act, self.cfg)
        )

    def ensure_for(self, spec: ModelSpec, config: dict, precision: str, phase: str) -> None:
        """Measure every term a calibrated prediction of `spec` at `precision` (runnable:
        fp32, bf16, int8-dynamic) in `phase` needs and that is not measured yet."""
        prec = runnable_precision(precision)
        kdt = kernel_dtype(prec)
        self.ensure(kdt)
        kind = step_kind(phase)
        self.ensure_overhead(overhead_key(spec, prec, phase), spec, config, prec, kind)
        self.ensure_eager(eager_key(spec, prec), spec, act_dtype(kdt))
        key = block_key(spec, prec, phase)
        if key not in self.data.get("block", {}):
            self._section("block", key, lambda: self._block(key, spec, config, prec, phase))

    def _block(self, key: str, spec: ModelSpec, config: dict, prec: str, phase: str) -> dict:
        """The block term, measured again once when its stretches disagree by more than
        NOISY_SPREAD; still noisy, it flags the record (used for this run, not cached)."""
        b = calmer(
            lambda: B.measure_block(spec, config, prec, phase, self.cfg), lambda x: x["spread"]
        )
        self.data.setdefault("spread", {})[f"block/{key}"] = b["spread"]
        if b["spread"] > NOISY_SPREAD:
            self.data.setdefault("noise", []).append(
                f"block term of {spec.name} {prec} varied {100 * b['spread']:.0f}% within its "
                f"runs (limit {100 * NOISY_SPREAD:.0f}%)"
            )
            self.data["noisy"] = True
        return b
