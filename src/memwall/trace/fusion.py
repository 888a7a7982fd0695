"""Group traced ops into the kernels a fusing compiler would run, and count their bytes.

Rule: pointwise-class ops (arithmetic, activations, softmax, norms, reductions along a dim,
casts, copies, concatenation, masking, cache writes, tensor creation) fuse along producer ->
consumer edges, except where the consumer also depends, through a non-pointwise op (matmul,
attention, gather, unknown op), on the producer: then a kernel boundary lies between them.
Fused groups are the connected components of the fused edges; every other op is its own kernel.

A kernel reads the storages it uses that were produced outside it (parameters, inputs and KV
cache included) and writes the storages it produces that something outside it reads, that the
run returns, or that outlive the run (in-place writes to pre-existing storages such as the KV
cache). Values nothing reads (the log-sum-exp of a flash-attention kernel, a layer norm's saved
mean and rstd) are not written: an inference compiler does not materialise them. `fused=False`
gives eager accounting instead: every op a kernel, every output written.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from memwall.trace import layers
from memwall.trace.mode import OpRecord, TraceResult, union_bytes

NORM_OPS = {"native_layer_norm", "rsqrt", *layers.NORMS} - {"native_dropout"}
SOFTMAX_OPS = {"softmax", "_softmax", "_safe_softmax", "_log_softmax"}
ACT_OPS = {"gelu", "silu", "relu", "tanh", "sigmoid", "erf", "gelu_", "silu_", "relu_", "tanh_"}
ACT_OPS |= set(layers.ACTIVATIONS) | {f"{a}_" for a in layers.ACTIVATIONS}
MASK_OPS = {"where", "masked_fill", "masked_fill_"}
CACHE_WRITES = {"index_copy_", "index_put_", "_unsafe_index_put", "copy_"}


@dataclass
class Kernel:
    """One kernel: a fused group of pointwise ops, or one other op."""

    ops: list[int]  # record indices, in execution order
    module: str  # module path of its first op
    label: str
    kind: str  # matmul | conv | pool | attention | embedding | softmax | norm | elementwise | moe
    # | other
    flops: float = 0.0
    matmul_flops: float = 0.0
    bytes_weight: float = 0.0
    bytes_act: float = 0.0
    bytes_kv: float = 0.0
    bytes_written: float = 0.0
    bytes_eager: float = 0.0
    dtype: str = "-"
    aten: Counter = field(default_factory=Counter)
    weight: int = 1  # times it counts: the layers its layer stands for (`memwall.trace.repeat`)

    @property
    def bytes_read(self) -> float:
        return self.bytes_weight + self.bytes_act + self.bytes_kv

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written


class Layers(Protocol):
    """Which traced layer an op ran in and how many layers that one stands for."""

    def layer_of(self, module: str) -> int | None: ...

    def weight_of(self, module: str) -> int: ...


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _preds(rec: OpRecord) -> set[int]:
    p = {x for x in rec.read_from.values() if x is not None}
    p |= {x for x in rec.overwrites.values() if x is not None}
    return p


def fuse_groups(records: list[OpRecord]) -> list[int]:
    """Group id (smallest member index) of every record under the fusion rule."""
    n = len(records)
    uf = _UnionFind(n)
    pw = [r.cls == "pointwise" for r in records]
    anc: list[int] = [0] * n  # bitset of ancestors (self included)
    through: list[int] = [0] * n  # ops that reach this one through a non-pointwise op
    for i, rec in enumerate(records):
        a = 1 << i
        t = 0
        preds = _preds(rec)
        for p in preds:
            a |= anc[p]
            t |= through[p] if pw[p] else anc[p]
        anc[i], through[i] = a, t
        if pw[i]:
            for p in preds:
                if pw[p] and not (t >> p) & 1:
                    uf.union(p, i)
    return [uf.find(i) for i in range(n)]


def _label(recs: list[OpRecord], preexisting: set[int]) -> str:
    """A short name from what the kernel does: add+norm, rope+cache_write, act+mul, ..."""
    if len(recs) == 1 and recs[0].cls != "pointwise":
        return "attention" if recs[0].cls == "attention" else recs[0].packet
    packets = {r.packet for r in recs}
    rope = "neg" in packets and "cat" in packets
    act = bool(packets & ACT_OPS)
    tags: list[str] = []
    for r in recs:
        p = r.packet
        if p in NORM_OPS:
            t = "norm"
        elif p in SOFTMAX_OPS:
            t = "softmax"
        elif p in ACT_OPS:
            t = "act"
        elif p in ("neg", "cat") and rope:
            t = "rope"
        elif p in CACHE_WRITES and any(s in preexisting for s in r.writes):
            t = "cache_write"
        elif p in ("add", "add_") and not act and not rope and _binary_same_shape(r):
            t = "add"
        elif p == "mul" and act and _binary_same_shape(r):
            t = "mul"
        elif p in MASK_OPS:
            t = "mask"
        else:
            continue
        if t not in tags:
            tags.append(t)
    if tags:
        return "+".join(tags)
    return "+".join(list(dict.fromkeys(r.packet for r in recs))[:3])


def _binary_same_shape(r: OpRecord) -> bool:
    """Two tensor inputs of one shape: a residual add or gate * up, not a bias or a scalar."""
    return len(r.in_shapes) >= 2 and r.in_shapes[0] == r.in_shapes[1]


def _kind(recs: list[OpRecord], label: str, module: str) -> str:
    classes = {r.cls for r in recs}
    moe = "expert" in module or "moe" in module
    if "attention" in classes:
        return "attention"
    if "matmul" in classes:
        return "moe" if moe else "matmul"
    if "conv" in classes:
        return "conv"
    if "pool" in classes:
        return "pool"
    if "gather" in classes:
        return "embedding"
    if "other" in classes:
        return "other"
    if "norm" in label:
        return "norm"
    if "softmax" in label:
        return "softmax"
    return "elementwise"


def _add_reads(
    k: Kernel, reads: dict[int, dict], st: dict, scale: dict[int, int] | None = None
) -> None:
    """Split a kernel's reads into weights, KV cache and activations (inputs included)."""
    for sid, views in reads.items():
        b = union_bytes(views, st[sid].nbytes) * (scale[sid] if scale else 1)
        role = st[sid].role
        if role == "param":
            k.bytes_weight += b
        elif role == "kv":
            k.bytes_kv += b
        else:
            k.bytes_act += b


