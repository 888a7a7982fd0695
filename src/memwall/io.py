"""Writing files: one atomic write and one output-path check, used by every module that saves.

Why: a half-written figure, device or calibration is worse than none, and a path that cannot be
written should be refused before minutes of work, not after. Every write goes to a temporary
file in the target's own folder (same filesystem) and is renamed into place with `os.replace`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from memwall.errors import MemwallError

NAME_MAX = 255  # bytes in one path component (Linux, macOS, Windows)
PATH_MAX = 4096


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic_with(path: str | Path, writer: Callable[[IO[bytes]], Any]) -> Path:
    """Call `writer(file)` on a temporary file beside `path`, then rename it into place.

    The file gets the ordinary permissions of a new file (0666 minus the umask); on any error
    (or Ctrl-C) the temporary file is removed and `path` is left as it was.
    """
    p = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:100]}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            writer(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return write_atomic_with(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any, indent: int = 2, mkdir: bool = False) -> Path:
    """Write `obj` as JSON (one trailing newline) atomically; `mkdir` creates missing folders."""
    p = Path(path)
    if mkdir:
        p.parent.mkdir(parents=True, exist_ok=True)
    return write_text(p, json.dumps(obj, indent=indent) + "\n")


def _check_name(p: Path, what: str) -> None:
    text = str(p)
    if not text.strip():
        raise MemwallError(f"{what} is empty; give a file name")
    if "\0" in text:
        raise MemwallError(f"{what} contains a NUL character")
    if len(os.fsencode(text)) > PATH_MAX:
        raise MemwallError(f"{what} is longer than {PATH_MAX} bytes")
    for part in p.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise MemwallError(
                f"{what}: name {part[:40]!r}... is longer than {NAME_MAX} bytes "
                f"({len(os.fsencode(part))})"
            )


def check_writable_dir(folder: Path, what: str) -> None:
    """Refuse a folder that does not exist or where a file cannot be created (tried for real:
    permission bits say nothing for root, read-only mounts or /proc)."""
    if not folder.exists():
        raise MemwallError(f"{what}: folder '{folder}' does not exist")
    if not folder.is_dir():
        raise MemwallError(f"{what}: '{folder}' is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".memwall-probe.", dir=folder)
    except OSError as e:
        raise MemwallError(
            f"{what}: cannot write in folder '{folder}' ({e.strerror or type(e).__name__})"
        ) from None
    os.close(fd)
    Path(tmp).unlink(missing_ok=True)


def _norm_exts(allowed_exts: Iterable[str]) -> tuple[str, ...]:
    return tuple("." + e.lower().lstrip(".") for e in allowed_exts)


def check_output_path(
    path: str | Path, allowed_exts: Iterable[str], what: str = "output file"
) -> Path:
    """The path a command will write, checked before any work: a sane name with a known
    extension, not a folder, in an existing folder where a file can be created.

    Raises MemwallError (one line naming what is wrong and what is accepted)."""
    p = Path(path)
    _check_name(p, what)
    exts = _norm_exts(allowed_exts)
    if p.is_dir():
        raise MemwallError(f"{what} '{p}' is a folder; give a file name such as out{exts[0]}")
    if p.suffix.lower() not in exts:
        accepted = exts[0] if len(exts) == 1 else f"{', '.join(exts[:-1])} or {exts[-1]}"
        raise MemwallError(
            f"{what} must end in {accepted} (unknown format {p.suffix or 'none'!r} "
            f"in {p.name[:60]!r})"
        )
    if p.exists() and not p.is_file():
        raise MemwallError(f"{what} '{p}' exists and is not a regular file")
    check_writable_dir(p.parent if str(p.parent) else Path("."), what)
    return p


def check_output_dir(path: str | Path, what: str = "output folder", create: bool = True) -> Path:
    """A folder a command will write files into: created when missing (if `create`), and
    checked writable, before any work."""
    p = Path(path)
    _check_name(p, what)
    if p.exists() and not p.is_dir():
        raise MemwallError(f"{what} '{p}' is a file; give a folder to write into")
    if create and not p.exists():
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise MemwallError(
                f"{what}: cannot create folder '{p}' ({e.strerror or type(e).__name__})"
            ) from None
    check_writable_dir(p, what)
    return p
