"""Ctrl-C anywhere: one line saying what was kept, exit code 130, never a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

import memwall.memory.report


def test_interrupt_inside_a_command_is_one_line_and_130(cli, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(memwall.memory.report, "infer_report", interrupted)
    r = cli("memory", "gpt2")
    assert r.code == 130
    lines = r.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memwall: interrupted: "), r.err
    assert "nothing was saved" in lines[0] and "Traceback" not in r.err


def test_interrupt_note_says_what_was_kept(cli, monkeypatch):
    from memwall.cli._common import keep_note

    def partial(*a, **k):
        keep_note("3 of 10 rows printed")
        raise KeyboardInterrupt

    monkeypatch.setattr(memwall.memory.report, "infer_report", partial)
    r = cli("memory", "gpt2")
    assert r.code == 130 and r.err == "memwall: interrupted: 3 of 10 rows printed\n"

    def plain(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(memwall.memory.report, "infer_report", plain)
    r = cli("memory", "gpt2")  # the next run starts from "nothing was saved" again
    assert r.code == 130 and "nothing was saved" in r.err


# Python that interrupts the import of Typer, as a Ctrl-C while the command starts would.
INTERRUPT_IMPORT = """
import builtins, sys
real = builtins.__import__
def imp(name, *a, **k):
    if name == "typer" or name.startswith("typer."):
        raise KeyboardInterrupt
    return real(name, *a, **k)
builtins.__import__ = imp
from memwall.cli import main
main(sys.argv[1:])
"""


def test_interrupt_while_importing_prints_no_traceback():
    p = subprocess.run(
        [sys.executable, "-c", INTERRUPT_IMPORT, "devices"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 130, p.stderr
    assert p.stderr == "memwall: interrupted while starting: nothing was done\n"


def default_sigint() -> None:
    """In the child, before exec: Ctrl-C back to its default. A shell starts a background job
    (`make test &`, nohup) with SIGINT ignored, children inherit that, and Python keeps an
    ignored SIGINT ignored, so the interrupt these tests send would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# `memwall memory gpt2` whose work never ends; it touches READY when the work has begun.
SLOW_COMMAND = """
import pathlib, sys, time
import memwall.memory.report as m
def slow(*a, **k):
    pathlib.Path(sys.argv[1]).touch()
    time.sleep(120)
m.infer_report = slow
from memwall.cli import main
main(["memory", "gpt2"])
"""


def _sigint(ready, wait_ready: bool) -> subprocess.CompletedProcess:
    argv = (
        [sys.executable, "-c", SLOW_COMMAND, str(ready)]
        if wait_ready  # the real entry point, interrupted while it loads
        else [sys.executable, "-m", "memwall", "memory", "llama-3-70b", "--mode", "train"]
    )
    # Before memwall's own code runs, a Ctrl-C is Python's to handle, not ours: land it after
    # `import memwall` would be done (timed here, so a loaded machine waits longer) and well
    # before the ~1 s the command takes to load Typer and its subcommands.
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import memwall"], check=True, timeout=120)
    startup = time.monotonic() - t0
    p = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while wait_ready and not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not wait_ready:
        time.sleep(max(0.2, 2 * startup))  # still loading Typer or the subcommands
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.parametrize("wait_ready", [False, True], ids=["while-starting", "while-working"])
def test_real_sigint_is_one_line_and_130(tmp_path, wait_ready):
    r = _sigint(tmp_path / "ready", wait_ready)
    assert r.returncode == 130, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("memwall: interrupted"), r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    if wait_ready:
        assert lines[0] == "memwall: interrupted: " + (
            "nothing was saved (outputs are written whole or not at all)"
        )


# The real `python -m` entry, with a command whose wait sits inside an exec'd string, as a
# Ctrl-C landing in a dataclass's generated method would. CPython remembers such an interrupt
# even once handled and, under `-m`, ended the process by SIGINT (-2) after our line.
SLOW_IN_EXEC = """
import pathlib, sys
import memwall.memory.report as m
def slow(*a, **k):
    pathlib.Path(sys.argv[1]).touch()
    exec("import time\\ntime.sleep(120)")
m.infer_report = slow
from memwall.cli import main
main(["memory", "gpt2"])
"""


def test_sigint_inside_exec_code_still_exits_130(tmp_path):
    (tmp_path / "slow_in_exec.py").write_text(SLOW_IN_EXEC)
    ready = tmp_path / "ready"
    p = subprocess.Popen(
        [sys.executable, "-m", "slow_in_exec", str(ready)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert (
        err == "memwall: interrupted: nothing was saved (outputs are written whole or not at all)\n"
    )


def test_an_interrupt_native_code_reports_as_its_own_error_is_still_130(monkeypatch, capsys):
    """pydantic-core turns a Ctrl-C that lands while it builds a schema into a SchemaError;
    the SIGINT handler's note makes that one line and exit 130, not a traceback."""
    import memwall.cli as cli
    import memwall.cli._common as common

    def interrupted_in_native_code(argv, commands):
        cli._SIGINT[0] = True
        raise RuntimeError("SchemaError: Error building serializer: KeyboardInterrupt")

    import signal

    monkeypatch.setattr(signal, "signal", lambda *a: None)  # leave pytest's own handler be
    monkeypatch.setattr(common, "run", interrupted_in_native_code)
    monkeypatch.setattr(cli, "_SIGINT", [False])
    with pytest.raises(SystemExit) as e:
        cli.main(["memory", "gpt2"])
    assert e.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "memwall: interrupted while starting: nothing was done"
    ]

    def plain_bug(argv, commands):
        raise RuntimeError("a bug, no interrupt")

    monkeypatch.setattr(common, "run", plain_bug)
    monkeypatch.setattr(cli, "_SIGINT", [False])
    with pytest.raises(RuntimeError, match="a bug"):
        cli.main(["memory", "gpt2"])
