"""The library names the report uses from the measure, predict and studies areas, in one place.

`memwall.measure` (the package) does not import torch; the calibration store and the case study
do, so they are imported when the case study runs, which keeps `import memwall.report` light.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memwall.measure import config, is_complete, measure
from memwall.predict import decode_ridge_batch
from memwall.predict import predict_roofline as predict

__all__ = ["casestudy", "decode_ridge_batch", "is_complete", "measure_machine", "predict"]


def measure_machine(quick: bool) -> dict:
    """This machine's roofs, measured now (torch)."""
    return measure(config(quick=quick))


def casestudy(quick: bool = False, on_measure: Any = None, **kw: Any) -> Any:
    """Run the paper's case study with the cached calibration; `quick` calibrates in one round
    instead of several (kept in a cache file of its own)."""
    from memwall.measure.calibration import Calibration  # torch + transformers
    from memwall.measure.terms import default_config
    from memwall.studies.casestudy import run_casestudy

    cfg = default_config()
    if quick and cfg.rounds > 1:
        cfg = dataclasses.replace(cfg, rounds=1, name=f"{cfg.name}-1-round")
    cal = Calibration.load(cfg, on_measure=on_measure)
    return run_casestudy(cal=cal, **kw)
