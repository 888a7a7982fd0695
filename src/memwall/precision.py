"""Number formats: what a `Precision` stores and how text such as `int4` or `4/16/8` maps to one.

Parsed once at the edge (the CLI); library functions take `Precision` values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from memwall.errors import MemwallError, suggest

_NAMED_PRECISIONS = {
    "fp32": (32, 32, 32),
    "bf16": (16, 16, 16),
    "fp16": (16, 16, 16),
    "int8": (8, 8, 8),
    "int4": (4, 16, 16),
}
_ALLOWED_BITS = (2, 3, 4, 8, 16, 32)
# Bytes per element of each dtype a real model stores or computes in: the one table (Linear
# kernels, activations, KV cache, model states) every measurement and prediction reads.
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Precision:
    """Bits of weights, activations and KV cache; integer weights carry one fp16 scale per group.

    `paper=True` is the paper's accounting: every number exactly that many bits, no scales.
    """

    weight_bits: int
    act_bits: int
    kv_bits: int
    group_size: int = 128
    name: str = ""
    float_kind: str = "bf16"  # which 16-bit float: bf16 or fp16
    paper: bool = False
    quantize_head: bool = False  # integer weights: quantize the LM head and embeddings too
    rest_bits: int = 16  # integer weights: bits of what stays unquantized (torch.ao keeps fp32)
    gemm_dtype: str = ""  # the Linear layers' GEMMs run in this dtype ("": compute_dtype)

    def _stored_bytes(self, bits: int) -> float:
        """Bytes per stored element; integers carry one 2-byte scale per group (not in `paper`)."""
        scales = 2 / self.group_size if bits < 16 and not self.paper else 0.0
        return bits / 8 + scales

    @property
    def weight_bytes(self) -> float:
        return self._stored_bytes(self.weight_bits)

    @property
    def integer_weights(self) -> bool:
        """Integer weight format applied as common practice does (not the paper's all-8-bit)."""
        return self.weight_bits < 16 and not self.paper

    @property
    def small_weight_bytes(self) -> float:
        """Norm weights and biases: 16-bit under integer weight formats (GPTQ, AWQ, llama.cpp)."""
        return self.rest_bits / 8 if self.integer_weights else self.weight_bytes

    @property
    def head_weight_bytes(self) -> float:
        """Embedding tables and LM head: 16-bit under integer formats unless `quantize_head`."""
        if self.integer_weights and not self.quantize_head:
            return self.rest_bits / 8
        return self.weight_bytes

    @property
    def note(self) -> str:
        """What the format quantizes, said in every output ('' for float formats)."""
        if not self.integer_weights:
            return ""
        head = (
            "embeddings and LM head quantized too (--quantize-head)"
            if self.quantize_head
            else f"embeddings and LM head {self.rest_bits}-bit (--quantize-head to quantize them)"
        )
        return (
            f"{self.weight_bits}-bit weights in the layers' matmuls (one 16-bit scale per "
            f"{self.group_size}); norms and biases {self.rest_bits}-bit; {head}"
        )

    @property
    def act_bytes(self) -> float:
        return self.act_bits / 8

    @property
    def hidden_bytes(self) -> float:
        """Bytes per element of the hidden state that tensor-parallel all-reduces and pipeline
        sends carry. Activations below 16 bits are a GEMM's input format only: the GEMM writes
        16-bit outputs (vLLM's apply_fp8_linear: `cutlass_scaled_mm(..., out_dtype=input.dtype)`;
        TensorRT-LLM's FP8 GEMMs likewise), and those are what a row-parallel layer reduces."""
        return self.act_bytes if self.act_bits >= 16 else 2.0  # bf16 or fp16

    @property
    def kv_bytes(self) -> float:
        return self._stored_bytes(self.kv_bits)

    @property
    def compute_dtype(self) -> str:
        """The dtype the matmuls run in: the wider of weights and activations."""
        bits = max(self.weight_bits, self.act_bits)
        if bits >= 32:
            return "fp32"
        if bits == 16:
            return self.float_kind
        return "int8" if self.weight_bits >= 8 else "int4"

    @property
    def label(self) -> str:
        return self.name or f"{self.weight_bits}/{self.act_bits}/{self.kv_bits}"


def parse_precision(text: str, group_size: int = 128, quantize_head: bool = False) -> Precision:
    """`fp32`, `bf16`, `fp16`, `int8`, `int4`, or `W/A/KV` bits such as `4/16/8`."""
    if not isinstance(text, str):
        raise MemwallError(f"precision must be text such as bf16 or 4/16/8, got {text!r}")
    t = text.strip().lower()
    if not 1 <= group_size <= 1 << 20:
        raise MemwallError(f"group size must be between 1 and {1 << 20}, got {group_size}")
    if t in _NAMED_PRECISIONS:
        w, a, kv = _NAMED_PRECISIONS[t]
        fk = "fp16" if t == "fp16" else "bf16"
        return Precision(w, a, kv, group_size, t, fk, quantize_head=quantize_head)
    m = re.fullmatch(r"(\d+)/(\d+)/(\d+)", t)
    if not m:
        raise MemwallError(
            f"unknown precision {text!r}{suggest(t, _NAMED_PRECISIONS)}; accepted: "
            f"{', '.join(_NAMED_PRECISIONS)} or W/A/KV bits such as 4/16/8"
        )
    w, a, kv = (int(x) for x in m.groups())
    for what, bits in (("weight", w), ("activation", a), ("KV-cache", kv)):
        if bits not in _ALLOWED_BITS:
            raise MemwallError(
                f"{what} bits must be one of {', '.join(map(str, _ALLOWED_BITS))}, got {bits}"
            )
    return Precision(w, a, kv, group_size, name=t, quantize_head=quantize_head)


def typed_precision(precision: Precision) -> Precision:
    """Library functions take a parsed `Precision`: text is parsed once, where it is typed."""
    if not isinstance(precision, Precision):
        raise TypeError(
            f"precision must be a memwall.spec.Precision, got {type(precision).__name__} "
            f"{precision!r}: parse text once with memwall.spec.parse_precision"
        )
    return precision


# Precisions a real model runs at here (profile, casestudy, calibration) -> the dtype of its
# Linear kernels. `int8-dynamic` (dynamic int8 Linear layers; activations and KV cache fp32)
# is not the counted `int8` (W8/A8/KV8); where a command runs a model, `int8` still means it.
RUNNABLE_PRECISIONS = {"fp32": "fp32", "bf16": "bf16", "int8-dynamic": "int8"}
RUNNABLE_ALIASES = {"int8": "int8-dynamic", "int8_dynamic": "int8-dynamic"}


def runnable_precision(text: str) -> str:
    """The canonical name of a precision that runs for real; MemwallError (one line) else."""
    t = str(text).strip().lower()
    t = RUNNABLE_ALIASES.get(t, t)
    if t not in RUNNABLE_PRECISIONS:
        raise MemwallError(
            f"precision {text!r} cannot run on this CPU; accepted: fp32, bf16, int8 "
            "(= int8-dynamic: dynamic int8 Linear layers, the paper's setting)"
        )
    return t


def kernel_dtype(precision: str) -> str:
    """The dtype of a runnable precision's Linear kernels (int8-dynamic -> int8)."""
    return RUNNABLE_PRECISIONS[runnable_precision(precision)]


def act_dtype(kernel: str) -> str:
    """The activations' dtype beside Linear kernels of `kernel` dtype (dynamic int8: fp32)."""
    return "fp32" if kernel == "int8" else kernel


PAPER_PRECISION = Precision(8, 8, 8, name="8-bit (paper)", paper=True)

# Mixed FP8 training as NVIDIA Transformer Engine runs it (fp8_autocast, the default recipe):
# the Linear layers' GEMMs in FP8 (E4M3 forward, E5M2 gradients) at the FP8 dense peak; their
# weights, activations and everything else (attention, norms, the LM head and embeddings, the
# router) in bf16; fp32 master weights and optimizer state as bf16 mixed precision keeps them.
# TE's FP8 weight and transpose caches (1 byte per parameter each) are not counted.
FP8_TRAINING = Precision(16, 16, 16, name="fp8", float_kind="bf16", gemm_dtype="fp8")
FP8_NAMES = ("fp8", "fp8-mixed", "fp8-te")


# FP8 inference as TensorRT-LLM and vLLM serve it (`--quantization fp8`): FP8 weights and
# activations with per-tensor scales (no group scales), the Linear GEMMs at the FP8 dense peak,
# an FP8 KV cache; embeddings and the LM head stay 16-bit.
FP8_SERVING = Precision(8, 8, 8, group_size=1 << 20, name="fp8", gemm_dtype="fp8")


def serving_precision(text: str) -> Precision:
    """An inference precision: `fp8` (= `FP8_SERVING`) or any precision `parse_precision` reads."""
    if isinstance(text, str) and text.strip().lower() in FP8_NAMES:
        return FP8_SERVING
    return parse_precision(text)


def training_precision(text: str) -> Precision:
    """A training precision: `fp8` (= `FP8_TRAINING`, Transformer Engine mixed FP8) or any
    precision `parse_precision` reads."""
    if isinstance(text, str) and text.strip().lower() in FP8_NAMES:
        return FP8_TRAINING
    return parse_precision(text)
