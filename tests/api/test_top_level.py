"""The front door: `import memwall` stays light, the top-level names are the api's functions,
each function's help names every flag of its command, every listed function resolves."""

from __future__ import annotations

import importlib.util
import pydoc
import subprocess
import sys

import pytest

import memwall
import memwall.api


def test_import_memwall_loads_no_torch():
    code = "import memwall, sys; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip() == "False"


def test_import_memwall_api_loads_no_pandas_and_touching_a_name_loads_one_module():
    code = (
        "import sys, memwall.api\n"
        "print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))\n"
        "memwall.api.devices\n"
        "print(sorted(m for m in sys.modules if m.startswith('memwall.api.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout.splitlines()
    assert out[0] == "[]"
    assert "memwall.api._devices" in out[1] and "memwall.api._analyze" not in out[1]


def test_top_level_names_are_the_api_functions():
    assert memwall.analyze is memwall.api.analyze
    assert memwall.devices is memwall.api.devices
    assert memwall.Result is memwall.api.Result
    for name in memwall.api.TOP_LEVEL:
        assert getattr(memwall, name) is getattr(memwall.api, name)
    with pytest.raises(AttributeError):
        memwall.no_such_function  # noqa: B018


@pytest.mark.parametrize("name", sorted(memwall.api.FUNCTIONS))
def test_every_listed_function_resolves(name):
    module = f"memwall.api.{memwall.api.FUNCTIONS[name]}"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet (memwall.api.{name})")
    obj = getattr(memwall.api, name)
    assert callable(obj) and obj.__doc__
    assert name in dir(memwall.api)


def _cli_options(command: str) -> list[str]:
    """The Python names of a command's parameters (--seq-len -> seq_len), --format aside."""
    import typer

    from memwall.cli import app

    group = typer.main.get_command(app)
    return [p.name for p in group.commands[command].params if p.name != "fmt"]


@pytest.mark.parametrize(
    "command,function",
    [("analyze", "analyze"), ("devices", "devices"), ("trends", "trends")],
)
def test_help_names_every_cli_option(command, function):
    fn = getattr(memwall.api, function)
    text = pydoc.render_doc(fn)
    doc = fn.__doc__
    options = _cli_options(command)
    assert options
    for name in options:
        assert name in text, f"help(memwall.api.{function}) does not mention {name}"
        assert f"\n        {name}: " in doc, f"the Args of {function} lack {name}"
    assert "Example:" in doc and ">>> memwall." in doc