@dataclass
class _Run:
    """What every kernel of one run needs to know about the others."""

    result: TraceResult
    fused: bool
    group: list[int]
    readers: dict[tuple[int, int], set[int]]  # (writer, storage) -> records reading that write
    last_writer: dict[int, int]
    producer: dict[int, int]  # storage -> first record writing it
    preexisting: set[int]


def _run(result: TraceResult, fused: bool) -> _Run:
    recs = result.records
    group = fuse_groups(recs) if fused else list(range(len(recs)))
    readers: dict[tuple[int, int], set[int]] = defaultdict(set)
    last_writer: dict[int, int] = {}
    producer: dict[int, int] = {}
    for rec in recs:
        for sid, p in rec.read_from.items():
            if p is not None:
                readers[(p, sid)].add(rec.index)
        for sid in rec.writes:
            last_writer[sid] = rec.index
            producer.setdefault(sid, rec.index)
    pre = {s for s, info in result.storages.items() if not info.created}
    return _Run(result, fused, group, readers, last_writer, producer, pre)


def _accesses(run: _Run, g: int, grecs: list[OpRecord]):
    """(reads, writes, eager bytes, first op reading / writing each storage) of one kernel."""
    st = run.result.storages
    reads: dict[int, dict] = defaultdict(dict)
    writes: dict[int, dict] = defaultdict(dict)
    first: dict[int, OpRecord] = {}
    eager = 0.0
    for r in grecs:
        er, ew = r.eager_bytes(st)
        eager += er + ew
        for sid, views in r.reads.items():
            p = r.read_from.get(sid)
            # a pre-existing storage (the KV cache) is read from memory even where this
            # kernel wrote a few slots of it first
            if not run.fused or p is None or run.group[p] != g or sid in run.preexisting:
                reads[sid].update(views)
                first.setdefault(sid, r)
        for sid, views in r.writes.items():
            live = (
                not run.fused
                or sid in run.preexisting
                or (sid in run.result.outputs and run.last_writer.get(sid) == r.index)
                or any(run.group[x] != g for x in run.readers.get((r.index, sid), ()))
            )
            if live:
                writes[sid].update(views)
                first.setdefault(sid, r)
    return reads, writes, eager, first


