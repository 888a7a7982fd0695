"""The paper's remedy claims beside what was measured here (pure: rows in, verdict rows out)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def claims_data() -> dict[str, Any]:
    path = resources.files("memwall") / "data" / "compress" / "remedy_claims.json"
    return json.loads(path.read_text())


def _verdict(kind: str, claimed: float, measured: float | None, d: dict[str, Any]) -> str:
    if measured is None:
        return "not measured"
    if kind == "accuracy":
        return "holds" if measured <= d["max_perplexity_change"] else "does not hold here"
    if measured >= d["hold_fraction"] * claimed:
        return "holds"
    return "partly" if measured >= d["partly_fraction"] * claimed else "does not hold here"


def remedy_claims(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per claim: the paper's number, ours (from `compress`/`pareto` rows), a verdict.

    `rows`: result rows with `method` and the metrics footprint_reduction, speedup_measured,
    perplexity_change. The first method listed for a claim that has its metric is used.
    """
    d = claims_data()
    by_method = {r.get("method"): r for r in rows}
    out = []
    for c in d["claims"]:
        row = next(
            (by_method[m] for m in c["methods"] if c["metric"] in by_method.get(m, {})), None
        )
        measured = None if row is None else row[c["metric"]]
        out.append(
            {
                "id": c["id"],
                "claim": c["claim"],
                "claimed": c["claimed"] if c["kind"] == "ratio" else None,
                "measured": measured,
                "unit": c["unit"],
                "method": None if row is None else row["method"],
                "verdict": _verdict(c["kind"], c["claimed"], measured, d),
                "cites": c["cites"],
                "source": d["_source"],
            }
        )
    return out
