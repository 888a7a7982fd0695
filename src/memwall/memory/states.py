"""Model states per device: weights, gradients, optimizer state and fp32 master weights, in
bytes per parameter by precision (the ZeRO paper's accounting, Rajbhandari et al. 2020), sharded
by ZeRO stage and moved to the host by offload. `memwall.memory.training` adds activations and
the step's timeline on top.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

from memwall.errors import MemwallError
from memwall.memory.activations import LABELS
from memwall.optimizers import OptimizerDef, StateBytes, get_optimizer, state_bytes
from memwall.precision import typed_precision
from memwall.spec import ModelSpec, Precision, parse_precision

MAX_DEVICES = 1_000_000
ZERO_STAGES = (0, 1, 2, 3)


@functools.lru_cache(maxsize=1)
def assumptions() -> dict[str, Any]:
    text = resources.files("memwall.data").joinpath("memory_assumptions.json").read_text("utf-8")
    return json.loads(text)


def framework_overhead(kind: str) -> tuple[float, str, str]:
    """(bytes, short note, full source) of the runtime overhead assumed for a device kind."""
    table = assumptions()["framework_overhead"]
    entry = table.get(kind, table["tpu" if kind == "accelerator" else "cpu"])
    return float(entry["bytes"]), entry["short"], entry["source"]


@dataclass(frozen=True)
class ParamGroups:
    """Parameters split by when their gradient appears in backward."""

    total: float
    embed: float
    layer: float  # one layer
    head: float  # final norm, untied LM head, pooler, classifier
    tied: float  # the embedding table shared with the LM head (its gradient comes first)
    largest: float  # the largest single tensor (a per-tensor optimizer step's temporaries)


def param_groups(spec: ModelSpec) -> ParamGroups:
    extra = 0 if spec.has_lm_head else spec.d_model * LABELS + LABELS  # classifier
    total = spec.n_params() + extra
    embed = spec.embedding_params() + (
        spec.d_model * (2 if spec.norm == "layernorm" else 1) if spec.embed_norm else 0
    )
    layer = spec.layer_params()
    head = total - embed - spec.n_layers * layer
    tied = spec.vocab_size * spec.d_model if (spec.has_lm_head and spec.tied_embeddings) else 0
    mats = [spec.vocab_size * spec.d_model, spec.d_model * spec.d_ff, spec.d_model * spec.q_dim]
    if spec.position == "learned":
        mats.append(spec.max_positions * spec.d_model)
    return ParamGroups(
        float(total), float(embed), float(layer), float(head), float(tied), float(max(mats))
    )


BF16 = parse_precision("bf16")


def model_states(
    n_params: float,
    optimizer: str | OptimizerDef = "adam",
    precision: Precision = BF16,
    zero: int = 0,
    devices: int = 1,
    offload: bool = False,
    master_weights: bool = True,
) -> dict[str, float]:
    """Per-device bytes of weights, gradients, optimizer state (the optimizer's own tensors) and
    fp32 master weights (mixed precision): the four parts sum to the model states."""
    check_parallel(zero, devices)
    sb = state_bytes(typed_precision(precision), master_weights)
    sh = Shards.of(zero, devices)
    w, g, o, m, host = sh.states(n_params, sb, get_optimizer(optimizer), offload)
    return {"weights": w, "gradients": g, "optimizer": o, "master_weights": m, "host": host}


@dataclass(frozen=True)
class Shards:
    """Over how many devices ZeRO splits each state: stage 1 the optimizer state (master
    weights included), stage 2 also the gradients, stage 3 also the weights."""

    weights: float
    gradients: float
    optimizer: float

    @classmethod
    def of(cls, zero: int, devices: int) -> Shards:
        n = float(devices)
        return cls(n if zero >= 3 else 1.0, n if zero >= 2 else 1.0, n if zero >= 1 else 1.0)

    def states(
        self, n_params: float, sb: StateBytes, opt: OptimizerDef, offload: bool
    ) -> tuple[float, float, float, float, float]:
        """(weights, gradients, optimizer state, master weights, host) bytes per device;
        offload moves the optimizer state and master weights to the host."""
        o = n_params * opt.n_states * sb.state / self.optimizer
        m = n_params * sb.master / self.optimizer
        host = o + m if offload else 0.0
        if offload:
            o, m = 0.0, 0.0
        return n_params * sb.weight / self.weights, n_params * sb.grad / self.gradients, o, m, host


def check_parallel(zero: int, devices: int) -> None:
    if isinstance(zero, bool) or not isinstance(zero, int) or zero not in ZERO_STAGES:
        raise MemwallError(f"ZeRO stage must be 0, 1, 2 or 3, got {zero!r}")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise MemwallError(f"devices must be an integer of at least 1, got {devices!r}")
    if devices > MAX_DEVICES:
        raise MemwallError(f"devices must be at most {MAX_DEVICES:,}, got {devices:,}")


@dataclass(frozen=True)
class DeviceStates:
    """Model-state bytes on one device (after ZeRO sharding and offload), and their pieces."""

    weights: float
    gradients: float  # all of them, at the end of backward
    master: float
    optimizer: float  # the optimizer's own tensors, master weights not included
    host: float
    step_workspace: float  # the optimizer step's temporaries
    hvp_workspace: float  # AdaHessian's Hessian-vector product
    zero_buffers: float
    grad_layer: float  # gradients of one layer
    grad_head: float  # gradients produced by the loss backward (head, tied embedding)
    grad_tied_dense: float  # the dense embedding gradient before it is accumulated


def device_states(
    pg: ParamGroups,
    sb: StateBytes,
    opt: OptimizerDef,
    zero: int,
    devices: int,
    offload: bool,
    foreach: bool,
) -> DeviceStates:
    sh = Shards.of(zero, devices)
    w, g, opt_state, master, host = sh.states(pg.total, sb, opt, offload)
    if foreach:
        ws_params = opt.step_workspace * pg.total / sh.optimizer
    else:
        ws_params = opt.step_workspace_per_tensor * min(pg.largest, pg.total / sh.optimizer)
    gather = assumptions()["zero"]["gather_layers"] * pg.layer * sb.weight if zero >= 3 else 0.0
    bucket = pg.layer * sb.grad if zero >= 2 else 0.0
    return DeviceStates(
        weights=w,
        gradients=g,
        master=master,
        optimizer=opt_state,
        host=host,
        step_workspace=0.0 if offload else ws_params * sb.state,
        hvp_workspace=opt.hvp_workspace * pg.total * sb.state / sh.optimizer,
        zero_buffers=gather + bucket,
        grad_layer=pg.layer * sb.grad / sh.gradients,
        grad_head=(pg.head + pg.tied) * sb.grad / sh.gradients,
        grad_tied_dense=pg.tied * sb.grad,
    )
