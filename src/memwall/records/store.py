"""Where records live: the one data directory and the path of each kind of record in it.

The data directory is `$MEMWALL_DATA_DIR`, else the platformdirs user data directory; trained
models are a cache (`$MEMWALL_CACHE_DIR`, else the platformdirs user cache directory), rebuilt
when missing. Every reader and writer asks here, so a saved file is always found again.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_DATA_DIR = "MEMWALL_DATA_DIR"
ENV_CACHE_DIR = "MEMWALL_CACHE_DIR"
APP = "memwall"


def data_dir() -> Path:
    """Where measurements live: $MEMWALL_DATA_DIR, else the platformdirs user data dir."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP, appauthor=False))


def devices_dir() -> Path:
    """Saved `memwall measure` results, one `<name>.json` per device (`local` the latest)."""
    return data_dir() / "devices"


def calibration_path(slug: str) -> Path:
    """The calibration record of one machine and configuration (`slug` names both)."""
    return data_dir() / "calibration" / f"{slug}.json"


def collectives_path(name: str = "local") -> Path:
    """The collectives measured by `memwall measure --collectives` (`local`: this machine)."""
    return data_dir() / "collectives" / f"{name}.json"


def engine_check_path() -> Path:
    """The latest real-engine check (`benchmarks/bench_serve.py`) run on this machine."""
    return data_dir() / "serve" / "engine-check.json"


def trained_models_dir() -> Path:
    """The small models trained here (a cache): $MEMWALL_CACHE_DIR/compress, else the
    platformdirs user cache dir's compress/ (their pruned, fine-tuned variants in variants/)."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser() / "compress"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP, appauthor=False)) / "compress"
