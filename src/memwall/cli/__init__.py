"""The `memwall` command. Each subcommand lives in its own module and registers itself on `app`.

Importing this package is light: Typer, Rich and the subcommands load when `main()` runs,
inside its interrupt handler, so a Ctrl-C while they load is one line and exit 130 too.
"""

from __future__ import annotations

import sys
from typing import Any

# Subcommand modules, imported for their @app.command registrations.
COMMANDS = [
    "analyze",
    "trends",
    "devices",
    "measure",
    "profile",
    "casestudy",
    "memory",
    "parallel",
    "report",
    "compress",
    "serve",
]


_SIGINT = [False]  # set when Ctrl-C arrived, whatever exception it came back as


def _on_sigint(signum: int, frame: Any) -> None:
    _SIGINT[0] = True
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback;
    Ctrl-C is one line saying what was kept and exit code 130. A Ctrl-C that lands inside
    native code can come back as that code's own error (pydantic-core, building a model's
    schema while a module loads, reports a SchemaError wrapping it): the handler notes the
    signal, so such an error still ends as an interrupt."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
    try:
        try:
            from memwall.cli._common import run  # the heavy part of starting up
        except KeyboardInterrupt:
            _starting_interrupted()
        run(argv, COMMANDS)
    except Exception:
        if not _SIGINT[0]:
            raise
        _starting_interrupted()
    finally:
        _forget_handled_interrupt()


def _starting_interrupted() -> None:
    sys.stderr.write("memwall: interrupted while starting: nothing was done\n")
    sys.exit(130)


def _forget_handled_interrupt() -> None:
    """Let the exit code we chose stand. CPython remembers a KeyboardInterrupt that escaped
    any string it exec'd (dataclasses build their methods that way while modules load, and
    a Ctrl-C can land there), even once we have handled it; under `python -m` it then ends
    the process by SIGINT (exit -2) instead of our 130. Evaluating any string clears that
    memory; a KeyboardInterrupt still unhandled here sets it again, as it should."""
    eval("0")  # a constant: runs nothing but clears the interpreter's flag


def __getattr__(name: str) -> Any:
    """`from memwall.cli import app`: the Typer app with every subcommand registered."""
    if name == "app":
        from memwall.cli._common import app, register

        register(COMMANDS)
        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
