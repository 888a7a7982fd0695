"""How far `memwall serve` is from published LLM serving measurements (issue 24, item 3).

Prices every row of `memwall/data/published_serving.csv` (TensorRT-LLM's performance overview
tables, v0.14 to 1.x, on H100, H200 and A100; MLPerf Inference v4.0/v4.1 Llama-2-70B on 8x H200
and 8x MI300X; NVIDIA NIM at fixed concurrency) with `memwall.api.serve` and its default
predictor, nothing tuned on these rows. A row's GPUs run gpus / tp copies of the model; one
copy is simulated (its share of the requests, the rate or the concurrency) and its throughput
multiplied by the copies (per-system rows) or divided by tp (per-GPU rows). Offline rows put
every request at t = 0, as trtllm-bench and MLPerf Offline do, and simulate as many requests
as the source ran. Latency rows compare means (TTFT, ITL, TPOT) at the published rate.

Prints each row (published, predicted, signed error = predicted / published - 1), then
`summary: median |error| X% over N rows, worst Y%`, the median signed error, and the same
for throughput and latency rows and for the rows whose lengths the source states (MLPerf's
input lengths are not published: those rows assume them, see the CSV's `assumed`). No device
is needed; it takes about 20 seconds on a 2-core machine.
Run:
    .venv/bin/python benchmarks/bench_serve_published.py [--only TEXT] [--csv FILE]
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
import sys
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from memwall.api import serve
from memwall.spec import preset_names

CSV_NAME = "published_serving.csv"
CONFIG_DIR = "published_serving_models"
DEFAULT_REQUESTS = 3000  # per copy, where the source gives no count (server / closed loop)
MAX_REQUESTS = 40_000  # per copy: MLPerf Offline runs 34,320 per H200; all fit under this
METRICS = {
    "output_tokens_per_s_per_system": "tok/s",
    "output_tokens_per_s_per_gpu": "tok/s/GPU",
    "mean_ttft_ms": "ms",
    "mean_itl_ms": "ms",
    "mean_tpot_ns": "ns",
}
# latency metric -> (key of memwall serve's JSON, factor from its seconds to the row's unit)
LATENCY = {
    "mean_ttft_ms": ("ttft", 1e3),
    "mean_itl_ms": ("itl", 1e3),
    "mean_tpot_ns": ("tpot", 1e9),
}
SCENARIOS = ("offline", "server", "fixed-rate", "closed-loop")
REQUIRED = (
    "id", "model", "device", "gpus", "tp", "precision", "engine", "scenario", "input_len",
    "output_len", "lengths_stated", "metric", "value", "source",
)  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One published number and what it takes to simulate it."""

    id: str
    model: str
    device: str
    gpus: int
    tp: int
    precision: str
    engine: str
    scenario: str
    input_len: str
    output_len: str
    lengths_stated: bool
    requests: int | None
    concurrency: int | None
    rate_per_s: float | None
    max_seqs: int | None
    max_batch_tokens: int | None
    metric: str
    value: float
    source: str
    assumed: str

    @property
    def copies(self) -> int:
        """Model copies (data-parallel replicas) the row's GPUs hold."""
        return self.gpus // self.tp


def _opt_int(text: str) -> int | None:
    return int(text) if text.strip() else None


