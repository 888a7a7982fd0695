"""Where a MODEL comes from: a preset, a config.json, `torchvision:NAME`, or `module:function`.

Presets and config files are data (read by `memwall.spec`). The other two build a real
`torch.nn.Module` and need the trace engine: `torchvision:NAME` is a model of torchvision's
zoo built with `weights=None` (nothing downloaded); `module:function` is Python code the user
names on the command line and so chooses to run, like `python -c`: memwall imports `module`
and calls `function`, which returns `(module, example_inputs)`. memwall never runs code named
in a config file. This module only recognises the syntax (no torch), so the closed form stays
light.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memwall.errors import MemwallError

TORCHVISION_PREFIX = "torchvision:"
_ENTRY_POINT = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
MAX_IMAGE_SIZE = 8192
MAX_SOURCE_CHARS = 1024  # a module path and function name; longer is a paste gone wrong
DEFAULT_IMAGE_SIZE = 224


@dataclass(frozen=True)
class ModuleSource:
    """A model that is Python code: a torchvision model or a user's entry point."""

    kind: str  # torchvision | entry_point
    target: str  # the torchvision name, or "module:function"

    @property
    def label(self) -> str:
        return f"{TORCHVISION_PREFIX}{self.target}" if self.kind == "torchvision" else self.target


def module_source(text: str) -> ModuleSource | None:
    """The module source `text` names, or None for a preset name or a config path."""
    if len(text) > MAX_SOURCE_CHARS and ":" in text and not _names_a_file(text):
        raise MemwallError(
            f"model {text[:40]!r}... is too long ({len(text):,} characters) for "
            f"torchvision:NAME or module:function (at most {MAX_SOURCE_CHARS:,}); other "
            "MODELs are a preset name or a config.json path"
        )
    if text.startswith(TORCHVISION_PREFIX):
        name = text[len(TORCHVISION_PREFIX) :].strip()
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise MemwallError(
                f"torchvision model name must be a name like resnet50, got {name!r} "
                "(write torchvision:NAME)"
            )
        return ModuleSource("torchvision", name)
    if ":" not in text or _names_a_file(text):
        return None
    if not _ENTRY_POINT.fullmatch(text):
        raise MemwallError(
            f"{text!r} is not a model source: an entry point must be module:function "
            "(a dotted module path, a colon, a function name, e.g. mypkg.models:build); "
            "other MODELs are a preset, a config.json path or torchvision:NAME"
        )
    return ModuleSource("entry_point", text)


def _names_a_file(text: str) -> bool:
    """Whether `text` is an existing path; one the system cannot even look up (too long, a
    NUL byte, no permission) is not, and the syntax checks that follow judge it."""
    try:
        return Path(text).exists()
    except (OSError, ValueError):
        return False


def check_image_size(size: object) -> int:
    """A positive integer image side in pixels."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_IMAGE_SIZE:
        raise MemwallError(
            f"image size must be a positive integer number of pixels (1 to {MAX_IMAGE_SIZE}), "
            f"got {size!r}"
        )
    return size


class _TolerantTorchvisionLoader(importlib.abc.Loader):
    """Runs torchvision's `__init__`; if registering its compiled ops fails (a torchvision
    built for another torch: e.g. the CUDA wheel from PyPI beside a CPU-only torch), keeps the
    package importable without them. Its models and transforms are plain Python; only the ops
    (nms, roi_align, ...) are missing, and transformers (which imports torchvision.transforms
    when torchvision is installed) keeps working."""

    def __init__(self, real: Any) -> None:
        self.real = real

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module) -> None:
        try:
            self.real.exec_module(module)
        except RuntimeError as e:
            if "torchvision::" not in str(e):
                raise
            module.compiled_ops_error = str(e)  # what failed, for anyone who asks

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Finds the real torchvision and wraps its loader (see `_TolerantTorchvisionLoader`)."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "torchvision":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _TolerantTorchvisionLoader(spec.loader)
        return spec


def install_torchvision_fallback() -> None:
    """Make a mismatched torchvision importable (light: no import happens here)."""
    if not any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TorchvisionFinder())
