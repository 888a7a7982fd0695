"""The `memwall` command. Each subcommand lives in its own module and registers itself on `app`."""

from __future__ import annotations

import importlib
import sys

try:  # typer >= 0.2x vendors its own click
    from typer._click import exceptions as click
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click

from memwall.cli._common import app, fail_line
from memwall.errors import MemwallError

# Subcommand modules, imported for their @app.command registrations.
COMMANDS = ["analyze", "trends", "devices", "measure", "profile", "casestudy", "memory"]

for _name in COMMANDS:
    importlib.import_module(f"memwall.cli.{_name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: bad input is one line on stderr and exit code 2, never a traceback."""
    try:
        rc = app(args=argv, prog_name="memwall", standalone_mode=False)
    except click.NoArgsIsHelpError as e:  # a group called bare: its help, then exit 2
        sys.stdout.write(e.ctx.get_help() + "\n")
        sys.exit(2)
    except click.UsageError as e:
        hint = f" (see 'memwall {e.ctx.info_name} --help')" if e.ctx and e.ctx.parent else ""
        fail_line(e.format_message().replace("\n", " ") + hint)
        sys.exit(2)
    except click.ClickException as e:
        fail_line(e.format_message().replace("\n", " "))
        sys.exit(2)
    except MemwallError as e:
        fail_line(str(e))
        sys.exit(2)
    except KeyboardInterrupt:
        fail_line("interrupted")
        sys.exit(130)
    sys.exit(rc if isinstance(rc, int) else 0)
