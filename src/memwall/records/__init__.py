"""What measuring writes and predicting reads: each record's format, keys and place on disk.

`memwall.measure` writes records, `memwall.predict`, `memwall.parallel` and `memwall.hardware`
read them, and none of them imports another for it: the shared facts live here.
- `store`: the data directory (`MEMWALL_DATA_DIR`, else platformdirs) and where each kind of
  record lives (saved devices, calibrations, collectives, trained models);
- `calibration`: the calibration record (format, keys, the read-only `CalibrationRecord`);
- `collectives`: the collectives record (format, collective kinds, bus factor, its fits);
- `engine_check`: the real-engine serving check (`benchmarks/bench_serve.py`), for the report.

Pure: no torch. Import the submodule you need (this package imports none of them).
"""
