"""The efficiency data file (`data/efficiency.json`), validated, and the terms it gives a device:
class defaults and per-device entries, SM/CU counts, GEMM tiles, and the attention kernel
families with their published figures per architecture (`attention_terms`). Pure data access;
the formula that prices ops with these terms is `predict.efficiency`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memwall.errors import MemwallError
from memwall.hardware import Device

TERMS = (
    "bw_frac",
    "ws_half",
    "mm_frac",
    "mm_m_half",
    "attn_frac",
    "vec_frac",
    "launch_eager",
    "launch_graph",
    "dq_bw_8",
    "dq_bw_4",
    "dq_mm_8",
    "dq_mm_4",
    "mm_k_half",
    "mm8_rel",
    "acc16_rel",
    "mm_sm80_rel",
    "attn_bwd_frac",
    "coll_frac",
    "net_frac",
    "overlap_rate",
    "kv8_dq_frac",
)
ATTENTION_AUTO = "auto"  # the kernel the frameworks pick on the device (data file's defaults)
KERNEL_FIGURES = ("attn_frac", "attn_bwd_frac", "hd64", "bwd_hd64")


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(gt=0, allow_inf_nan=False)
    low: float = Field(gt=0, allow_inf_nan=False)
    high: float = Field(gt=0, allow_inf_nan=False)
    source: str = Field(min_length=3)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cls: str = Field(alias="class")
    vendor: str | None = None
    kind: str | None = None
    name_prefix: str | None = None
    mem_type_prefix: str | None = None


class _Units(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int = Field(gt=0)
    source: str


class _Tiles(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tiles: list[tuple[int, int, float]] = Field(min_length=1)
    source: str
    what: str = ""


class _Figures(BaseModel):
    model_config = ConfigDict(extra="forbid")
    attn_frac: _Value
    attn_bwd_frac: _Value
    hd64: _Value | None = None  # None: figures at head dim 128 only
    bwd_hd64: _Value | None = None


class _Kernel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    what: str = Field(min_length=3)
    archs: dict[str, _Figures] = Field(min_length=1)
    # head dims the kernel is compiled for: a model's head dim runs as the smallest one at or
    # above it (zero-padded); None: the kernel runs the model's own head dim
    head_dims: list[int] | None = None
    head_dims_source: str | None = None


class _Attention(BaseModel):
    model_config = ConfigDict(extra="forbid")
    what: str
    architectures: dict[str, list[str]]
    defaults: dict[str, str]
    defaults_source: str
    kernels: dict[str, _Kernel] = Field(min_length=1)


class _Overlap(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(ge=0.0, le=1.0)
    source: str
    what: str


class _Epilogue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    serial_classes: list[str]
    source: str
    what: str = ""


class _EngineTerm(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: float = Field(ge=0.0, allow_inf_nan=False)
    low: float = Field(ge=0.0, allow_inf_nan=False)
    high: float = Field(ge=0.0, allow_inf_nan=False)
    basis: Literal["fit", "measured", "assumed"]
    source: str
    fit: str = ""
    what: str


class _TrainingStep(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kernel_rate: _EngineTerm
    classes: list[str] = Field(min_length=1)  # device classes the fit rows stand for
    classes_why: str = Field(min_length=3)


class _Table(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: str
    terms: dict[str, dict[str, str]]
    sources: dict[str, str]
    class_rules: list[_Rule]
    classes: dict[str, dict[str, _Value]]
    devices: dict[str, dict[str, _Value]]
    gemm_tiles: _Tiles
    memory_compute_overlap: _Overlap
    serving_m_spread: _Overlap
    gemm_epilogue: _Epilogue
    serving_engines: dict[str, dict[str, _EngineTerm]]
    training_step: _TrainingStep
    compute_units: dict[str, _Units]
    attention_kernels: _Attention


@dataclass(frozen=True)
class Term:
    """One efficiency term as used: value, range, unit, and where it comes from."""

    name: str
    value: float
    low: float
    high: float
    unit: str
    what: str
    source: str
    origin: str  # "device-measured (NAME)" or "class default (CLASS)"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _check_table(t: _Table) -> _Table:
    for where, group in (("class", t.classes), ("device", t.devices)):
        for name, terms in group.items():
            for k, v in terms.items():
                if k not in TERMS or v.source not in t.sources:
                    raise MemwallError(f"efficiency.json {where} {name}: bad term or source {k!r}")
                if not v.low <= v.value <= v.high:
                    raise MemwallError(f"efficiency.json {where} {name}: {k} outside its range")
    for name, u in t.compute_units.items():
        if u.source not in t.sources:
            raise MemwallError(f"efficiency.json compute_units {name}: unknown source")
    if t.gemm_tiles.source not in t.sources:
        raise MemwallError("efficiency.json gemm_tiles: unknown source")
    if t.memory_compute_overlap.source not in t.sources:
        raise MemwallError("efficiency.json memory_compute_overlap: unknown source")
    e = t.gemm_epilogue
    if e.source not in t.sources or not set(e.serial_classes) <= set(t.classes):
        raise MemwallError("efficiency.json gemm_epilogue: unknown source or device class")
    if t.serving_m_spread.source not in t.sources or t.serving_m_spread.value >= 1.0:
        raise MemwallError("efficiency.json serving_m_spread: unknown source or not below 1")
    for name, terms in t.serving_engines.items():
        for k, v in terms.items():
            if v.source not in t.sources or not v.low <= v.value <= v.high:
                raise MemwallError(
                    f"efficiency.json serving_engines {name}.{k}: bad source or range"
                )
    k = t.training_step.kernel_rate
    if k.source not in t.sources or not k.low <= k.value <= k.high or k.value == 0:
        raise MemwallError("efficiency.json training_step.kernel_rate: bad source or range")
    if not set(t.training_step.classes) <= set(t.classes):
        raise MemwallError("efficiency.json training_step.classes: unknown device class")
    for c, terms in t.classes.items():
        if set(terms) != set(TERMS):
            raise MemwallError(f"efficiency.json class {c}: needs every term {', '.join(TERMS)}")
    _check_attention(t)
    return t


def _check_attention(t: _Table) -> None:
    a = t.attention_kernels
    seen: dict[str, str] = {}
    for arch, names in a.architectures.items():
        for n in names:
            if n in seen:
                raise MemwallError(f"efficiency.json attention_kernels: {n} in two archs")
            seen[n] = arch
    if ATTENTION_AUTO in a.kernels or a.defaults_source not in t.sources:
        raise MemwallError("efficiency.json attention_kernels: bad kernel name or defaults source")
    for arch, k in a.defaults.items():
        if arch not in a.architectures or k not in a.kernels or arch not in a.kernels[k].archs:
            raise MemwallError(f"efficiency.json attention_kernels: default {k!r} for {arch!r}")
    for name, k in a.kernels.items():
        hds = k.head_dims
        if (hds is None) != (k.head_dims_source is None) or (
            hds is not None
            and (k.head_dims_source not in t.sources or min(hds) < 1 or hds != sorted(set(hds)))
        ):
            raise MemwallError(
                f"efficiency.json attention kernel {name}: head_dims must rise, be positive "
                "and come with a known head_dims_source"
            )
        for arch, figs in k.archs.items():
            if arch not in a.architectures:
                raise MemwallError(f"efficiency.json attention kernel {name}: unknown arch {arch}")
            for term in KERNEL_FIGURES:
                v = getattr(figs, term)
                if v is None and term in ("hd64", "bwd_hd64"):  # figures at head dim 128 only
                    continue
                if v is None or v.source not in t.sources or not v.low <= v.value <= v.high:
                    raise MemwallError(
                        f"efficiency.json attention kernel {name} ({arch}): {term} has an "
                        "unknown source or lies outside its range"
                    )


def parse_table(obj: Any) -> _Table:
    """Validate the efficiency data (the bundled file, or a test's variant)."""
    try:
        return _check_table(_Table.model_validate(obj))
    except ValidationError as e:
        raise MemwallError(f"efficiency.json is malformed: {e.errors()[0]['msg']}") from None


@functools.lru_cache(maxsize=1)
def load_table() -> _Table:
    text = resources.files("memwall.data").joinpath("efficiency.json").read_text("utf-8")
    return parse_table(json.loads(text))


def device_class(device: Device, table: _Table | None = None) -> str:
    """The class whose defaults a device uses (first matching rule in the data file)."""
    t = table or load_table()
    for r in t.class_rules:
        if (
            (r.vendor is None or device.vendor == r.vendor)
            and (r.kind is None or device.kind == r.kind)
            and (r.name_prefix is None or device.name.startswith(r.name_prefix))
            and (r.mem_type_prefix is None or device.mem_type.startswith(r.mem_type_prefix))
        ):
            return r.cls
    raise MemwallError(f"no efficiency class for device {device.name!r}")


def efficiency_terms(device: Device, table: _Table | None = None) -> dict[str, Term]:
    """Every term for `device`: its own published value where there is one, else the class's.
    (A layout search asks thousands of times: the data file's answer is cached per device.)"""
    if table is None:
        key = (device.name, device.derived_from, device.vendor, device.kind, device.mem_type)
        return dict(_cached_terms(key, device))
    return _terms(device, table)


_TERMS_CACHE: dict[tuple, dict[str, Term]] = {}


def _cached_terms(key: tuple, device: Device) -> dict[str, Term]:
    if key not in _TERMS_CACHE:
        _TERMS_CACHE[key] = _terms(device, load_table())
    return _TERMS_CACHE[key]


def _terms(device: Device, t: _Table) -> dict[str, Term]:
    cls = device_class(device, t)
    real = device.derived_from or device.name  # a what-if device keeps its base's efficiencies
    own = t.devices.get(real, {})
    out = {}
    for k in TERMS:
        if k in own:
            v, origin = own[k], f"device-measured ({real})"
        else:
            v, origin = t.classes[cls][k], f"class default ({cls})"
        meta = t.terms.get(k, {})
        out[k] = Term(
            k, v.value, v.low, v.high, meta.get("unit", ""), meta.get("what", ""),
            t.sources[v.source], origin,
        )  # fmt: skip
    return out


def compute_units(device: Device, table: _Table | None = None) -> float | None:
    """SMs / CUs of a device with a published count (what-if devices keep their base's); None
    where there is none, and then no tile or wave quantisation is priced."""
    t = table or load_table()
    u = t.compute_units.get(device.derived_from or device.name)
    return float(u.value) if u else None


def attention_names(table: _Table | None = None) -> tuple[str, ...]:
    """Accepted `attention` values: auto, then every kernel family of the data file."""
    t = table or load_table()
    return (ATTENTION_AUTO, *t.attention_kernels.kernels)


def check_attention(name: str, table: _Table | None = None) -> str:
    """`name` lower-cased when it is a known kernel family or auto; MemwallError otherwise."""
    names = attention_names(table)
    key = str(name).strip().lower()
    if key not in names:
        raise MemwallError(f"unknown attention kernel {name!r}; accepted: {', '.join(names)}")
    return key


def _arch(device: Device, t: _Table) -> str | None:
    real = device.derived_from or device.name  # a what-if device keeps its base's kernels
    for arch, names in t.attention_kernels.architectures.items():
        if real in names:
            return arch
    return None


def resolve_attention(device: Device, attention: str, table: _Table | None = None) -> str | None:
    """The kernel family `attention` means on `device` (auto: the data file's default for the
    device's architecture); None where the class default terms price it."""
    t = table or load_table()
    name = check_attention(attention, t)
    if name != ATTENTION_AUTO:
        return name
    arch = _arch(device, t)
    return t.attention_kernels.defaults.get(arch) if arch else None


def _hd_mix(factor: float, head_dim: int | None) -> float:
    """Head-dim multiplier: `factor` at 64 and under, 1 at 128 and over, linear between."""
    if head_dim is None or head_dim >= 128:
        return 1.0
    if head_dim <= 64:
        return factor
    return factor + (head_dim - 64) / 64 * (1.0 - factor)


def attention_terms(
    terms: dict[str, Term],
    device: Device,
    attention: str,
    head_dim: int | None = None,
    table: _Table | None = None,
) -> tuple[dict[str, Term], str]:
    """`terms` with attn_frac and attn_bwd_frac of the kernel family `attention` on `device`
    (its architecture's published figures at `head_dim`), and one line saying what priced
    attention. A family with no figures for the device leaves the class terms, and says so."""
    t = table or load_table()
    name = resolve_attention(device, attention, t)
    real = device.derived_from or device.name
    if name is None:
        return terms, f"attention ({attention}): no kernel figures for {real}; {_class(terms)}"
    arch = _arch(device, t)
    kernel = t.attention_kernels.kernels[name]
    figs = kernel.archs.get(arch) if arch else None
    if figs is None:
        return terms, f"attention {name}: no published figures for {real}; {_class(terms)}"
    run = kernel_head_dim(kernel, head_dim)
    if head_dim is not None and run is None:  # past the largest head dim the kernel is built for
        why = f"{name} runs head dims up to {max(kernel.head_dims or [0])}, not {head_dim}"
        if check_attention(attention, t) != ATTENTION_AUTO:
            others = [k for k in attention_names(t) if k != name]
            raise MemwallError(f"attention {why}; choose another: {', '.join(others)}")
        return terms, f"attention ({attention}): {why}; {_class(terms)}"
    if run is not None and run < 128 and (figs.hd64 is None or figs.bwd_hd64 is None):
        return terms, (
            f"attention {name}: {arch} figures are for head dim 128 only, not {head_dim}; "
            f"{_class(terms)}"
        )
    pad = head_dim / run if head_dim is not None and run is not None else 1.0
    words = _hd_words(head_dim) + (f", run as {run} (zero-padded)" if pad < 1 else "")
    out = dict(terms)
    for term, hd in (("attn_frac", figs.hd64), ("attn_bwd_frac", figs.bwd_hd64)):
        v = getattr(figs, term)
        src = t.sources[v.source]
        if hd is not None and hd.source != v.source:
            src += "; head dim: " + t.sources[hd.source]
        if pad < 1:
            src += "; padding: " + t.sources[kernel.head_dims_source or ""]
        old = terms[term]
        mix = (1.0, 1.0, 1.0) if hd is None else (hd.value, hd.low, hd.high)
        out[term] = Term(
            term, v.value * _hd_mix(mix[0], run) * pad, v.low * _hd_mix(mix[1], run) * pad,
            v.high * _hd_mix(mix[2], run) * pad, old.unit, old.what, src,
            f"attention kernel {name} ({arch} figures{words})",
        )  # fmt: skip
    return out, (
        f"attention {name} ({arch} figures{words}): attn_frac "
        f"{out['attn_frac'].value:.3g}, attn_bwd_frac {out['attn_bwd_frac'].value:.3g}"
    )


def kernel_head_dim(kernel: _Kernel, head_dim: int | None) -> int | None:
    """The head dim `kernel` runs a model of `head_dim` at: the smallest it is compiled for at
    or above it (the rest of each head's dot products is zero padding), the model's own where
    the kernel takes any; None past the largest it is compiled for."""
    if head_dim is None or kernel.head_dims is None:
        return head_dim
    return next((h for h in kernel.head_dims if h >= head_dim), None)


def _class(terms: dict[str, Term]) -> str:
    a, b = terms["attn_frac"].value, terms["attn_bwd_frac"].value
    return f"priced at the class default attn_frac {a:g}, attn_bwd_frac {b:g}"


def _hd_words(head_dim: int | None) -> str:
    return f", head dim {head_dim}" if head_dim is not None else ""


def store_serial(device: Device) -> bool:
    """Whether `device`'s GEMMs write their output after the K-loop, unhidden (gemm_epilogue)."""
    t = load_table()
    return device_class(device, t) in t.gemm_epilogue.serial_classes


def memory_compute_overlap() -> float:
    """Share of the shorter of a kernel's memory and compute times that runs under the longer
    (XLA's GPU cost model's memory_compute_parallelism)."""
    return load_table().memory_compute_overlap.value


def serving_m_spread() -> float:
    """How far a steady-state server's GEMM rows M move around the mean from step to step, as a
    fraction either side (`predict.gemm_shape`: quantisation priced as the average)."""
    return load_table().serving_m_spread.value


def training_kernel_rate(device: Device | None = None) -> Term | None:
    """The rate a whole training step's kernels sustain against the same kernels priced one by
    one from kernel benchmarks (a fit on marked rows of data/published_training.csv); None for
    a `device` outside the classes the fit rows stand for (datacenter GPUs)."""
    t = load_table()
    if device is not None and device_class(device, t) not in t.training_step.classes:
        return None
    v = t.training_step.kernel_rate
    return Term("kernel_rate", v.value, v.low, v.high, "fraction", v.what, t.sources[v.source],
                f"{v.basis}: {v.fit}" if v.fit else v.basis)  # fmt: skip


def sample_s_per_sequence(engine: str, vocab_size: int, end: str = "value") -> float:
    """Seconds a serving `engine` (a key of efficiency.json serving_engines) spends per sampled
    sequence per step beyond the forward, for a model of `vocab_size` tokens; MemwallError on an
    unknown engine."""
    return engine_term(engine, "sample_ns_per_vocab", end) * 1e-9 * vocab_size


def engine_term(engine: str, name: str, end: str = "value") -> float:
    """One term of a serving engine (efficiency.json serving_engines) at `end` (value, low,
    high); MemwallError naming what is known when the engine or the term is not."""
    engines = load_table().serving_engines
    if engine not in engines or name not in engines[engine]:
        known = ", ".join(f"{e}.{k}" for e, ts in engines.items() for k in ts)
        raise MemwallError(f"unknown serving engine or term {engine}.{name}; known: {known}")
    return float(getattr(engines[engine][name], end))


def _tiles() -> tuple[tuple[int, int, float], ...]:
    return tuple(load_table().gemm_tiles.tiles)
