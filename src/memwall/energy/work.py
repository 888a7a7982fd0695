"""The work one device does, read from an operation table (`memwall.count.op_table`).

Each op's FLOPs are charged at the dtype the predictor prices it at (`predict.efficiency
.compute_dtype`: a 16-bit op on a device with no bf16 peak runs in fp16), and every byte the
table counts is one DRAM byte: memwall's counting reads each input once and writes each output
once (no fusion, no cache hits), so the byte energy is an upper bound for fused kernels, just
as the byte count is.
"""

from __future__ import annotations

from typing import Any

from memwall.energy.model import Work
from memwall.errors import MemwallError
from memwall.hardware import Device
from memwall.precision import Precision
from memwall.predict.efficiency import compute_dtype


def work_from_ops(
    ops: Any, device: Device, precision: Precision | None = None, link_bytes: float = 0.0
) -> Work:
    """FLOPs by compute dtype and DRAM bytes of an op table, plus `link_bytes` sent by
    collectives; MemwallError if the table lacks the counted columns."""
    missing = [c for c in ("flops", "bytes", "dtype") if c not in getattr(ops, "columns", ())]
    if missing:
        raise MemwallError(f"an operation table needs columns {', '.join(missing)}")
    flops: dict[str, float] = {}
    for dtype, v in ops.groupby("dtype")["flops"].sum().items():
        d = compute_dtype(device, str(dtype), precision)
        flops[d] = flops.get(d, 0.0) + float(v)
    return Work(flops, float(ops["bytes"].sum()), float(link_bytes))
