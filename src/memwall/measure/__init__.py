"""Everything that times this machine with torch: roofs, calibration terms, real-model runs.

Importing this package does not import torch (the roofs import it when they run, and say how to
install it when it is missing); the torch-heavy parts are submodules:
- `memwall.measure.roofs`: the empirical roofline (`measure`, `config`, the kernels);
- `memwall.measure.levels`, `.machine`, `.timing`: cache plateaus, machine facts, timing;
- `memwall.measure.terms`, `.calibration`: calibration terms and their store (`Calibration`);
- `memwall.measure.models`, `.run`, `.opmap`: real models built, run, timed and profiled.
"""

from memwall.sources import install_torchvision_fallback

# before any submodule imports transformers: a torchvision built for another torch must not
# break it (this imports nothing; `import memwall` alone leaves the import system alone)
install_torchvision_fallback()

from memwall.measure.levels import curve_sizes, find_cache_levels  # noqa: E402
from memwall.measure.machine import KiB, MiB, cpu_model, llc_size, machine_metadata  # noqa: E402
from memwall.measure.roofs import (  # noqa: E402
    DEFAULT,
    GEMM_DTYPES,
    QUICK,
    MeasureConfig,
    config,
    gemm_flops,
    gemv_bandwidth,
    is_complete,
    is_usable,
    measure,
    op_overhead,
    read_bandwidth,
    triad_bandwidth,
)
from memwall.measure.timing import Timing, best_time, check_repeats, mean_time  # noqa: E402

__all__ = [
    "DEFAULT",
    "GEMM_DTYPES",
    "QUICK",
    "KiB",
    "MeasureConfig",
    "MiB",
    "Timing",
    "best_time",
    "check_repeats",
    "config",
    "cpu_model",
    "curve_sizes",
    "find_cache_levels",
    "gemm_flops",
    "gemv_bandwidth",
    "is_complete",
    "is_usable",
    "llc_size",
    "machine_metadata",
    "mean_time",
    "measure",
    "op_overhead",
    "read_bandwidth",
    "triad_bandwidth",
]