def _opt_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def parse_rows(text: str) -> list[Row]:
    """The CSV's rows ('#' lines are comments); ValueError naming the row if one is bad."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    rows: list[Row] = []
    for r in csv.DictReader(io.StringIO("\n".join(lines))):
        rid = r.get("id", "?")
        missing = [k for k in REQUIRED if not (r.get(k) or "").strip()]
        if missing:
            raise ValueError(f"{CSV_NAME} row {rid!r}: empty {', '.join(missing)}")
        row = Row(
            id=rid, model=r["model"], device=r["device"], gpus=int(r["gpus"]), tp=int(r["tp"]),
            precision=r["precision"], engine=r["engine"], scenario=r["scenario"],
            input_len=r["input_len"], output_len=r["output_len"],
            lengths_stated=r["lengths_stated"] == "yes", requests=_opt_int(r["requests"]),
            concurrency=_opt_int(r["concurrency"]), rate_per_s=_opt_float(r["rate_per_s"]),
            max_seqs=_opt_int(r["max_seqs"]), max_batch_tokens=_opt_int(r["max_batch_tokens"]),
            metric=r["metric"], value=float(r["value"]), source=r["source"],
            assumed=r.get("assumed", ""),
        )  # fmt: skip
        problem = _check(row, r["lengths_stated"])
        if problem:
            raise ValueError(f"{CSV_NAME} row {rid!r}: {problem}")
        rows.append(row)
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{CSV_NAME}: duplicate ids")
    return rows


def _check(row: Row, lengths_stated: str) -> str:
    """What is wrong with a row ('' if nothing)."""
    if row.metric not in METRICS:
        return f"metric {row.metric!r} is not one of {', '.join(METRICS)}"
    if row.scenario not in SCENARIOS:
        return f"scenario {row.scenario!r} is not one of {', '.join(SCENARIOS)}"
    if lengths_stated not in ("yes", "no"):
        return "lengths_stated must be yes or no"
    if not (row.value > 0 and math.isfinite(row.value)):
        return "value must be a positive number"
    if row.tp < 1 or row.gpus < row.tp or row.gpus % row.tp:
        return "gpus must be a multiple of tp"
    if row.scenario in ("server", "fixed-rate") and not row.rate_per_s:
        return f"a {row.scenario} row needs rate_per_s"
    if row.scenario == "closed-loop" and not row.concurrency:
        return "a closed-loop row needs concurrency"
    if row.metric.startswith("output_tokens") and row.scenario in ("server", "fixed-rate"):
        return "throughput at a fixed rate is the rate itself: compare a latency instead"
    for n in (row.requests, row.concurrency, row.max_seqs, row.max_batch_tokens):
        if n is not None and n < 1:
            return "counts must be positive"
    return ""


def load_rows() -> list[Row]:
    """The rows of memwall/data/published_serving.csv."""
    return parse_rows(resources.files("memwall.data").joinpath(CSV_NAME).read_text("utf-8"))


def model_ref(name: str) -> str:
    """A preset name as it is, else the path of its config under published_serving_models/."""
    if name in preset_names():
        return name
    path = resources.files("memwall.data").joinpath(CONFIG_DIR).joinpath(f"{name}.json")
    if not path.is_file():
        raise ValueError(f"model {name!r} is neither a preset nor {CONFIG_DIR}/{name}.json")
    return str(path)


def simulated_requests(row: Row) -> int:
    """Requests one copy simulates: its share of the source's, else a steady-state default."""
    if row.scenario == "closed-loop":
        per_copy = -(-(row.concurrency or 1) // row.copies)
        return max(1000, 4 * per_copy)
    if row.requests is None:
        return DEFAULT_REQUESTS
    return min(MAX_REQUESTS, -(-row.requests // row.copies))


def simulate(row: Row) -> dict[str, Any]:
    """`memwall.api.serve` on one model copy of the row; its JSON payload."""
    kw: dict[str, Any] = {
        "tp": row.tp, "precision": row.precision, "input_len": row.input_len,
        "output_len": row.output_len, "requests": simulated_requests(row),
    }  # fmt: skip
    if row.rate_per_s is not None and row.scenario in ("server", "fixed-rate"):
        kw["rate"] = row.rate_per_s / row.copies
    if row.scenario == "closed-loop":
        kw["concurrency"] = -(-(row.concurrency or 1) // row.copies)
    if row.max_seqs is not None:
        kw["max_seqs"] = row.max_seqs
    if row.max_batch_tokens is not None:
        kw["max_batch_tokens"] = row.max_batch_tokens
    return serve(model_ref(row.model), row.device, **kw).to_dict()


def predicted_value(row: Row, d: dict[str, Any]) -> float | None:
    """The prediction in the row's metric and unit; None for a latency memwall withholds (it
    predicts the copy cannot keep up with the rate, so the queue and the latency grow)."""
    if row.metric in LATENCY:
        key, scale = LATENCY[row.metric]
        return None if d.get(key) is None else float(d[key]["mean"]) * scale
    per_copy = float(d["output_tokens_per_s"])
    if row.metric == "output_tokens_per_s_per_system":
        return per_copy * row.copies
    if row.metric == "output_tokens_per_s_per_gpu":
        return per_copy / row.tp
    raise ValueError(f"unknown metric {row.metric!r}")


def price(row: Row) -> float | None:
    """memwall's prediction of the row's published number (None: see `predicted_value`)."""
    return predicted_value(row, simulate(row))


def _summary(label: str, errs: list[tuple[str, float]]) -> str:
    if not errs:
        return f"{label}: no rows"
    worst_id, worst = max(errs, key=lambda e: abs(e[1]))
    med_abs = statistics.median(abs(e) for _, e in errs)
    med = statistics.median(e for _, e in errs)
    return (
        f"{label}: median |error| {med_abs:.1%} over {len(errs)} rows, worst {abs(worst):.0%} "
        f"({worst_id}, {worst:+.0%}); median signed error {med:+.0%}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--only", help="only rows whose id contains this text")
    ap.add_argument("--csv", help="also write every row with its prediction to this CSV file")
    args = ap.parse_args(argv)
    rows = [r for r in load_rows() if not args.only or args.only in r.id]
    if not rows:
        print("no rows match", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    print(f"{'id':<44} {'metric':<30} {'published':>11} {'predicted':>11} {'error':>7}  unit")
    out: list[dict[str, Any]] = []
    withheld: list[str] = []
    for r in rows:
        pred = price(r)
        mark = "" if r.lengths_stated else "  (lengths assumed)"
        if pred is None:
            print(f"{r.id:<44} {r.metric:<30} {r.value:>11.6g} {'overloaded':>11} {'-':>7}  "
                  f"{METRICS[r.metric]}{mark}: memwall predicts the rate exceeds what one copy "
                  "serves, so it gives no steady-state latency")  # fmt: skip
            withheld.append(r.id)
            continue
        err = pred / r.value - 1.0
        print(
            f"{r.id:<44} {r.metric:<30} {r.value:>11.6g} {pred:>11.6g} {err:>+7.0%}  "
            f"{METRICS[r.metric]}{mark}"
        )
        out.append({"id": r.id, "metric": r.metric, "published": r.value, "predicted": pred,
                    "error": err, "lengths_stated": r.lengths_stated})  # fmt: skip
    errs = [(o["id"], o["error"]) for o in out]
    print()
    print(_summary("summary", errs))
    tput = [(o["id"], o["error"]) for o in out if o["metric"].startswith("output_tokens")]
    lat = [(o["id"], o["error"]) for o in out if not o["metric"].startswith("output_tokens")]
    stated = [(o["id"], o["error"]) for o in out if o["lengths_stated"]]
    print(_summary("  throughput rows", tput))
    print(_summary("  latency rows", lat))
    print(_summary("  rows with lengths stated by the source", stated))
    if withheld:
        print(f"  not priced ({len(withheld)}, memwall predicts overload): {', '.join(withheld)}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(out[0]))
            w.writeheader()
            w.writerows(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
