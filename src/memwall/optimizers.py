"""What training keeps per parameter: each optimizer's state tensors (data/optimizers.json) and
the bytes per parameter of weights, gradients, fp32 master weights and optimizer state at a
precision (the ZeRO paper's accounting, Rajbhandari et al. 2020).

Facts below both `memwall.memory` (which shards them over devices) and `memwall.trace` (which
adds them to a traced module's activations). Pure: no torch.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources

from memwall.errors import MemwallError, suggest
from memwall.precision import DTYPE_BYTES, Precision, typed_precision

FP32 = float(DTYPE_BYTES["fp32"])


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


@dataclass(frozen=True)
class StateBytes:
    """Bytes per parameter of each model state."""

    weight: float
    grad: float
    master: float
    state: float  # per optimizer state tensor
    mixed: bool


def state_bytes(precision: Precision, master_weights: bool = True) -> StateBytes:
    """Bytes per parameter of each model state. Mixed bf16 training keeps its gradients in fp32:
    Megatron-LM turns on `accumulate_allreduce_grads_in_fp32` for bfloat16 ('accumulate and
    all-reduce gradients in fp32 for bfloat16 data type', megatron/training/arguments.py), the
    Llama 3 paper (section 3.3.2) accumulates and reduce-scatters gradients in fp32, and
    torchtitan's and llm-foundry's FSDP reduce in fp32. Mixed fp16 keeps fp16 gradients (loss
    scaling; Megatron and DeepSpeed), as does the paper's accounting (`precision.paper`)."""
    if precision.weight_bits not in (16, 32):
        raise MemwallError(
            f"training needs 16- or 32-bit weights, got {precision.weight_bits}-bit "
            "(accepted precisions: fp32, bf16, fp16, or W/A/KV with W = 16 or 32)"
        )
    w = precision.weight_bits / 8
    mixed = precision.weight_bits < 32
    master = FP32 if (mixed and master_weights) else 0.0
    state = FP32 if (mixed and master_weights) or not mixed else w
    fp32_grads = mixed and master_weights and precision.float_kind == "bf16" and not precision.paper
    return StateBytes(w, FP32 if fp32_grads else w, master, state, mixed)


def one_device_states(
    n_params: float,
    optimizer: str | OptimizerDef,
    precision: Precision,
    master_weights: bool = True,
) -> dict[str, float]:
    """Bytes of weights, gradients, optimizer state (the optimizer's own tensors) and fp32
    master weights (mixed precision) of `n_params` parameters on one device (no sharding, no
    offload: `memwall.memory.model_states` adds those)."""
    sb = state_bytes(typed_precision(precision), master_weights)
    n = float(n_params)
    return {
        "weights": n * sb.weight,
        "gradients": n * sb.grad,
        "optimizer": n * get_optimizer(optimizer).n_states * sb.state,
        "master_weights": n * sb.master,
    }
