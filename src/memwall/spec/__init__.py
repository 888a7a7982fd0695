"""What is analysed: the model (`ModelSpec`), number formats (`Precision`), work (`Workload`).

Model configs are HF-style `config.json` files read as JSON data and validated field by field;
nothing in them is ever executed. Bundled presets are the same files, shipped as data.
"""

from __future__ import annotations

from memwall.configfile import MAX_CONFIG_BYTES, read_config_file
from memwall.configs import MAX_LENGTH
from memwall.precision import (
    PAPER_PRECISION,
    RUNNABLE_ALIASES,
    RUNNABLE_PRECISIONS,
    Precision,
    act_dtype,
    kernel_dtype,
    parse_precision,
    runnable_precision,
)
from memwall.spec.build import spec_from_config
from memwall.spec.model import ModelSpec, Phase
from memwall.spec.presets import load_model, load_model_config, preset_config, preset_names
from memwall.workload import (
    MAX_BATCH,
    PHASES,
    Workload,
    check_workload_fits,
    positions_note,
)

# Precision lives in memwall.precision; re-exported: memwall.spec names every input type.
__all__ = [
    "PAPER_PRECISION",
    "RUNNABLE_ALIASES",
    "RUNNABLE_PRECISIONS",
    "Precision",
    "act_dtype",
    "kernel_dtype",
    "parse_precision",
    "runnable_precision",
    "MAX_BATCH",
    "MAX_CONFIG_BYTES",
    "MAX_LENGTH",
    "PHASES",
    "ModelSpec",
    "Phase",
    "Workload",
    "check_workload_fits",
    "positions_note",
    "load_model",
    "load_model_config",
    "preset_config",
    "preset_names",
    "read_config_file",
    "spec_from_config",
]
