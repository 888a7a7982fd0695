"""Published measurements set beside a prediction: the runs of `data/published_inference.csv`
of the same model, device and precision that `memwall analyze` was asked about, each with what
it measured and what memwall predicts for that very run (its batch, lengths and engine), so a
user sees how far the default prediction was from real engines before trusting it."""

from __future__ import annotations

from typing import Any

from memwall.hardware import get_device
from memwall.parallel.published_inference import compare, load_published
from memwall.spec import parse_precision

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
            "error": float(x["error"]),
        })  # fmt: skip
    return out


def inference_line(rows: list[dict[str, Any]]) -> str:
    """One line for the terminal: each run, what it measured, what memwall predicts for it."""
    if not rows:
        return ""
    parts = []
    for r in rows:
        tp = f", tp {r['tp']}" if r.get("tp", 1) > 1 else ""
        parts.append(
            f"#{r['id']} {r['metric']} (batch {r['batch']}, prompt {r['seq_len']}, "
            f"{r['gen_len']} generated{tp}; {r['software']}): {r['measured']:.4g} "
            f"{UNITS[r['unit']]} measured, memwall {r['predicted']:.4g} ({100 * r['error']:+.0f}%)"
        )
    return "published runs of this model on this device: " + "; ".join(parts)
