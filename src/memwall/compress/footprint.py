"""Host memory `compress` needs, checked before any weights are built.

`compress` builds real fp32 weights and then each compressed copy beside them. A config too big
for this machine would otherwise die in the allocator with a traceback, or first push the
machine into swap; like `memwall profile` (`measure.models.check_memory`), it is refused up
front with the bytes needed and the bytes available.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import psutil

from memwall.compress.methods import Method
from memwall.errors import MemwallError
from memwall.precision import DTYPE_BYTES
from memwall.spec import ModelSpec, Workload

MEMORY_FRACTION = 0.8  # of the memory available now that one run may take (as profile)
FP32 = float(DTYPE_BYTES["fp32"])  # bytes per parameter of the fp32 model every method starts from
# Bytes per parameter a method's build holds at its peak beside the fp32 model: a deep copy
# (4) and its bf16 / int8 / pruned result; unstructured pruning also holds the masks, a second
# copy for CSR and the CSR arrays (8 bytes per kept weight).
BUILD_BYTES = {
    "fp32": 0.0,
    "bf16": 6.0,
    "int8": 6.0,
    "int4": 6.0,
    "int8-dynamic": 5.0,
    "prune-structured": 4.0,
    "prune-unstructured": 17.0,
}
RECOVERY_BYTES = 12.0  # a pruned model's recovery fine-tune: fp32 gradients and Adam moments
_CGROUP = Path("/sys/fs/cgroup")


def _cgroup_headroom() -> float | None:
    """Bytes left under a cgroup v2 memory limit, or None when there is none."""
    try:
        limit = (_CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return float(limit) - float((_CGROUP / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def _rlimit_headroom() -> float | None:
    """Address space left under `ulimit -v` (RLIMIT_AS), or None when unlimited."""
    try:
        import resource
    except ImportError:  # not on this platform
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    return float(soft) - float(psutil.Process().memory_info().vms)


def available_bytes() -> float:
    """Memory this process can still take: free host memory, capped by a `ulimit -v` or cgroup
    limit when one is set (either makes an allocation fail long before the host is full)."""
    have = [float(psutil.virtual_memory().available)]
    have += [h for h in (_rlimit_headroom(), _cgroup_headroom()) if h is not None]
    return max(0.0, min(have))


def needed_bytes(
    spec: ModelSpec, methods: Iterable[Method], wl: Workload, trained: bool = False
) -> float:
    """Peak bytes of one run: the fp32 model, the largest method build beside it (methods are
    built one at a time), a recovery fine-tune when a trained model is pruned, activations."""
    kinds = [m.kind for m in methods]
    per = FP32 + max((BUILD_BYTES[k] for k in kinds), default=0.0)
    if trained and any(k.startswith("prune") for k in kinds):
        per += RECOVERY_BYTES
    tokens = wl.seq_len if wl.phase == "prefill" else 1
    ctx = wl.total_context + 16  # the decode steps timed after the prompt
    kv = 2 * 2 * spec.n_layers * ctx * spec.d_model * FP32  # K and V, plus one concat copy
    acts = 8 * tokens * (spec.d_ff + 4 * spec.d_model) * FP32
    logits = tokens * spec.vocab_size * FP32
    return spec.n_params() * per + kv + acts + logits


def check_memory(
    spec: ModelSpec, methods: Iterable[Method], wl: Workload, trained: bool = False
) -> None:
    """MemwallError (one line: bytes needed and available) when the run would not fit."""
    methods = list(methods)
    need = needed_bytes(spec, methods, wl, trained)
    have = available_bytes()
    if need > MEMORY_FRACTION * have:
        big = max(methods, key=lambda m: BUILD_BYTES[m.kind], default=Method("fp32"))
        what = "fp32" if big.kind == "fp32" else f"fp32 and a {big.label} copy"
        raise MemwallError(
            f"compress {spec.name} ({spec.n_params() / 1e9:.2f} G parameters, {what}) needs "
            f"about {need / 2**30:.1f} GiB ({need:.3g} bytes) to build; this machine has "
            f"{have / 2**30:.1f} GiB ({have:.3g} bytes) available, of which compress uses at "
            f"most {MEMORY_FRACTION:.0%}: use a smaller model or config (fewer layers or width)"
        )
