"""Record every aten op a module executes: FLOPs, the storages it reads and writes, its module.

`CountingMode` is a `TorchDispatchMode`; `Tracer` wraps it with module hooks and bookkeeping and
works on any `torch.nn.Module`, on real tensors or on the meta device (shapes only, no memory).

Storage identity: each storage gets a serial id keyed by its StorageImpl (`_cdata`); a weak
reference to every storage seen is held for the whole trace, so a freed storage's address is
never reused for a new one while tracing (data pointers are useless: they are 0 on meta).
A read of a view counts the view's own extent (stride-0 broadcast dimensions once), views of
one storage read by one op are not double counted, and pure view / metadata ops move nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.multiprocessing.reductions import StorageWeakRef
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from memwall.trace import rules

_DTYPES = {
    torch.float32: "fp32",
    torch.bfloat16: "bf16",
    torch.float16: "fp16",
    torch.float64: "fp64",
}

ViewSig = tuple  # (storage offset, shape, stride, itemsize) or a tag for gathers / scatters


@dataclass
class StorageInfo:
    """One storage seen in the trace."""

    sid: int
    nbytes: int
    role: str  # param | kv | buffer | input | act
    created: bool = False  # first produced by an op inside the trace (else it pre-existed)


@dataclass
class OpRecord:
    """One aten op call that touched memory (view and metadata calls are not recorded)."""

    index: int
    op: str  # overload, e.g. "aten.mm.default"
    packet: str  # e.g. "mm"
    module: str  # innermost module path ("" is the traced root)
    cls: str  # matmul | attention | gather | pointwise | scalar | other
    flops: float
    matmul_flops: float
    covered: bool
    dtype: str
    in_shapes: list[tuple[int, ...]] = field(default_factory=list)
    reads: dict[int, dict[ViewSig, int]] = field(default_factory=dict)  # sid -> view -> bytes
    writes: dict[int, dict[ViewSig, int]] = field(default_factory=dict)
    read_from: dict[int, int | None] = field(default_factory=dict)  # sid -> producing record
    overwrites: dict[int, int | None] = field(default_factory=dict)  # sid -> previous writer

    def eager_bytes(self, storages: dict[int, StorageInfo]) -> tuple[float, float]:
        """(bytes read, bytes written) when this op runs alone, as eager PyTorch runs it."""
        return (
            sum(union_bytes(v, storages[s].nbytes) for s, v in self.reads.items()),
            sum(union_bytes(v, storages[s].nbytes) for s, v in self.writes.items()),
        )


def union_bytes(views: dict[ViewSig, int], cap: int) -> int:
    """Bytes of the distinct views of one storage, at most the storage itself."""
    return min(sum(views.values()), cap)


@dataclass
class TraceResult:
    """Everything one traced run recorded."""

    records: list[OpRecord]
    storages: dict[int, StorageInfo]
    outputs: set[int]  # storages of the tensors the run returned
    coverage: dict[str, int]  # ops with no FLOP formula -> calls
    view_calls: int  # view / metadata calls (no bytes, no FLOPs)
    root: str  # class name of the traced module
    leaf_modules: set[str]  # module paths with no children (Linear, Embedding, ...)
    flop_counter_flops: float | None = None  # torch FlopCounterMode's total on the same run

    @property
    def flops(self) -> float:
        return sum(r.flops for r in self.records)

    @property
    def matmul_flops(self) -> float:
        return sum(r.matmul_flops for r in self.records)

    def peak_activation_bytes(self) -> int:
        """Most bytes of storages created by the run alive at once, each one alive from the op
        that creates it to the last op that reads it (to the end if returned): the activation
        memory an allocator that frees at last use needs. Weights, inputs and caches excluded."""
        start: dict[int, int] = {}
        end: dict[int, int] = {}
        for r in self.records:
            for sid in r.writes:
                if self.storages[sid].created:
                    start.setdefault(sid, r.index)
            for sid in r.reads:
                end[sid] = r.index
        n = len(self.records)
        delta = [0] * (n + 1)
        for sid, s in start.items():
            e = n - 1 if sid in self.outputs else max(end.get(sid, s), s)
            delta[s] += self.storages[sid].nbytes
            delta[e + 1] -= self.storages[sid].nbytes
        peak = live = 0
        for d in delta:
            live += d
            peak = max(peak, live)
        return peak


def _view_sig(t: torch.Tensor) -> tuple[ViewSig, int]:
    """A view's identity and the bytes it spans (broadcast dims counted once)."""
    elems = 1
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if stride != 0:
            elems *= size
    if t.numel() == 0:
        elems = 0
    itemsize = t.element_size()
    return (t.storage_offset(), tuple(t.shape), tuple(t.stride()), itemsize), elems * itemsize


