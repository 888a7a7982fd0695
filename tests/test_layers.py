"""The layers of docs/architecture.md name every module, and `import memwall` stays light.

`lint-imports` checks the imports against the layers contract of `.importlinter`; this checks
that no top-level module of memwall is missing from it (a module the contract does not name
would import anything unseen), and that importing the package imports no torch.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "memwall"


def top_level_modules() -> set[str]:
    """Every module and package directly under src/memwall (data/ holds no Python)."""
    mods = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    mods |= {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    return mods


def layers_contract() -> tuple[list[str], configparser.SectionProxy]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / ".importlinter", encoding="utf-8")
    sections = [s for s in cfg.sections() if cfg[s].get("type") == "layers"]
    assert len(sections) == 1, f"one layers contract expected, found {sections}"
    sec = cfg[sections[0]]
    lines = [ln.strip() for ln in sec["layers"].splitlines() if ln.strip()]
    return lines, sec


def layer_names(lines: list[str]) -> list[str]:
    names = [n.strip() for ln in lines for n in re.split(r"[|:]", ln)]
    return [n.removeprefix("memwall.") for n in names]


def test_every_top_level_module_is_in_the_layers_contract():
    lines, sec = layers_contract()
    named = layer_names(lines)
    assert len(named) == len(set(named)), "a module is named in two layers"
    missing = top_level_modules() - set(named)
    assert not missing, f"not in the layers contract of .importlinter: {sorted(missing)}"
    stale = set(named) - top_level_modules()
    assert not stale, f"the layers contract names modules that do not exist: {sorted(stale)}"
    assert sec.get("exhaustive", "").strip().lower() == "true"
    assert "ignore_imports" not in sec


def test_measure_and_predict_are_independent_siblings():
    lines, _ = layers_contract()
    layer = next(ln for ln in lines if "measure" in re.split(r"\s*[|:]\s*", ln))
    assert ":" not in layer and set(re.split(r"\s*\|\s*", layer)) >= {"measure", "predict"}


def test_import_memwall_imports_no_torch_and_installs_nothing():
    code = (
        "import sys; before = list(sys.meta_path); import memwall; "
        "print('torch' in sys.modules, sys.meta_path == before)"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["False", "True"]


def test_no_module_is_over_500_lines():
    """Small modules with one job: a module past 500 lines is split before it grows further."""
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500
    }
    assert long == {}, f"modules over 500 lines: {long}"
