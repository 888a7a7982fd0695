"""A real GPT-2 block (transformers' GPT2Block) split tensor-parallel over local ranks (gloo).

Megatron-LM's split: the fused QKV projection by columns (each rank its own heads), the
attention output projection by rows, then one all-reduce; the MLP's first projection by
columns, its second by rows, then one all-reduce; the layer norms and the row-split
projections' biases stay whole (the biases are added once, after the all-reduce). Every rank
ends with the full block output, which must equal the unsplit block's to float tolerance.
Both are timed (median of repeats; the unsplit block on rank 0 alone while the others wait).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from memwall.errors import MemwallError
from memwall.measure.collectives import free_port


def _build(cfg: dict[str, Any]):
    import torch
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2Block

    torch.manual_seed(0)
    c = GPT2Config(
        n_embd=cfg["d"], n_head=cfg["heads"], n_positions=max(1024, cfg["seq"]),
        attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0,
    )  # fmt: skip
    c._attn_implementation = "sdpa"
    block = GPT2Block(c).eval()
    for p in block.parameters():  # non-trivial biases and norms, so a wrong split shows
        torch.nn.init.normal_(p, std=0.02)
    x = torch.randn(cfg["batch"], cfg["seq"], cfg["d"], generator=torch.Generator().manual_seed(1))
    return block, x


def _shard(block, rank: int, world: int) -> dict[str, Any]:
    """This rank's slices of the block's weights (Conv1D weights are [in, out])."""
    d = block.ln_1.weight.numel()
    a, m = block.attn, block.mlp
    w = d // world
    qkv_cols = [slice(j * d + rank * w, j * d + (rank + 1) * w) for j in range(3)]
    f = m.c_fc.weight.shape[1] // world
    import torch

    return {
        "qkv_w": torch.cat([a.c_attn.weight[:, s] for s in qkv_cols], dim=1),
        "qkv_b": torch.cat([a.c_attn.bias[s] for s in qkv_cols]),
        "o_w": a.c_proj.weight[rank * w : (rank + 1) * w, :],
        "o_b": a.c_proj.bias,
        "fc_w": m.c_fc.weight[:, rank * f : (rank + 1) * f],
        "fc_b": m.c_fc.bias[rank * f : (rank + 1) * f],
        "p_w": m.c_proj.weight[rank * f : (rank + 1) * f, :],
        "p_b": m.c_proj.bias,
        "heads": block.attn.num_heads // world,
    }


def _tp_forward(block, s: dict[str, Any], x, comm: list[float]):
    import torch.distributed as dist
    import torch.nn.functional as F

    def reduce(t):
        t0 = time.perf_counter()
        dist.all_reduce(t)
        comm.append(time.perf_counter() - t0)
        return t

    b, L, d = x.shape
    h = block.ln_1(x) @ s["qkv_w"] + s["qkv_b"]
    q, k, v = (t.reshape(b, L, s["heads"], -1).transpose(1, 2) for t in h.chunk(3, dim=-1))
    att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    att = att.transpose(1, 2).reshape(b, L, -1) @ s["o_w"]
    x1 = x + reduce(att) + s["o_b"]
    f = F.gelu(block.ln_2(x1) @ s["fc_w"] + s["fc_b"], approximate="tanh")
    return x1 + reduce(f @ s["p_w"]) + s["p_b"]


def _median_time(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def _rank(rank: int, world: int, cfg: dict[str, Any], out: Any, port: int) -> None:
    import os

    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        with torch.no_grad():
            block, x = _build(cfg)
            ref = block(x)
            ref = ref[0] if isinstance(ref, tuple) else ref
            s = _shard(block, rank, world)
            comm: list[float] = []
            y = _tp_forward(block, s, x, comm)
            diff = float((y - ref).abs().max())
            dist.barrier()
            comm.clear()
            t_split = _median_time(lambda: _tp_forward(block, s, x, comm), cfg["repeats"])
            t_comm = float(np.median(comm)) * 2 if comm else 0.0
            dist.barrier()
            t_full = _median_time(lambda: block(x), cfg["repeats"]) if rank == 0 else 0.0
            if rank == 0:
                res = {"max_abs_diff": diff, "ref_max_abs": float(ref.abs().max())}
                out.put({**res, "split": t_split, "split_all_reduce": t_comm, "unsplit": t_full})
            # both ranks leave together: a rank that tears gloo down while the other still
            # works aborted once ("terminate called without an active exception")
            dist.barrier()
    finally:
        dist.destroy_process_group()


def tp_block_check(
    batch: int = 4, seq: int = 128, d: int = 768, heads: int = 12, world: int = 2,
    repeats: int = 10,
) -> dict[str, Any]:  # fmt: skip
    """Run the split and unsplit GPT-2 block on `world` gloo ranks; measured seconds and the
    largest absolute difference of their outputs."""
    import torch.multiprocessing as mp

    if heads % world or d % heads:
        raise MemwallError(f"{world} ranks must divide the {heads} heads, and heads the width {d}")
    cfg = {"batch": batch, "seq": seq, "d": d, "heads": heads, "repeats": repeats}
    q = mp.get_context("spawn").Queue()
    mp.start_processes(_rank, (world, cfg, q, free_port()), world, join=True,
                       start_method="spawn")  # fmt: skip
    res = q.get(timeout=60)
    res.update(world=world, backend="gloo", measured=True, **cfg)
    return res
