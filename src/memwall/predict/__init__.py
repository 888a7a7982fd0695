"""Pure prediction (no torch): the roofline from a device's roofs, and the calibrated roofline
from a calibration record that `memwall.measure` wrote.

- `predict_roofline(ops, device)` -> `Prediction`: per-op time, bound, attainable FLOP/s.
- `predict_calibrated(spec, workload, precision, record)` -> `CalPrediction`: per-op time
  from measured terms, each named.
"""

from memwall.predict.calibrated import (
    FRAMEWORK,
    GROUPS,
    LINEAR_OPS,
    CalPrediction,
    closed_table,
    eager_key,
    overhead_key,
    predict_calibrated,
    roofline_baseline,
    table_precision,
)
from memwall.predict.calterms import CalibrationRecord, Term
from memwall.predict.roofline import (
    Prediction,
    decode_ridge_batch,
    decode_terms,
    predict_roofline,
)

__all__ = [
    "FRAMEWORK",
    "GROUPS",
    "LINEAR_OPS",
    "CalPrediction",
    "CalibrationRecord",
    "Prediction",
    "Term",
    "closed_table",
    "decode_ridge_batch",
    "decode_terms",
    "eager_key",
    "overhead_key",
    "predict_calibrated",
    "predict_roofline",
    "roofline_baseline",
    "table_precision",
]
