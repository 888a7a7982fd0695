"""Energy: joules per operation, per step and per token, predicted from the FLOPs and bytes
memwall counts, the time its predictor gives and sourced coefficients (`data/energy.json`).

Pure: nothing here measures. `model` holds the formula (FLOPs x J/FLOP + bytes x J/byte per
memory level + static power x time, capped at the TDP), `coefficients` the data file,
`work` reads an op table, `tokens` turns a step into joules per token and dollars per million
tokens, `shares` says what share of a model's energy moves bytes, and `published` holds the
measurements the model is checked against (priced by `memwall.parallel.published_energy`).
"""

from __future__ import annotations

from memwall.energy.coefficients import (
    Coefficients,
    coefficients_for,
    device_energy_class,
    load_table,
    sources_for,
)
from memwall.energy.model import Energy, Parts, Work, combine, parts, step_energy
from memwall.energy.tokens import check_price, describe, per_token
from memwall.energy.work import work_from_ops

__all__ = [
    "Coefficients",
    "Energy",
    "Parts",
    "Work",
    "check_price",
    "coefficients_for",
    "combine",
    "describe",
    "device_energy_class",
    "load_table",
    "parts",
    "per_token",
    "sources_for",
    "step_energy",
    "work_from_ops",
]
