"""The `memwall` command. Each subcommand lives in its own module and registers itself on `app`."""

from __future__ import annotations

import importlib
import sys

from memwall.cli._common import app, fail_line
from memwall.errors import MemwallError

# Subcommand modules, imported for their @app.command registrations.
COMMANDS = ["analyze"]

for _name in COMMANDS:
    importlib.import_module(f"memwall.cli.{_name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    try:
        app(args=argv, prog_name="memwall", standalone_mode=True)
    except MemwallError as e:
        fail_line(str(e))
        sys.exit(2)
    except KeyboardInterrupt:
        fail_line("interrupted")
        sys.exit(130)
