"""Code memwall runs but does not own: a user's `module:function` entry point and the module it
returns, and torchvision's models.

Whatever such code raises (at import, at the call, in forward) is about the user's input, not a
bug of memwall, so it becomes one `MemwallError` line naming the code and its error instead of a
traceback; `sys.exit` and an exhausted stdin (EOFError, click's Abort) included, since either
would otherwise end memwall silently. KeyboardInterrupt still interrupts (exit 130). An
exception whose innermost frame is memwall's own code (the tracer) is a bug of ours and keeps its
traceback, unless it is a resource error (RecursionError, MemoryError) the foreign code caused.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memwall.errors import MemwallError

_MEMWALL = Path(__file__).resolve().parents[1]  # the memwall package directory
_MAX_CHARS = 300  # of the foreign error's message


def describe(e: BaseException) -> str:
    """'ValueError: bad' from an exception: its type and the first line of its message."""
    text = (str(e).strip().splitlines() or [""])[0]
    text = text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _raised_by_memwall(e: BaseException) -> bool:
    """The innermost frame is memwall's own code, below the call into the foreign code. The
    traceback starts at `foreign_code` and the frame that called the foreign code; nothing
    below them means the foreign callable is C code (e.g. `builtins:input`) and it raised."""
    frames = traceback.extract_tb(e.__traceback__)
    if len(frames) <= 2 or isinstance(e, RecursionError | MemoryError):
        return False
    try:
        return Path(frames[-1].filename).resolve().is_relative_to(_MEMWALL)
    except (OSError, ValueError):
        return False


@contextmanager
def foreign_code(who: str, hint: str = "") -> Iterator[None]:
    """Run foreign code: what it raises becomes 'WHO raised TYPE: MESSAGE' + `hint` (one line).

    `hint` (e.g. "; it takes images of at least 75x75") says what would be accepted."""
    try:
        yield
    except (MemwallError, KeyboardInterrupt):
        raise
    except SystemExit as e:
        raise MemwallError(f"{who} called sys.exit({e.code!r}) instead of returning{hint}") from e
    except Exception as e:  # EOFError, click/typer Abort, RecursionError, MemoryError, ...
        if _raised_by_memwall(e):
            raise
        raise MemwallError(f"{who} raised {describe(e)}{hint}") from e