def _spread(grecs: list[OpRecord], layers: Layers | None) -> bool:
    """True for a kernel whose ops lie in layers it does not stand for as a whole: one that
    starts outside the layers (a mask built once) and reaches into several, or spans layers
    that are not neighbours. Its parts are weighted one by one instead."""
    if layers is None:
        return False
    ls = [layers.layer_of(r.module) for r in grecs]
    inside = {x for x in ls if x is not None}
    if not inside:
        return False
    if ls[0] is not None and inside <= {ls[0], ls[0] + 1}:
        return False  # one layer, or one layer's end fused with the next one's start
    return any(layers.weight_of(r.module) != 1 for r in grecs)


def _storage_scale(run: _Run, sid: int, r: OpRecord, w: Callable[[str], int]) -> int:
    """Layers a storage a spread kernel touches stands for: its producer's, or for weights and
    the KV cache (one per layer) the layer of the op touching it; 1 for shared values."""
    st = run.result.storages[sid]
    if st.created and sid in run.producer:
        return w(run.result.records[run.producer[sid]].module)
    return w(r.module) if st.role in ("param", "kv") else 1


def kernels(result: TraceResult, fused: bool = True, layers: Layers | None = None) -> list[Kernel]:
    """The run as kernels with their FLOPs and bytes (see the module docstring).

    `layers`: the run traced a few layers of a deeper model (`memwall.trace.repeat`); each
    kernel's `weight` says how many times it counts. A spread kernel (a value built once and
    fused into several layers) gets weight 1 and each of its parts weighted by its own layer.
    """
    recs = result.records
    st = result.storages
    run = _run(result, fused)
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(run.group):
        members[g].append(i)
    out: list[Kernel] = []
    for g in sorted(members):
        idx = members[g]
        grecs = [recs[i] for i in idx]
        reads, writes, eager, first = _accesses(run, g, grecs)
        spread = _spread(grecs, layers)
        ow = [layers.weight_of(r.module) if spread and layers else 1 for r in grecs]
        k = Kernel(
            ops=idx,
            module=grecs[0].module,
            label=_label(grecs, run.preexisting),
            kind="",
            flops=sum(w * r.flops for w, r in zip(ow, grecs, strict=True)),
            matmul_flops=sum(w * r.matmul_flops for w, r in zip(ow, grecs, strict=True)),
            bytes_eager=eager if not spread else _eager_weighted(grecs, ow, st),
            dtype=next((r.dtype for r in grecs if r.dtype in ("fp32", "bf16", "fp16")), "-"),
            aten=Counter(r.packet for r in grecs),
        )
        k.kind = _kind(grecs, k.label, k.module)
        scale = None
        if spread and layers is not None:
            scale = {sid: _storage_scale(run, sid, first[sid], layers.weight_of) for sid in first}
        elif layers is not None:
            k.weight = layers.weight_of(k.module)
        _add_reads(k, reads, st, scale)
        k.bytes_written = float(
            sum(
                union_bytes(v, st[s].nbytes) * (scale[s] if scale else 1) for s, v in writes.items()
            )
        )
        if fused and not k.flops and not k.bytes:
            continue  # dead code (e.g. an index nothing uses): a compiler drops it
        out.append(k)
    return out


def _eager_weighted(grecs: list[OpRecord], ow: list[int], st: dict) -> float:
    return float(sum(w * sum(r.eager_bytes(st)) for w, r in zip(ow, grecs, strict=True)))
