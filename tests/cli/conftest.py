"""One way to run the `memwall` command in tests: `cli(...)` in-process, `cli_subprocess(...)`
in a fresh interpreter (only for what needs one: interrupts, sys.modules, the installed entry).

    def test_x(cli):
        r = cli("memory", "gpt2", "--format", "json")
        assert r.code == 0, r.err
        d = r.json
        cli("memory", "gpt2", "--zero", "4").assert_one_line_error("ZeRO stage")
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from memwall.cli import main


@dataclass(frozen=True)
class Result:
    """What one `memwall` run left behind."""

    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def assert_one_line_error(self, needle: str = "", code: int = 2) -> None:
        """The bad-input contract: exit `code`, one line on stderr naming the problem, no
        traceback, nothing on stdout."""
        assert self.code == code, (self.code, self.out, self.err)
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert needle in lines[0], self.err
        assert "Traceback" not in self.err
        assert self.out == "", self.out


def _exit_code(e: SystemExit) -> int:
    if e.code is None:
        return 0
    return e.code if isinstance(e.code, int) else 1


def run_cli(*args: Any, env: dict[str, str] | None = None) -> Result:
    """Run `memwall ARGS...` in this process, capturing stdout, stderr and the exit code;
    env entries are set for the run only."""
    saved = {k: os.environ.get(k) for k in env or {}}
    out, err = io.StringIO(), io.StringIO()
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main([str(a) for a in args])
                code = 0
            except SystemExit as e:
                code = _exit_code(e)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def cli():
    """`cli("memory", "gpt2", ...)` -> Result; session-scoped so module fixtures can use it."""
    return run_cli


def memwall_command(*args: Any) -> list[str]:
    """The argv that runs `memwall ARGS...` in a fresh interpreter of this environment."""
    return [sys.executable, "-m", "memwall", *map(str, args)]


@pytest.fixture(scope="session")
def cli_subprocess():
    """Run `memwall ARGS...` in a fresh interpreter (slower: use only where it matters)."""

    def run(*args: Any, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
        p = subprocess.run(
            memwall_command(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
        )
        return Result(p.returncode, p.stdout, p.stderr)

    return run
