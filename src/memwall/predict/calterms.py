"""Calibration terms as a prediction reads them: moved to `memwall.records.calibration` (the
record `memwall.measure` writes and `memwall.predict` reads, so neither imports the other).

These names stay importable from here for older imports.
"""

from __future__ import annotations

from memwall.records.calibration import CalibrationRecord, Term

__all__ = ["CalibrationRecord", "Term"]
