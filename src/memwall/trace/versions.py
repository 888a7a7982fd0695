"""Which transformers releases the trace engine runs on, kept in one place.

The trace engine drives transformers' internals (its `StaticCache` layers, attention paths), which
change between releases: an untested release fails deep inside transformers, so the range is
checked before a model is built, and a failure inside transformers becomes one line that names
the model and the release. Version-dependent code elsewhere asks `transformers_at_least` about a
named constant below, never compares versions itself.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from memwall.errors import MemwallError

# Tried: 4.57.6 and 5.0.0 fail on the meta device (the cache's fill level is read back as a
# number); up to 5.14 T5 has no SDPA path; 5.15.0, 5.24.0 and 5.25.0 pass; 6 is not out yet.
SUPPORTED_TRANSFORMERS = (">=5.15", "<6")
# From 5.25 transformers caches Falcon's (new architecture, Falcon-40B) K/V heads as projected;
# before, it repeated them to every query head first and cached that.
FALCON_CACHES_KV_HEADS = "5.25"
_MEMWALL = Path(__file__).resolve().parents[1]  # the memwall package directory
_INSTALL = "pip install 'transformers{}'"


def _parse(version: str) -> Any:
    """A comparable version: `packaging.version` (a transformers dependency) when present, else
    the leading release numbers (enough for the releases compared here)."""
    numbers = re.findall(r"\d+", version.split("+")[0])[:3] or ["0"]
    try:
        from packaging.version import InvalidVersion, Version
    except ImportError:  # pragma: no cover - packaging comes with transformers
        return tuple(int(n) for n in numbers)
    try:
        return Version(version)
    except InvalidVersion:  # not PEP 440: compare its release numbers
        return Version(".".join(numbers))


def _satisfies(version: str, bound: str) -> bool:
    """`version` meets one bound of the form `>=X` or `<X`."""
    m = re.fullmatch(r"(>=|<)\s*(\S+)", bound)
    if m is None:
        raise ValueError(f"unsupported version bound {bound!r}: use >=X or <X")
    v, ref = _parse(version), _parse(m.group(2))
    return v >= ref if m.group(1) == ">=" else v < ref


def installed_transformers() -> str | None:
    """The installed transformers release, read from its metadata (nothing is imported)."""
    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:
        return None


def unsupported_message(version: str | None = None) -> str | None:
    """Why `version` (default: the installed one) cannot run the trace engine, or None."""
    version = installed_transformers() if version is None else version
    wanted = ",".join(SUPPORTED_TRANSFORMERS)
    if version is None:
        return f"the trace engine needs transformers: {_INSTALL.format(wanted)}"
    if all(_satisfies(version, b) for b in SUPPORTED_TRANSFORMERS):
        return None
    return (
        f"transformers {version} is outside the supported range {wanted} of the trace engine: "
        f"{_INSTALL.format(wanted)}, or use --engine closed"
    )


def check_transformers() -> None:
    """Refuse an installed transformers outside `SUPPORTED_TRANSFORMERS` (one line)."""
    msg = unsupported_message()
    if msg:
        raise MemwallError(msg)


def transformers_at_least(version: str) -> bool:
    """The installed transformers is `version` or newer (for version-dependent code)."""
    installed = installed_transformers()
    return installed is not None and _satisfies(installed, f">={version}")


def _raised_in_transformers(e: BaseException) -> bool:
    """transformers' code is on the stack, and the innermost frame is not memwall's (an error
    of memwall's tracer, called from a transformers forward, is a bug of ours)."""
    files = [Path(f.filename) for f in traceback.extract_tb(e.__traceback__)]
    if not any("transformers" in f.parts for f in files):
        return False
    return not files[-1].resolve().is_relative_to(_MEMWALL)


@contextmanager
def transformers_failures(model: str) -> Iterator[None]:
    """Turn an exception raised inside transformers' code into one line naming the model and
    the release (the cause stays chained for debugging); memwall's own errors pass through."""
    try:
        yield
    except MemwallError:
        raise
    except Exception as e:
        if not _raised_in_transformers(e):
            raise
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise MemwallError(
            f"transformers {installed_transformers()} failed to run {model!r} "
            f"({type(e).__name__}: {first}); the trace engine is tested with transformers "
            f"{','.join(SUPPORTED_TRANSFORMERS)}: use --engine closed, or report it"
        ) from e
