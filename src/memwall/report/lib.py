"""The library names the report uses from the measure, predict and studies areas, in one place.

`memwall.measure` (the package) does not import torch; the calibration store and the case study
do, so they are imported when the case study runs, which keeps `import memwall.report` light.

The case study runs exactly as `memwall casestudy` runs it (`api._casestudy.casestudy_here`):
under the thread policy of every measuring command (`measure.run.threads(None)`, which picks
the count by `auto_threads` and pins), so the calibration it uses is keyed by the same thread
count; the report reuses a saved calibration (spot-checked) where `memwall casestudy` measures
a fresh one by default.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memwall.errors import MemwallError
from memwall.measure import config, is_complete, measure
from memwall.predict import decode_ridge_batch
from memwall.predict import predict_roofline as predict

__all__ = [
    "PROBE_PRECISION",
    "calibration_config",
    "casestudy",
    "decode_ridge_batch",
    "is_complete",
    "measure_machine",
    "predict",
    "speed_probe",
]

CASESTUDY_THREADS: int | None = None  # `memwall casestudy`'s default: the thread policy decides
PROBE_PRECISION = "int8"  # the case study's first precision (the paper's 8-bit setting)


def measure_machine(quick: bool) -> dict:
    """This machine's roofs, measured now (torch)."""
    return measure(config(quick=quick))


def calibration_config(quick: bool) -> Any:
    """The case study's calibration configuration: `memwall casestudy`'s; with `quick`, one
    round instead of several, cached under a name of its own (never replacing a full one)."""
    from memwall.measure.terms import default_config  # torch

    cfg = default_config()
    if quick and cfg.rounds > 1:
        cfg = dataclasses.replace(cfg, rounds=1, name=f"{cfg.name}-1-round")
    return cfg


def casestudy(quick: bool = False, **kw: Any) -> Any:
    """The paper's case study, run as `memwall casestudy` runs it (same function, thread
    policy and calibration key), reusing a saved calibration; `quick`: one calibration round."""
    from memwall.api._casestudy import casestudy_here  # the api's policy; torch + transformers

    return casestudy_here(
        n_threads=CASESTUDY_THREADS,
        reuse_calibration=True,
        cal_config=calibration_config(quick),
        **kw,
    )


def speed_probe(quick: bool, precision: str = PROBE_PRECISION) -> dict[str, float] | None:
    """How much slower (> 1) this machine runs now than when the case study's saved calibration
    was measured (`Calibration.speed`), under the case study's threads and calibration key;
    None when there is no saved calibration of `precision` to compare with."""
    from memwall.measure.calibration import Calibration
    from memwall.measure.run import threads
    from memwall.precision import kernel_dtype

    try:
        with threads(CASESTUDY_THREADS):
            cal = Calibration.load(calibration_config(quick))
            if kernel_dtype(precision) not in cal.data.get("linear", {}):
                return None
            return cal.speed(precision)
    except (MemwallError, KeyError, TypeError, ValueError):
        return None  # a record without the probe's terms: nothing to compare with
