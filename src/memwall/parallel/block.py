"""Predicted time of one Transformer block split tensor-parallel (Megatron-style) over t ranks:
the shard's per-layer operations on the roofline plus two all-reduces of the block's output
(after attention and after the MLP), priced on the given links. Pure: the measured counterpart
is `memwall.measure.tp_block`."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memwall.count import op_table
from memwall.hardware import Device
from memwall.parallel.collectives import price
from memwall.parallel.layout import Layout
from memwall.parallel.links import Links
from memwall.parallel.shard import shard_spec
from memwall.predict import predict_roofline
from memwall.spec import ModelSpec, Precision, Workload


def block_time(spec: ModelSpec, device: Device, batch: int, seq_len: int, prec: Precision) -> float:
    """Roofline time (with the device's per-op overhead) of one layer's operations."""
    one = replace(spec, n_layers=1)
    ops = op_table(one, Workload("prefill" if spec.is_decoder else "encode", batch, seq_len), prec)
    pred = predict_roofline(ops[ops["layer"] == "all"], device, overhead=True)
    return float(pred.totals["time"])


def tp_block_prediction(
    spec: ModelSpec, device: Device, links: Links, tp: int, batch: int, seq_len: int,
    prec: Precision,
) -> dict[str, Any]:  # fmt: skip
    """Predicted seconds of the unsplit block, and of the t-way split (compute + all-reduces)."""
    shard = shard_spec(spec, Layout(tp=tp))
    msg = batch * seq_len * spec.d_model * prec.hidden_bytes
    ar = price("all_reduce", "tp", tp, msg, 2, "forward", links, spans_nodes=tp > links.node_size)
    compute = block_time(shard, device, batch, seq_len, prec)
    return {
        "unsplit": block_time(spec, device, batch, seq_len, prec),
        "split_compute": compute,
        "split_all_reduce": ar.time,
        "split": compute + ar.time,
        "all_reduce_bytes": msg,
        "links": links.origin,
        "predicted": True,
    }
