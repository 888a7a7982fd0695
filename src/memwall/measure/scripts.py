"""Console scripts of other virtual environments: which Python runs one, and how guidellm is
started (through `guidellm_launch.py`, by guidellm's own Python)."""

from __future__ import annotations

import shutil
from pathlib import Path


def script_python(exe: str) -> str | None:
    """The Python named on the first line of the script `exe`, or None when there is none."""
    with open(exe, "rb") as f:
        first = f.readline().decode(errors="replace")
    words = first[2:].split() if first.startswith("#!") else []
    if len(words) > 1 and Path(words[0]).name == "env":  # #!/usr/bin/env python3
        words = [shutil.which(words[1]) or words[1]]
    return words[0] if words and "python" in Path(words[0]).name else None


def guidellm_command(exe: str) -> list[str]:
    """How to start guidellm: by its own Python through `guidellm_launch` (which puts its
    Poisson start in order), or the script `exe` itself when its Python is not named."""
    python = script_python(exe)
    if python is None or not Path(python).is_file():
        return [exe]
    return [python, str(Path(__file__).with_name("guidellm_launch.py"))]
