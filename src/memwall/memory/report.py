"""What `memwall memory` reports, as one object per question: the JSON payload, the breakdown
rows and the facts a renderer needs. Every decision lives here; the CLI only parses and renders.

Inputs are typed (`ModelSpec`, `Workload`, `Precision`, `Device`): strings are parsed once, at
the edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from memwall.count import mla_form, mla_note
from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.memory.fit import Fit, check_fit
from memwall.memory.inference import InferenceFootprint, inference_memory, max_batch, max_context
from memwall.memory.remat import claim_check, remat_curve
from memwall.memory.states import framework_overhead, state_bytes
from memwall.memory.training import TrainingFootprint, max_train_batch, training_memory
from memwall.spec import ModelSpec, Precision, Workload, positions_note

PREDICTED = "closed form (memwall.memory), not measured"
UNITS = {"bytes": "byte", "flops": "FLOP (1 multiply-accumulate = 2 FLOPs)"}
BREAKDOWN_COLUMNS = ["component", "bytes", "share", "note"]
# The parts of `per_device` that are disjoint: their sum is the model states.
MODEL_STATE_PARTS = ("weights", "gradients", "optimizer_state", "master_weights")
MAX_OVERHEAD_GIB = 1e6
DEFAULT_GEN_LEN = 128  # tokens generated when a decoder's generation is asked without --gen-len


@dataclass(frozen=True)
class Overhead:
    """Framework memory per device (CUDA context, allocator slack) and where the number is from."""

    nbytes: float
    source: str


def framework_overhead_for(device: Device | None, overhead_gib: float | None) -> Overhead:
    """The user's number if given, else the assumption for the device's kind, else none."""
    if overhead_gib is not None:
        if not 0 <= overhead_gib <= MAX_OVERHEAD_GIB:
            raise MemwallError(
                f"--overhead-gib must be between 0 and {MAX_OVERHEAD_GIB:g}, got {overhead_gib}"
            )
        return Overhead(overhead_gib * 2**30, "given with --overhead-gib")
    if device is None:
        return Overhead(0.0, "not counted (give --device or --overhead-gib)")
    nbytes, short, _source = framework_overhead(device.kind)
    return Overhead(nbytes, f"assumed for a {device.kind} ({short})")


def infer_workload(
    spec: ModelSpec, phase: str | None, batch: int, seq_len: int, gen_len: int | None
) -> Workload:
    """The serving workload: generation for decoders and one encode for encoders by default;
    a generation length only where something is generated."""
    ph = phase or ("generate" if spec.is_decoder else "encode")
    if gen_len is not None and ph != "generate":
        raise MemwallError(f"--gen-len is for --phase generate (the phase here is {ph})")
    return Workload(
        ph,
        batch,
        seq_len,
        (DEFAULT_GEN_LEN if gen_len is None else gen_len) if ph == "generate" else 0,
    )


@dataclass(frozen=True)
class TrainSetup:
    """How a training step is run: everything but the model and the micro-batch shape."""

    precision: Precision
    optimizer: str = "adam"
    checkpointing: str = "none"
    zero: int = 0
    devices: int = 1
    offload: bool = False
    master_weights: bool = True
    impl: str = "eager"
    fused_attention: bool = True
    dropout: float = 0.0

    def kwargs(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def keeps_master_weights(self) -> bool:
        """Mixed precision with an fp32 copy of the weights (16-bit weights, not --no-master)."""
        return state_bytes(self.precision, self.master_weights).master > 0


@dataclass(frozen=True)
class MemoryReport:
    """One answer of `memwall memory`: the JSON payload and the rows of its table and CSV."""

    payload: dict[str, Any]
    rows: list[dict[str, Any]]
    columns: list[str]
    footprint: Any = None  # InferenceFootprint | TrainingFootprint | remat curve | Fig. 4 table
    fit: Fit | None = None
    notes: tuple[str, ...] = ()  # said under the table and in the payload's `notes`
    extra: dict[str, Any] = field(default_factory=dict)


def _notes(payload: dict[str, Any], *notes: str | None) -> tuple[str, ...]:
    """The notes that apply (positions counted past, what a precision quantizes), as `analyze`
    states them: in the payload's `notes` list and under the table."""
    kept = tuple(n for n in notes if n)
    payload["notes"] = list(kept)
    return kept


def _shares(rows: list[dict[str, Any]], total: float) -> list[dict[str, Any]]:
    return [{**r, "share": r["bytes"] / total if total else 0.0} for r in rows]


