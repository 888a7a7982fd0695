"""The work of a training step that is not in the model's forward and backward op table.

Realistic pricing only (the roofline leaves these out, as upper bounds do); each is
memory-bound and priced at the device's achievable bandwidth (`bw_frac` of
`data/efficiency.json`):
- cross-entropy over the vocabulary, per micro-batch on the last stage, as Megatron-Core's
  vocab-parallel cross-entropy runs it by default (`CE_PASSES`: eight passes over the logits,
  52 bytes per logit over forward and backward; its opt-in `--cross-entropy-loss-fusion` makes
  about 40, a single fused loss kernel about 6 (one 16-bit read forward, a read and a write
  backward); other stacks are not told apart here: the logits are a share of a step only
  where the vocabulary is large beside the width, as Llama 3's 128k beside 4096);
- fp32 gradient accumulation, per micro-batch, 4 bytes per parameter read and written. Without
  ZeRO-2/3 (Megatron-LM and its descendants) each weight-gradient GEMM adds its result into the
  fp32 main gradient in its own epilogue (`--gradient-accumulation-fusion`, on by default:
  Megatron-LM `arguments.py` has only `--no-gradient-accumulation-fusion`; Transformer Engine's
  `fuse_wgrad_accumulation`), so those bytes move inside a compute-bound GEMM and only the share
  a kernel's memory time is not hidden under its compute costs (1 - `memory_compute_overlap`,
  as `predict.efficiency.combine` prices every kernel); with ZeRO-2/3 (FSDP) each micro-batch's
  gradients are reduce-scattered and added into the device's 1/N shard of the fp32 gradients,
  a separate memory-bound add over that shard;
- gradient norm and clipping, per step: every fp32 gradient on the device read twice (the norm,
  then the scaling);
- the optimizer update, per step: it reads the device's weights, gradients and optimizer states
  and writes the weights and states (every kernel priced, the roofline's too).
Sources: Megatron-LM `core/tensor_parallel/cross_entropy.py` (vocab-parallel cross-entropy in
fp32) and `--gradient-accumulation-fusion` (fp32 main_grad accumulated in the wgrad GEMM);
Adam with gradient clipping (Megatron's `clip_grad_norm_fp32`).
"""

from __future__ import annotations

from typing import Any

from memwall.hardware import Device
from memwall.memory import get_optimizer
from memwall.memory.training import state_bytes
from memwall.predict.efficiency import efficiency_terms, memory_compute_overlap
from memwall.spec import Precision

# Megatron-Core tensor_parallel/cross_entropy.py, unfused (the default): each pass over the
# logits with the bytes it reads and writes per logit
CE_PASSES = (
    ("upcast the 16-bit logits to fp32", 2, 4),
    ("row max", 4, 0),
    ("subtract the max, in place", 4, 4),
    ("exp, in place", 4, 4),
    ("row sum", 4, 0),
    ("divide by the sum, in place: the softmax kept for backward", 4, 4),
    ("backward: scale by the loss gradient, in place", 4, 4),
    ("backward: the gradient cast back to 16 bits for the output layer", 4, 2),
)
CE_BYTES_PER_LOGIT = float(sum(r + w for _, r, w in CE_PASSES))  # 52
ACCUM_BYTES_PER_PARAM = 8.0  # fp32 main gradient read and written once per micro-batch
CLIP_BYTES_PER_PARAM = 8.0  # fp32 gradient read for the norm, read again to scale


def _bandwidth(device: Device) -> float:
    return device.memory_bandwidth() * efficiency_terms(device)["bw_frac"].value


def cross_entropy_time(tokens: int, vocab_shard: int, device: Device) -> float:
    """Seconds of the loss over `tokens` tokens and this device's slice of the vocabulary
    (forward and backward together)."""
    return tokens * vocab_shard * CE_BYTES_PER_LOGIT / _bandwidth(device)


def accumulation_time(params: float, device: Device, fused: bool = False) -> float:
    """Seconds per micro-batch to add `params` weight gradients into fp32 main gradients: a
    separate memory-bound add, or (`fused`) inside the weight-gradient GEMMs' epilogues, where
    all but the unhidden share of the bytes run under the GEMMs' compute."""
    t = params * ACCUM_BYTES_PER_PARAM / _bandwidth(device)
    return t * (1.0 - memory_compute_overlap()) if fused else t


def clipping_time(params: float, device: Device) -> float:
    """Seconds per step for the gradient norm and clipping over the device's gradients."""
    return params * CLIP_BYTES_PER_PARAM / _bandwidth(device)


def optimizer_time(fp: Any, prec: Precision, optimizer: str, device: Device) -> float:
    """Seconds per step of the update: it reads weights, gradients and states and writes weights
    and states, over the device's shard of the optimizer states (`fp`: its training memory)."""
    opt = get_optimizer(optimizer)
    sb = state_bytes(prec)
    per_param_states = sb.master + opt.n_states * sb.state
    shard = fp.optimizer_state / per_param_states if per_param_states else fp.n_params
    nbytes = shard * (2 * sb.weight + sb.grad + 2 * per_param_states)
    return nbytes / device.memory_bandwidth()
