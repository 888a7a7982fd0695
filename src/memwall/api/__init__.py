"""memwall as a library: one function per command, each returning a `Result`.

    import memwall
    r = memwall.analyze("llama-3-8b", phase="decode", seq_len=4096, precision="bf16",
                        device="h100-sxm")
    r.to_dict()      # exactly `memwall analyze ... --format json`
    r.ops            # the operation table (pandas)

Every function takes the CLI's flags as keyword arguments (dashes as underscores) with the
same defaults, and decides all policy (defaults, predictor, threads, data directory) here:
the CLI and the report only parse, call and render. Functions are loaded on first use, so
`import memwall` stays light (no torch, no pandas).

Names: `analyze`, `profile`, `casestudy` and `devices` are also re-exported at the top level
(`memwall.analyze`). `memory`, `parallel`, `compress`, `trends`, `measure` and `report` are
implementation packages of memwall (`memwall.memory` ...), so those functions are reached as
`memwall.api.memory(...)`: a function may not shadow the package it is built on (so is
`serve`, built on `memwall.serve`).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# function name -> module of memwall.api that defines it (modules are private: `_memory`
# holds `memory()`, so that the function, not the module, is `memwall.api.memory`)
FUNCTIONS = {
    "analyze": "_analyze",
    "devices": "_devices",
    "trends": "_trends",
    "memory": "_memory",
    "parallel": "_parallel",
    "profile": "_profile",
    "casestudy": "_casestudy",
    "measure": "_measure",
    "compress": "_compress",
    "serve": "_serve",
    "count_ops": "_counter",
    "Result": "_result",
}
TOP_LEVEL = ("analyze", "profile", "casestudy", "devices", "count_ops", "Result")
CHECKED = frozenset(FUNCTIONS) - {"Result", "count_ops"}  # the commands' functions

__all__ = sorted(FUNCTIONS)


def __getattr__(name: str) -> Any:
    if name in FUNCTIONS:
        value = getattr(import_module(f"{__name__}.{FUNCTIONS[name]}"), name)
        if name in CHECKED:  # each argument against its annotation (`_types.checked`)
            from memwall.api._types import checked

            value = checked(value)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *FUNCTIONS})
