"""Memory of any module, from one traced step: what autograd keeps for backward, plus the model
states of `memwall.optimizers` (weights, gradients, optimizer state, master weights).

Activations kept for backward are not guessed per layer type: the forward runs in training
mode (batch norm with batch statistics, dropout masks) on the meta device under
`torch.autograd.graph.saved_tensors_hooks`, and every tensor autograd saves is recorded by its
storage, each storage once (a ReLU saving the output of an in-place op shares it), parameters
excluded (they are the weights). The input batch is counted when an op saves it (the first
convolution does). On meta nothing is allocated, so this costs the same for any batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from memwall.optimizers import one_device_states
from memwall.precision import typed_precision
from memwall.spec import Precision, parse_precision
from memwall.trace.sources import ModuleRun

FP32 = parse_precision("fp32")


@dataclass(frozen=True)
class SavedActivations:
    """Bytes autograd keeps for backward after one forward."""

    nbytes: int
    tensors: int  # distinct storages saved
    by_dtype: dict[str, int] = field(default_factory=dict)


def saved_for_backward(run: ModuleRun) -> SavedActivations:
    """Run `run` once in training mode and add up the distinct storages autograd saves."""
    module = run.module
    params = {p.untyped_storage()._cdata for p in module.parameters()}
    seen: dict[int, tuple[int, str]] = {}
    keep: list[Any] = []  # hold the storages so no id is reused while we record

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        key = st._cdata
        if key not in params and key not in seen:
            seen[key] = (st.nbytes(), str(t.dtype).replace("torch.", ""))
            keep.append(st)
        return t

    was_training = module.training
    module.train()
    try:
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run.forward()
    finally:
        module.train(was_training)
    by_dtype: dict[str, int] = {}
    for nbytes, dt in seen.values():
        by_dtype[dt] = by_dtype.get(dt, 0) + nbytes
    return SavedActivations(sum(n for n, _ in seen.values()), len(seen), by_dtype)


@dataclass(frozen=True)
class ModuleTrainingMemory:
    """Per-device bytes of one training step of a traced module (no ZeRO, no checkpointing)."""

    model: str
    precision: str
    optimizer: str
    n_params: int
    weights: float
    gradients: float
    optimizer_state: float
    master_weights: float
    activations: float  # kept for backward (traced)
    inputs: str

    @property
    def total(self) -> float:
        """Model states + kept activations: the end of the forward pass, the usual peak of a
        step (backward's temporaries, a few layers' worth, are not included)."""
        return (
            self.weights
            + self.gradients
            + self.optimizer_state
            + self.master_weights
            + self.activations
        )

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"component": "weights", "bytes": self.weights, "note": self.precision},
            {"component": "gradients", "bytes": self.gradients, "note": ""},
            {"component": "optimizer state", "bytes": self.optimizer_state, "note": self.optimizer},
            {"component": "master weights", "bytes": self.master_weights, "note": "mixed"},
            {
                "component": "activations (kept)",
                "bytes": self.activations,
                "note": "traced: tensors autograd saves",
            },
            {"component": "total", "bytes": self.total, "note": "end of forward"},
        ]

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["total"] = self.total
        return d


def module_training_memory(
    run: ModuleRun, optimizer: str = "momentum", precision: Precision = FP32
) -> ModuleTrainingMemory:
    """Weights, gradients and optimizer state on one device (`memwall.optimizers`, as
    `memwall.memory.model_states` without ZeRO); activations from the traced forward. The
    module's dtype should match `precision`'s activations."""
    prec = typed_precision(precision)
    n = run.n_params
    st = one_device_states(n, optimizer, prec)
    saved = saved_for_backward(run)
    return ModuleTrainingMemory(
        model=run.name,
        precision=prec.label,
        optimizer=str(optimizer),
        n_params=n,
        weights=st["weights"],
        gradients=st["gradients"],
        optimizer_state=st["optimizer"],
        master_weights=st.get("master_weights", 0.0),
        activations=float(saved.nbytes),
        inputs=run.inputs,
    )


def module_inference_memory(run: ModuleRun, peak_activation_bytes: float) -> dict[str, float]:
    """Weights (in the module's dtypes) and the traced no_grad activation peak."""
    weights = float(sum(p.numel() * p.element_size() for p in run.module.parameters()))
    buffers = float(sum(b.numel() * b.element_size() for b in run.module.buffers()))
    return {
        "weights": weights,
        "buffers": buffers,
        "activations": float(peak_activation_bytes),
        "total": weights + buffers + float(peak_activation_bytes),
    }
