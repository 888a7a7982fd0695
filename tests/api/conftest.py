"""The parity tests of `memwall.api` run the command line with tests/cli's runner: `cli(...)`
in-process (`memwall.api.X(...).to_dict()` must equal what `memwall X ... --format json`
prints). One runner for both folders, imported rather than copied."""

from __future__ import annotations

from cli.conftest import cli, run_cli  # noqa: F401  (tests/ is on sys.path, like tiny_configs)
