"""The bundled presets (HF configs shipped as data, each with its source) and loading a MODEL
by preset name or config path."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from memwall.configfile import path_exists, read_config_file
from memwall.errors import MemwallError, suggest
from memwall.spec.build import spec_from_config
from memwall.spec.model import ModelSpec


def _preset_dir():
    return resources.files("memwall") / "data" / "models"


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".json"))


def preset_config(name: str) -> dict:
    """The raw bundled config.json of a preset (facts, with their source in `_source`)."""
    names = preset_names()
    if name not in names:  # a listed name: a string too long for a file name is not looked up
        raise MemwallError(
            f"unknown model {name!r}{suggest(name, names)}; presets: {', '.join(names)}; "
            "or give a path to a config.json"
        )
    return json.loads((_preset_dir() / f"{name}.json").read_text())


def load_model_config(name_or_path: str) -> tuple[ModelSpec, dict]:
    """The spec and the raw config dict (engines that build the real model need the dict)."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise MemwallError(
            "the model is empty: give a preset name (e.g. gpt2) or a path to a config.json"
        )
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".json")
    if looks_like_path or (path_exists(name_or_path) and name_or_path not in preset_names()):
        cfg = read_config_file(name_or_path)
        return spec_from_config(cfg, name=Path(name_or_path).stem), cfg
    cfg = preset_config(name_or_path)
    return spec_from_config(cfg, name=name_or_path), cfg


def load_model(name_or_path: str) -> ModelSpec:
    """A preset name (`gpt2`) or a path to an HF `config.json` (or its folder)."""
    return load_model_config(name_or_path)[0]


# ---------------------------------------------------------------- workload