def _tensors(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, list | tuple):
        return [t for item in x for t in _tensors(item)]
    return []


def collect_tensors(obj: Any, _depth: int = 0) -> list[torch.Tensor]:
    """Tensors inside a module's return value (tensors, tuples, lists, dicts, ModelOutput)."""
    if _depth > 8:
        return []
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in collect_tensors(v, _depth + 1)]
    if isinstance(obj, list | tuple):
        return [t for v in obj for t in collect_tensors(v, _depth + 1)]
    return []


@dataclass
class _Call:
    """One aten call's arguments, sorted by how they touch memory."""

    packet: str
    args: tuple
    kwargs: dict
    named: list  # (schema argument, value)
    mutated: list[torch.Tensor]  # written in place
    ins: list[torch.Tensor]
    outs: list[torch.Tensor]
    fresh: list[torch.Tensor]  # outputs that are new storages


class CountingMode(TorchDispatchMode):
    """Hands every aten call to a `Tracer`; decomposes like torch's FlopCounterMode does."""

    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in rules.METADATA:
            return func(*args, **kwargs)
        if isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        # Same rule as FlopCounterMode: an op with no matmul formula that has a composite
        # decomposition is traced as its parts (so both counters see the same calls).
        if func._overloadpacket not in rules.MATMUL_REGISTRY:
            with self:
                r = func.decompose(*args, **kwargs)
                if r is not NotImplemented:
                    return r
        out = func(*args, **kwargs)
        self.tracer.record(func, args, kwargs, out)
        return out


def _sdpa_as_cpu_kernel(
    query,
    key,
    value,
    attn_mask=None,
    dropout_p=0.0,
    is_causal=False,
    scale=None,
    enable_gqa=False,
):
    """What CPU runs for `scaled_dot_product_attention`: one fused flash kernel (GQA native)."""
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        zero = torch.scalar_tensor(0.0, dtype=query.dtype, device=query.device)
        ninf = torch.scalar_tensor(float("-inf"), dtype=query.dtype, device=query.device)
        attn_mask = torch.where(attn_mask, zero, ninf)
    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale
    )[0]


