"""The range of a realistic parallel prediction, and what limits the step, in words.

The range moves every kernel-efficiency term of `data/efficiency.json` to its fast and slow
end (as `memwall.predict.efficiency` does per op) and scales the step's kernel time by the
shard's forward at those ends; in training the kernels of the op table (forward, backward,
recomputation, ring attention, the bubble) also move by the fitted whole-step kernel rate's
low/high (`training_step` in the data file); communication stays at its value. It is computed
for the layout shown, not for every layout a search prices (that would multiply its cost by 26).
"""

from __future__ import annotations

from memwall.count import op_table
from memwall.hardware import Device
from memwall.parallel.plan import Plan
from memwall.parallel.shard import phase_of, shard_spec
from memwall.predict.efficiency import predict_efficiency, training_kernel_rate
from memwall.predict.prompt_attention import attention_work
from memwall.spec import ModelSpec, Workload

# Parts of the step that are kernel time (they scale with the kernels' efficiency).
KERNEL_PARTS = ("forward", "backward", "recompute", "bubble", "loss_and_grad_accumulation",
                "grad_clipping", "optimizer", "cp_attention", "prefill_compute",
                "decode_compute")  # fmt: skip
# Parts the training kernel rate scales (`plan._kernel_rate`).
RATE_PARTS = ("forward", "backward", "recompute", "bubble", "cp_attention")
_WORDS = {
    "tp_comm": "exposed tensor-parallel communication",
    "ep_comm": "expert-parallel all-to-alls",
    "pp_comm": "pipeline hand-offs",
    "dp_comm": "exposed gradient synchronisation",
    "cp_comm": "exposed context-parallel K/V transfers",
    "bubble": "the pipeline bubble",
    "recompute": "activation recomputation",
    "loss_and_grad_accumulation": "the loss and fp32 gradient accumulation",
}


def step_range(spec: ModelSpec, device: Device, p: Plan) -> tuple[float, float]:
    """(fast, slow) step time of plan `p` with the kernel terms at their ends."""
    o, lay = p.options, p.layout
    phase = "prefill" if o.mode == "train" else p.extra.get("phase", "prefill")
    seq = o.seq_len // lay.cp if o.mode == "train" else o.seq_len
    shard = shard_spec(spec, lay)
    wl = Workload(phase_of(shard, phase), o.micro_batch, seq)
    launch = "eager" if o.mode == "train" else "graph"
    causal = attention_work(shard, phase, seq)
    e = predict_efficiency(op_table(shard, wl, o.precision, "full", True), device, o.precision,
                           launch, causal)  # fmt: skip
    t = e.totals["time"]
    lo, hi = e.totals["time_low"] / t, e.totals["time_high"] / t
    kernel = sum(v for k, v in p.breakdown.items() if k in KERNEL_PARTS)
    fast, slow = p.step_time - kernel * (1 - lo), p.step_time + kernel * (hi - 1)
    rate, term = p.extra.get("kernel_rate"), training_kernel_rate()
    fitted = p.options.kernel_rate is None  # a rate the user gave carries no fitted spread
    if rate and term is not None and fitted:  # the fitted rate's spread, on the parts it scales
        scaled = sum(v for k, v in p.breakdown.items() if k in RATE_PARTS)
        fast -= scaled * lo * (1 - rate / term.high)
        slow += scaled * hi * (rate / term.low - 1)
    return fast, slow


def limits(p: Plan) -> str:
    """One phrase: how fast the kernels run against the peak, and the largest losses."""
    kernel = sum(v for k, v in p.breakdown.items() if k in KERNEL_PARTS and k != "bubble")
    rate = p.hardware_flops / (p.devices * p.peak_flops * kernel) if kernel else 0.0
    parts = [f"kernels at {100 * rate:.0f}% of the dense peak on average"]
    losses = sorted(
        ((v, k) for k, v in p.breakdown.items() if k in _WORDS and v > 0.01 * p.step_time),
        reverse=True,
    )
    parts += [f"{_WORDS[k]} ({100 * v / p.step_time:.0f}% of the step)" for v, k in losses[:3]]
    return ", ".join(parts)