def infer_report(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision,
    fused_attention: bool | None = None,
    device: Device | None = None,
    overhead: Overhead = Overhead(0.0, "not counted"),
) -> MemoryReport:
    """Memory to serve `spec`: the footprint, and what fits `device` when one is given."""
    fp: InferenceFootprint = inference_memory(
        spec, workload, precision, fused_attention, overhead.nbytes, overhead.source
    )
    rows = _shares(fp.rows(), fp.total)
    payload: dict[str, Any] = {
        "model": spec.name,
        "mode": "infer",
        "precision": precision.label,
        "fused_attention": fp.fused_attention,
        "predicted": PREDICTED,
        "workload": {
            "phase": workload.phase,
            "batch": workload.batch,
            "seq_len": workload.seq_len,
            "gen_len": workload.gen_len,
            "context": workload.total_context,
        },
        "params": spec.n_params(),
        "footprint": fp.to_dict(),
        "breakdown": rows,
        "units": UNITS,
    }
    form = mla_form(spec, workload.phase, None)  # the activation peak depends on it
    if form:
        payload["mla_form"] = form
    notes = _notes(
        payload, positions_note(spec, workload.total_context), precision.note, mla_note(form)
    )
    fit = None
    if device is not None:
        fit = check_fit(fp.total, device)
        cap, ov = fit.capacity, overhead.nbytes
        payload["fit"] = fit.to_dict()
        payload["max_batch"] = max_batch(spec, workload, precision, cap, fused_attention, ov)
        payload["max_context"] = max_context(
            spec, workload.batch, precision, cap, fused_attention, ov
        )
        payload["max_positions"] = spec.max_positions
    return MemoryReport(payload, rows, BREAKDOWN_COLUMNS, fp, fit, notes)


def train_report(
    spec: ModelSpec,
    batch: int,
    seq_len: int,
    setup: TrainSetup,
    device: Device | None = None,
    overhead: Overhead = Overhead(0.0, "not counted"),
) -> MemoryReport:
    """Memory per device of one training step, its parts, and what fits `device`."""
    Workload("prefill", batch, seq_len)  # validates batch and length
    kw = {**setup.kwargs(), "overhead": overhead.nbytes, "overhead_source": overhead.source}
    fp: TrainingFootprint = training_memory(spec, batch, seq_len, **kw)
    rows = _shares(fp.rows(), fp.peak)
    setup_out = {k: v for k, v in setup.kwargs().items() if k != "precision"}
    setup_out.update(
        optimizer=fp.optimizer,
        checkpointing=fp.checkpointing,
        master_weights=setup.keeps_master_weights,
    )
    payload: dict[str, Any] = {
        "model": spec.name,
        "mode": "train",
        "precision": fp.precision,
        "predicted": PREDICTED,
        "setup": setup_out,
        "workload": {
            "batch_per_device": batch,
            "global_batch": batch * setup.devices,
            "seq_len": seq_len,
        },
        "params": fp.n_params,
        "per_device": fp.to_dict(),
        "model_state_parts": list(MODEL_STATE_PARTS),
        "model_state_parts_note": (
            "per_device weights + gradients + optimizer_state + master_weights = model_states; "
            "optimizer_state is the optimizer's own tensors (e.g. Adam's two moments) and does "
            "not include the fp32 master weights, which are master_weights"
        ),
        "breakdown": rows,
        "units": UNITS,
    }
    notes = _notes(payload, positions_note(spec, seq_len), setup.precision.note)
    fit = None
    if device is not None:
        fit = check_fit(fp.peak, device)
        payload["fit"] = fit.to_dict()
        payload["max_batch_per_device"] = max_train_batch(spec, seq_len, fit.capacity, **kw)
    return MemoryReport(payload, rows, BREAKDOWN_COLUMNS, fp, fit, notes)


TRADEOFF_COLUMNS = [
    "strategy",
    "activation_memory",
    "reduction",
    "extra_compute",
    "recompute_flops",
    "peak",
]


def tradeoff_report(spec: ModelSpec, batch: int, seq_len: int, setup: TrainSetup) -> MemoryReport:
    """The rematerialisation curve (activation memory against recompute) and the paper's claim."""
    Workload("prefill", batch, seq_len)
    s = setup
    curve = remat_curve(
        spec, batch, seq_len, s.precision, s.optimizer, s.impl, s.fused_attention, s.dropout
    )
    check = claim_check(curve)
    rows = curve.to_dict("records")
    payload = {
        "model": spec.name,
        "mode": "train",
        "precision": s.precision.label,
        "workload": {"batch": batch, "seq_len": seq_len},
        "impl": s.impl,
        "fused_attention": s.fused_attention,
        "dropout": s.dropout,
        "predicted": PREDICTED,
        "curve": rows,
        "paper_claim": check,
        "units": {
            "activation_memory": "byte",
            "recompute_flops": "FLOP",
            "extra_compute": "fraction of a step without recomputation",
        },
    }
    notes = _notes(payload, positions_note(spec, seq_len), s.precision.note)
    return MemoryReport(payload, rows, TRADEOFF_COLUMNS, curve, notes=notes, extra={"claim": check})
