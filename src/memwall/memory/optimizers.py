"""Optimizers as the memory they keep per parameter; the facts live in data/optimizers.json."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from memwall.errors import MemwallError, suggest


@dataclass(frozen=True)
class OptimizerDef:
    """What an optimizer stores besides the weights and their gradients."""

    name: str
    display: str
    aliases: tuple[str, ...]
    states: tuple[str, ...]  # parameter-shaped tensors kept between steps
    step_workspace: float  # parameter-sized temporaries of a multi-tensor (foreach) step
    step_workspace_per_tensor: float  # temporaries of one tensor's size, per-tensor step
    hvp_workspace: float  # parameter-sized tensors of a Hessian-vector product (AdaHessian)
    backward_graph: float  # extra copies of the saved activations kept by create_graph=True
    source: str
    note: str

    @property
    def n_states(self) -> int:
        return len(self.states)


@functools.lru_cache(maxsize=1)
def _load() -> dict[str, OptimizerDef]:
    text = resources.files("memwall.data").joinpath("optimizers.json").read_text(encoding="utf-8")
    raw = json.loads(text)["optimizers"]
    return {
        name: OptimizerDef(
            name=name,
            display=d["display"],
            aliases=tuple(d["aliases"]),
            states=tuple(d["states"]),
            step_workspace=float(d["step_workspace"]),
            step_workspace_per_tensor=float(d["step_workspace_per_tensor"]),
            hvp_workspace=float(d["hvp_workspace"]),
            backward_graph=float(d["backward_graph"]),
            source=d["source"],
            note=d.get("note", ""),
        )
        for name, d in raw.items()
    }


def optimizer_names() -> list[str]:
    return list(_load())


def get_optimizer(name: str | OptimizerDef) -> OptimizerDef:
    """An optimizer by name or alias (`adam`, `sgd-momentum`); unknown names get suggestions."""
    if isinstance(name, OptimizerDef):
        return name
    key = str(name).strip().lower()
    for opt in _load().values():
        if key == opt.name or key in opt.aliases:
            return opt
    names = optimizer_names()
    aliases = [a for o in _load().values() for a in o.aliases]
    raise MemwallError(
        f"unknown optimizer {name!r}{suggest(key, sorted(set(names + aliases)))}; "
        f"accepted: {', '.join(names)}"
    )