class MetaFusedAttention(TorchFunctionMode):
    """On the meta device torch decomposes attention into its unfused math form; run the CPU
    flash kernel's meta function instead, so a meta trace counts what a CPU run counts."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            q = args[0] if args else kwargs.get("query")
            v = args[2] if len(args) > 2 else kwargs.get("value")
            # CPU's flash kernel needs one head size; MLA (DeepSeek) runs the math path there
            same = isinstance(v, torch.Tensor) and v.shape[-1] == q.shape[-1]
            if isinstance(q, torch.Tensor) and q.device.type == "meta" and same:
                return _sdpa_as_cpu_kernel(*args, **kwargs)
        return func(*args, **kwargs)


class Tracer:
    """Context manager that records the aten ops run inside it.

    `root`: the module whose submodules name the ops (paths relative to it; ops outside any
    submodule belong to ""). `kv`: tensors to classify as KV cache. `cross_check`: also run
    torch's FlopCounterMode (with memwall's extra formulas) on the same calls.
    """

    def __init__(
        self,
        root: torch.nn.Module | None = None,
        kv: Iterable[torch.Tensor] = (),
        cross_check: bool = False,
        fused_attention_on_meta: bool = True,
    ) -> None:
        self.root = root
        self.cross_check = cross_check
        self.records: list[OpRecord] = []
        self.storages: dict[int, StorageInfo] = {}
        self._sid_of: dict[int, int] = {}
        self._weak: list[StorageWeakRef] = []
        self._last_writer: dict[int, int] = {}
        self._roles: dict[int, str] = {}
        self.coverage: Counter[str] = Counter()
        self.view_calls = 0
        self.outputs: set[int] = set()
        self._stack: list[str] = [""]
        self._hooks: list[Any] = []
        self._modes: list[Any] = []
        self._flop_counter = None
        self._meta_attn = fused_attention_on_meta
        self.leaf_modules: set[str] = set()
        if root is not None:
            for p in root.parameters():
                self._roles.setdefault(p.untyped_storage()._cdata, "param")
            for b in root.buffers():
                self._roles.setdefault(b.untyped_storage()._cdata, "buffer")
        for t in kv:
            self._roles[t.untyped_storage()._cdata] = "kv"

    # ------------------------------------------------------------ context

    def __enter__(self) -> Tracer:
        if self.root is not None:
            for name, mod in self.root.named_modules():
                if not any(True for _ in mod.children()):
                    self.leaf_modules.add(name)
                self._hooks.append(mod.register_forward_pre_hook(self._push(name)))
                self._hooks.append(mod.register_forward_hook(self._pop, always_call=True))
        if self._meta_attn:
            self._modes.append(MetaFusedAttention())
        if self.cross_check:
            self._flop_counter = rules.flop_counter_mode()
            self._modes.append(self._flop_counter)
        self._modes.append(CountingMode(self))
        for m in self._modes:
            m.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        for m in reversed(self._modes):
            m.__exit__(*exc)
        self._modes.clear()
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def _push(self, name: str):
        def hook(module, args):
            self._stack.append(name)

        return hook

    def _pop(self, module, args, output):
        if len(self._stack) > 1:
            self._stack.pop()

    # ------------------------------------------------------------ storages

    def _sid(self, t: torch.Tensor, created: bool = False) -> int:
        st = t.untyped_storage()
        key = st._cdata
        sid = self._sid_of.get(key)
        if sid is None:
            sid = len(self.storages)
            self._sid_of[key] = sid
            self._weak.append(StorageWeakRef(st))
            role = self._roles.get(key, "act")
            self.storages[sid] = StorageInfo(sid, st.nbytes(), role, created)
        return sid

    def mark_inputs(self, obj: Any) -> None:
        """Classify the storages of the run's inputs (they are read, never produced)."""
        for t in collect_tensors(obj):
            key = t.untyped_storage()._cdata
            self._roles.setdefault(key, "input")

    def mark_outputs(self, obj: Any) -> None:
        """The storages of what the run returned: live results, so writing them counts."""
        for t in collect_tensors(obj):
            key = t.untyped_storage()._cdata
            if key in self._sid_of:
                self.outputs.add(self._sid_of[key])

    # ------------------------------------------------------------ recording

    def record(self, func, args, kwargs, out) -> None:
        for t in (*args, *kwargs.values()):
            if isinstance(t, torch.nn.Parameter):  # a weight even with no root module given
                self._roles.setdefault(t.untyped_storage()._cdata, "param")
        packet = func._overloadpacket.__name__
        schema = func._schema
        named: list[tuple[Any, Any]] = list(zip(schema.arguments, args, strict=False))
        named += [(a, kwargs[a.name]) for a in schema.arguments if a.name in kwargs]
        mutated = [
            v
            for a, v in named
            if a.alias_info is not None and a.alias_info.is_write and isinstance(v, torch.Tensor)
        ]
        ins = [t for _, v in named for t in _tensors(v)]
        outs = _tensors(out)
        in_keys = {t.untyped_storage()._cdata for t in ins}
        fresh = [t for t in outs if t.untyped_storage()._cdata not in in_keys]
        if not mutated and outs and not fresh:
            self.view_calls += 1  # view / alias: no data moves
            return

        flops, mm, covered = rules.count_flops(func, packet, args, kwargs, out)
        if not covered:
            self.coverage[str(func)] += 1
        rec = OpRecord(
            index=len(self.records),
            op=str(func),
            packet=packet,
            module=self._stack[-1],
            cls=rules.op_class(packet),
            flops=flops,
            matmul_flops=mm,
            covered=covered,
            dtype=_dtype_of(outs or ins),
            in_shapes=[tuple(t.shape) for t in ins],
        )
        call = _Call(packet, args, kwargs, named, mutated, ins, outs, fresh)
        if packet in rules.SCATTERS:
            self._scatter_bytes(rec, call)
        elif packet in rules.GATHERS:
            self._gather_bytes(rec, call)
        else:
            self._plain_bytes(rec, call)
        for sid in rec.writes:
            self._last_writer[sid] = rec.index
        self.records.append(rec)

    def _read(self, rec: OpRecord, t: torch.Tensor, sig=None, nbytes: int | None = None) -> None:
        sid = self._sid(t)
        vs, vb = _view_sig(t)
        rec.reads.setdefault(sid, {})[sig if sig is not None else vs] = (
            vb if nbytes is None else nbytes
        )
        rec.read_from.setdefault(sid, self._last_writer.get(sid))

    def _write(
        self, rec: OpRecord, call: _Call, t: torch.Tensor, sig=None, nbytes: int | None = None
    ) -> None:
        created = t.untyped_storage()._cdata not in self._sid_of and not call.mutated
        sid = self._sid(t, created=created)
        vs, vb = _view_sig(t)
        rec.writes.setdefault(sid, {})[sig if sig is not None else vs] = (
            vb if nbytes is None else nbytes
        )
        rec.overwrites.setdefault(sid, self._last_writer.get(sid))

    def _scatter_bytes(self, rec: OpRecord, call: _Call) -> None:
        """A scatter reads its sources and writes only the elements it scatters."""
        args = call.args
        n, read_idx, dest_read = rules.scatter_elements(call.packet, args, call.kwargs)
        for i in read_idx:
            if i < len(args):
                for t in _tensors(args[i]):
                    self._read(rec, t)
        if dest_read:
            self._read(rec, args[0], ("scatter", rec.index), dest_read * args[0].element_size())
        dest = call.mutated[0] if call.mutated else (call.fresh[0] if call.fresh else None)
        if dest is not None:
            self._write(rec, call, dest, ("scatter", rec.index), n * dest.element_size())

    def _gather_bytes(self, rec: OpRecord, call: _Call) -> None:
        """A gather reads the rows it picks from its table (embedding, index_select, index)."""
        table = call.args[0]
        picked = rules.gathered_elements(call.packet, call.args, call.kwargs, call.outs)
        self._read(rec, table, ("gather", rec.index), picked * table.element_size())
        for t in call.ins[1:]:
            self._read(rec, t)
        for t in call.fresh:
            self._write(rec, call, t)

    def _plain_bytes(self, rec: OpRecord, call: _Call) -> None:
        """Every input read whole (an overwritten destination or out= buffer is not read)."""
        skip_dest = call.packet in rules.OVERWRITES
        # `new_empty`, `zeros_like`, ...: the input gives only shape, dtype and device
        for a, v in [] if call.packet in rules.CREATION else call.named:
            is_dest = a.alias_info is not None and a.alias_info.is_write
            if is_dest and (skip_dest or a.kwarg_only):
                continue
            for t in _tensors(v):
                self._read(rec, t)
        for t in [*call.mutated, *call.fresh]:
            self._write(rec, call, t)

    def result(self) -> TraceResult:
        return TraceResult(
            records=self.records,
            storages=self.storages,
            outputs=set(self.outputs),
            coverage=dict(self.coverage),
            view_calls=self.view_calls,
            root=type(self.root).__name__ if self.root is not None else "",
            leaf_modules=set(self.leaf_modules),
            flop_counter_flops=(
                float(self._flop_counter.get_total_flops()) if self._flop_counter else None
            ),
        )


def _dtype_of(ts: list[torch.Tensor]) -> str:
    for t in ts:
        if t.is_floating_point():
            return _DTYPES.get(t.dtype, str(t.dtype).replace("torch.", ""))
    return str(ts[0].dtype).replace("torch.", "") if ts else "-"


def trace_module(module: torch.nn.Module, *args: Any, **kwargs: Any) -> TraceResult:
    """Trace one call `module(*args, **kwargs)` under no_grad; ops are named by submodule."""
    with torch.no_grad():
        tracer = Tracer(module)
        tracer.mark_inputs((args, kwargs))
        with tracer:
            out = module(*args, **kwargs)
        tracer.mark_outputs(out)
    return tracer.result()
