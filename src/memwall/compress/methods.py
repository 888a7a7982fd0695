"""Compression methods by name, and what memwall's count predicts for each (pure: no torch).

Why here and not in the measuring modules: a method string is checked before anything is built
(bad input fails in milliseconds), and the prediction must not depend on the measurement.

Counting conventions (said in every output):
- int8 weight-only: one 16-bit scale per output channel = `Precision(8, 16, 16, group=d_model)`.
- int4: one 16-bit scale and one 16-bit zero point per group of g = one 16-bit number per g/2
  weights, i.e. `Precision(4, 16, 16, group=g/2)`. memwall's plain `int4` precision counts
  scales only; the CPU kernel also stores zero points.
- int8 dynamic: int8 weights, activations fp32 between kernels, and everything torch.ao leaves
  unquantized (embeddings, norms, biases) stays fp32: `Precision(8, 32, 32, rest_bits=32)`.
- structured pruning: the pruned shape (fewer heads, narrower FFN) at fp32.
- unstructured pruning: fp32 dense bytes of the block matrices replaced by CSR bytes (4-byte
  value + 4-byte column index per kept weight, 4 bytes per row pointer).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from memwall.count import op_table, totals
from memwall.errors import MemwallError, suggest
from memwall.memory.inference import matmul_params, weight_bytes
from memwall.precision import DTYPE_BYTES
from memwall.spec import ModelSpec, Precision, Workload, parse_precision

KINDS = ("fp32", "bf16", "int8", "int8-dynamic", "int4", "prune-structured", "prune-unstructured")
INT4_GROUPS = (32, 64, 128, 256)  # what torch's CPU int4 kernel accepts
DEFAULT_GROUP = 128
CSR_BYTES_PER_NNZ = 8  # fp32 value + int32 column index
CSR_BYTES_PER_ROW = 4  # int32 row pointer


@dataclass(frozen=True)
class Method:
    kind: str
    group: int | None = None
    fraction: float | None = None

    @property
    def label(self) -> str:
        if self.group is not None:
            return f"{self.kind}:{self.group}"
        if self.fraction is not None:
            return f"{self.kind}:{self.fraction:g}"
        return self.kind

    @property
    def is_pruning(self) -> bool:
        return self.kind.startswith("prune")


def _fraction(kind: str, arg: str) -> float:
    try:
        f = float(arg)
    except ValueError:
        f = float("nan")
    if not 0 < f < 1:  # also rejects nan
        raise MemwallError(f"{kind} needs a fraction strictly between 0 and 1, got {arg!r}")
    return f


def parse_method(text: str) -> Method:
    """`int8`, `int8-dynamic`, `int4[:GROUP]`, `prune-structured:F`, `prune-unstructured:F`."""
    t = text.strip().lower()
    kind, _, arg = t.partition(":")
    bits = re.fullmatch(r"int(\d+)", kind)
    if bits and kind not in KINDS:
        raise MemwallError(
            f"no CPU kernel here for {bits.group(1)}-bit weights; accepted bit widths: int8, int4"
        )
    if kind not in KINDS:
        raise MemwallError(
            f"unknown method {text!r}{suggest(kind, KINDS)}; accepted: int8, int8-dynamic, "
            "int4[:GROUP], prune-structured:FRACTION, prune-unstructured:FRACTION, fp32, bf16"
        )
    if kind.startswith("prune"):
        if not arg:
            raise MemwallError(f"{kind} needs a fraction, e.g. {kind}:0.3")
        return Method(kind, fraction=_fraction(kind, arg))
    if kind == "int4":
        if arg and not arg.isdigit():
            raise MemwallError(f"int4 group size must be a whole number, got {arg!r}")
        group = int(arg) if arg else DEFAULT_GROUP
        if group not in INT4_GROUPS:
            raise MemwallError(
                f"int4 group size {group} has no CPU kernel here; accepted: "
                f"{', '.join(map(str, INT4_GROUPS))}"
            )
        return Method(kind, group=group)
    if arg:
        raise MemwallError(f"{kind} takes no argument, got {text!r}")
    return Method(kind)


def check_fits(method: Method, spec: ModelSpec) -> None:
    """Refuse a method the model cannot take (group size vs width, family)."""
    if spec.family != "gpt2":
        raise MemwallError(
            f"compress builds GPT-2-shaped models; {spec.name} is {spec.family!r} "
            "(use a gpt2 preset, a gpt2 config.json or a trained model such as stdlib-gpt)"
        )
    if method.kind == "int4":
        ok = [str(g) for g in INT4_GROUPS if not spec.d_model % g and not spec.d_ff % g]
        for width in (spec.d_model, spec.d_ff):
            if width % method.group:
                raise MemwallError(
                    f"int4 group size {method.group} does not divide the layer width {width} "
                    f"of {spec.name}; accepted here: {', '.join(ok) or 'none'}"
                )


def kept(n: int, fraction: float) -> int:
    """How many of n units survive pruning `fraction` of them (at least one)."""
    return max(1, n - round(fraction * n))


def pruned_spec(spec: ModelSpec, fraction: float) -> ModelSpec:
    heads = kept(spec.n_heads, fraction)
    return replace(spec, n_heads=heads, n_kv_heads=heads, d_ff=kept(spec.d_ff, fraction))


def count_precision(method: Method, spec: ModelSpec) -> Precision:
    if method.kind in ("fp32", "bf16") or method.is_pruning:
        return parse_precision("bf16" if method.kind == "bf16" else "fp32")
    if method.kind == "int8":
        return Precision(8, 16, 16, spec.d_model, name="int8 weight-only")
    if method.kind == "int8-dynamic":
        return Precision(8, 32, 32, spec.d_model, name="int8 dynamic", rest_bits=32)
    return Precision(4, 16, 16, method.group // 2, name=f"int4 g{method.group}")


def _csr_bytes(spec: ModelSpec, fraction: float) -> tuple[float, float]:
    """(dense fp32 bytes of the block matrices, their CSR bytes after pruning `fraction`)."""
    mm = matmul_params(spec)  # GPT-2 ties its head: these are the block matrices
    rows = spec.n_layers * (3 * spec.q_dim + spec.d_model + spec.d_ff + spec.d_model)
    nnz = sum(
        spec.n_layers * (n - round(fraction * n))
        for n in (
            spec.d_model * 3 * spec.q_dim,
            spec.q_dim * spec.d_model,
            spec.d_model * spec.d_ff,
            spec.d_ff * spec.d_model,
        )
    )
    csr = CSR_BYTES_PER_NNZ * nnz + CSR_BYTES_PER_ROW * (rows + 4 * spec.n_layers)
    return DTYPE_BYTES["fp32"] * mm, csr


def predicted(method: Method, spec: ModelSpec, workload: Workload) -> dict[str, float]:
    """memwall's count: weight bytes (total, quantised part) and bytes moved by one step."""
    s = pruned_spec(spec, method.fraction) if method.kind == "prune-structured" else spec
    prec = count_precision(method, spec)
    total, quant = weight_bytes(s, prec)
    step = totals(op_table(s, workload, prec))["bytes"]
    if method.kind == "prune-unstructured":
        dense, csr = _csr_bytes(spec, method.fraction)
        total, quant, step = total - dense + csr, csr, step - dense + csr
    base = totals(op_table(spec, workload, parse_precision("fp32")))["bytes"]
    return {
        "weights_count": total,
        "compressed_count": quant,
        "step_bytes": step,
        "speedup_predicted": base / step,
        "count_precision": prec.label,
    }
