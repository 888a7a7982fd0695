"""Reading a user's `config.json` as data: a regular file (or a folder holding one), size-capped,
strict JSON (no NaN or Infinity), never executed. Re-exported by `memwall.spec`."""

from __future__ import annotations

import errno
import json
import stat
from pathlib import Path

from memwall.errors import MemwallError

MAX_CONFIG_BYTES = 4 * 1024 * 1024


def _regular_file(p: Path) -> Path:
    """`p` (or `p/config.json` for a folder) if it is a regular file; else one accurate line."""
    for _ in range(2):
        try:
            st = p.stat()
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise MemwallError(f"config path {p} is a symbolic link loop") from None
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise MemwallError(f"no such config file: {p}") from None
            raise MemwallError(f"cannot read config file {p}: {e.strerror}") from None
        except ValueError:  # an embedded NUL byte
            raise MemwallError(f"config path {str(p)!r} is not a valid file name") from None
        if stat.S_ISDIR(st.st_mode):
            p = p / "config.json"
            continue
        if stat.S_ISREG(st.st_mode):
            return p
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a device file"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "not a regular file"
        )
        raise MemwallError(f"config path {p} is {kind}; accepted: a regular JSON file")
    raise MemwallError(f"no such config file: {p}")


def path_exists(text: str) -> bool:
    """Whether the MODEL string `text` names an existing file or folder (False when nothing
    is there); a string the system cannot look up (too long for a file name, a symbolic link
    loop, no permission) is one line naming what is accepted instead."""
    try:
        Path(text).stat()
    except ValueError:  # an embedded NUL byte: no file has that name
        return False
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return False
        if e.errno == errno.ENAMETOOLONG:
            raise MemwallError(
                f"model {text[:40]!r}... is too long ({len(text):,} characters) for a preset "
                "name or a file path; accepted: a preset name (e.g. gpt2), a path to a "
                "config.json, torchvision:NAME or module:function"
            ) from None
        raise MemwallError(f"cannot look up model path {text[:200]!r}: {e.strerror}") from None
    return True


def read_config_file(path: str | Path) -> dict:
    """Read a config.json as data (size-capped, strict JSON), never as code."""
    if str(path).strip() == "":
        raise MemwallError(
            "the model is empty: give a preset name (e.g. gpt2) or a path to a config.json"
        )
    p = _regular_file(Path(path))
    try:
        with p.open("rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise MemwallError(f"cannot read config file {p}: {e.strerror}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise MemwallError(f"config file {p} is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        cfg = json.loads(raw.decode("utf-8-sig"), parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise MemwallError(f"config file {p} is not valid JSON: {str(e)[:120]}") from None
    return cfg


def _reject_constant(name: str) -> None:
    raise MemwallError(f"config contains {name}, which is not a number")
