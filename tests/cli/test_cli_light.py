"""The closed form stays light: `memwall analyze` imports none of the heavy libraries, and
running one subcommand does not import the others."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "transformers", "torchvision", "scipy", "matplotlib")
ANALYZE = ["analyze", "llama-3-8b", "--phase", "decode", "--seq-len", "4096", "--format", "json"]

# Runs the command line given in argv in-process, then writes what it imported to stderr.
PROBE = """
import json, sys
from memwall.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as e:
    code = e.code or 0
sys.stderr.write(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _modules_after(*args: str) -> tuple[str, set[str]]:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=300
    )
    report = json.loads(p.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, p.stderr
    return p.stdout, set(report["modules"])


def _top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_analyze_closed_form_imports_nothing_heavy():
    out, modules = _modules_after(*ANALYZE)
    assert json.loads(out)["model"] == "llama-3-8b"  # the command really ran
    assert "memwall.count" in modules
    assert not set(HEAVY) & _top_level(modules), sorted(set(HEAVY) & _top_level(modules))


def test_one_subcommand_imports_only_its_own_module():
    _, modules = _modules_after("devices", "--format", "json", "--no-measured")
    cli_modules = {m for m in modules if m.startswith("memwall.cli.")}
    assert "memwall.cli.devices" in cli_modules
    assert not cli_modules & {"memwall.cli.analyze", "memwall.cli.memory", "memwall.cli.profile"}
    assert not set(HEAVY) & _top_level(modules)
