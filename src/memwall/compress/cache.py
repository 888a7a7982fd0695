"""The compress cache's one file format: weights beside a manifest that vouches for them.

Why one format: the small trained models (`train`) and the pruned variants after their recovery
fine-tune (`variants`) are both minutes of deterministic training, kept in the user cache
directory (`records.store`; $MEMWALL_CACHE_DIR overrides it) and rebuilt whenever missing or
doubtful. The weights are a `state_dict` written with `torch.save` and read back with
`weights_only=True` (tensors only: no code runs on load); the JSON manifest is written after
them, each file atomically, and carries the weights' sha256, so a manifest only ever describes
whole weights and weights that changed after it was written are not trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from pydantic import BaseModel, ValidationError

from memwall.io import write_atomic_with, write_json

M = TypeVar("M", bound=BaseModel)

# What a cache read may raise on a damaged or foreign file: any of it means "rebuild".
READ_ERRORS = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    RuntimeError,
    EOFError,
    ValidationError,
    json.JSONDecodeError,
)


def python_version() -> str:
    return f"{platform.python_implementation()} {sys.version.split()[0]}"


def state_digest(model: torch.nn.Module) -> str:
    """sha256 of a module's state: every entry's name, dtype, shape and bytes, in order (the
    identity of the weights themselves, whichever file they came from)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def read_manifest(man_path: Path, kind: type[M]) -> M:
    """The manifest validated by its schema (raises one of READ_ERRORS if it does not)."""
    return kind(**json.loads(man_path.read_text()))


def read_weights(path: Path, sha256: str) -> dict[str, torch.Tensor] | None:
    """The state_dict in `path` if its bytes have the sha256 the manifest gives, else None.
    The bytes are read once and checked before torch parses them (tensors only)."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    state = torch.load(io.BytesIO(data), weights_only=True)
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        return None
    return state


def matches(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    """The state has exactly the module's entries, each with its dtype and shape, all finite."""
    own = model.state_dict()
    if set(own) != set(state):
        return False
    for k, t in own.items():
        s = state[k]
        if s.dtype != t.dtype or s.shape != t.shape:
            return False
        if s.is_floating_point() and not bool(torch.isfinite(s).all()):
            return False
    return True


def save(
    path: Path,
    man_path: Path,
    model: torch.nn.Module,
    manifest: Callable[[str], BaseModel],
) -> bool:
    """Weights first, then `manifest(sha256 of the weights file)`, each written atomically; a
    cache folder that cannot be written costs a rebuild next time, not this result (False)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic_with(path, lambda f: torch.save(model.state_dict(), f))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        write_json(man_path, manifest(digest).model_dump(mode="json"))
    except OSError:
        return False
    return True


def describe(value: Any) -> str:
    """A stable text of a key's parts (JSON, keys sorted) for hashing into a cache key."""
    return json.dumps(value, sort_keys=True, default=str)
