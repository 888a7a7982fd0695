"""Published measurements set beside a prediction, so a user sees how far memwall's default
was from real runs before trusting it: for `memwall parallel --mode train`, the training runs
of `data/published_training.csv` of the same architecture, device and precision; for
`memwall analyze --device` and `memwall parallel --mode infer`, the engine runs of
`data/published_inference.csv` of the same model, device, precision and tensor parallelism.
Each comes with what it measured and what memwall predicts for that very run (its layout,
batch, lengths and engine), the error, and its source or software."""

from __future__ import annotations

import math
from typing import Any

from memwall.hardware import get_device
from memwall.parallel.published import ARCH_COLUMNS, predict_row, published_rows, row_spec
from memwall.parallel.published_inference import compare, load_published
from memwall.precision import training_precision
from memwall.spec import ModelSpec, parse_precision

UNITS = {"tokens/s": "tok/s", "s": "s"}


def inference_beside(
    model: str, device: str, precision: str, limit: int = 3, tp: int = 1
) -> list[dict]:
    """Up to `limit` rows of `model` on `device` in `precision` (its label) over `tp` GPUs, not
    excluded, with measured, predicted and error; decode rows first, then by id."""
    dev = get_device(device).name
    label = parse_precision(precision).label
    rows = [
        r
        for r in load_published()
        if r.model == model and r.tp == tp and not r.excluded
        and get_device(r.device).name == dev and parse_precision(r.precision).label == label
    ]  # fmt: skip
    rows.sort(key=lambda r: (r.metric != "decode_tok_s", r.id))
    if not rows:
        return []
    t = compare(rows[:limit]).table
    by_id = {r.id: r for r in rows}
    out: list[dict[str, Any]] = []
    for x in t.to_dict("records"):
        r = by_id[x["id"]]
        out.append({
            "id": int(x["id"]), "metric": r.metric, "unit": r.unit, "batch": r.batch, "tp": r.tp,
            "seq_len": r.seq_len, "gen_len": r.gen_len, "software": r.software,
            "measured": float(x["measured"]), "predicted": float(x["predicted"]),
            "error": float(x["error"]), "fitted": r.fitted == "yes",
        })  # fmt: skip
    return out


def inference_line(rows: list[dict[str, Any]]) -> str:
    """One line for the terminal: each run, what it measured, what memwall predicts for it."""
    if not rows:
        return ""
    parts = []
    for r in rows:
        tp = f", tp {r['tp']}" if r.get("tp", 1) > 1 else ""
        unit = UNITS[r["unit"]]
        parts.append(
            f"#{r['id']} {r['metric']} (batch {r['batch']}, prompt {r['seq_len']}, "
            f"{r['gen_len']} generated{tp}; {r['software']}): {r['measured']:.4g} {unit} measured, "
            f"memwall predicts {r['predicted']:.4g} {unit} ({100 * r['error']:+.0f}%"
            f"{'; a fit row, in sample' if r.get('fitted') else ''})"
        )
    return "published runs of this model on this device: " + "; ".join(parts)


ARCH = (*ARCH_COLUMNS, "n_experts", "experts_per_token")
FLOPS_NOTE = "; the source's FLOP count"


def training_beside(
    spec: ModelSpec, device: str, precision: str, devices: int, limit: int = 3
) -> list[dict[str, Any]]:
    """Published training runs of `spec`'s architecture (layers, widths, heads, vocabulary) on
    `device` in `precision`, nearest in GPU count first, each with memwall's prediction of it:
    a measurement nobody here made to set a prediction beside. Empty when none is on record."""
    dev = get_device(device).name
    name = training_precision(precision).label
    out = []
    for r in published_rows():
        if get_device(r["device"]).name != dev or training_precision(r["precision"]).label != name:
            continue
        arch = row_spec(r)
        if any(getattr(arch, k) != getattr(spec, k) for k in ARCH):
            continue
        p = predict_row(r)
        layout = f"tp{r['tp']} pp{r['pp']}" + (f" cp{r['cp']}" if r["cp"] > 1 else "")
        layout += f" dp{r['dp']}" + (f" v{r['interleave']}" if r["interleave"] > 1 else "")
        layout += " tp-overlap" if r["tp_overlap"] else ""
        out.append({
            "id": r["id"], "gpus": r["gpus"], "layout": layout, "seq_len": r["seq_len"],
            "global_batch": r["global_batch"], "metric": r["metric"], "published": r["value"],
            "predicted": p["predicted"], "error": p["error"], "fitted": p["fitted"],
            "source": r["source"].split(";")[0].split(" table")[0].strip().rstrip(","),
        })  # fmt: skip
    out.sort(key=lambda x: (abs(math.log(x["gpus"] / max(1, devices))), x["id"]))
    return out[:limit]


def training_line(rows: list[dict[str, Any]]) -> str:
    """One line for the terminal: each published run, what it measured, what memwall predicts."""
    if not rows:
        return ""
    parts = [
        f"{r['id']} ({r['gpus']} GPUs, {r['layout']}, seq {r['seq_len']}, batch "
        f"{r['global_batch']}): {_measure(r)} ({100 * r['error']:+.0f}%"
        f"{'' if r['metric'] == 'tokens_per_gpu' else FLOPS_NOTE}"
        f"{'; a fit row of the kernel rate, in sample' if r.get('fitted') else ''}) [{r['source']}]"
        for r in rows
    ]
    return "published runs of this architecture on this device: " + "; ".join(parts)


def _measure(r: dict[str, Any]) -> str:
    """What the run measured and what memwall predicts, in the row's metric."""
    if r["metric"] == "tokens_per_gpu":
        return (
            f"{r['published']:,.0f} tokens/s per GPU measured, memwall predicts "
            f"{r['predicted']:,.0f}"
        )
    return (
        f"{r['metric'].upper()} {100 * r['published']:.1f}% of the dense peak measured, "
        f"memwall predicts {100 * r['predicted']:.1f}%"
    )
