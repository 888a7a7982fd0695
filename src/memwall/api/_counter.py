"""`memwall.count_ops`: count the FLOPs and bytes of whatever PyTorch code runs inside a `with`.

Like torch's `FlopCounterMode`, but with memwall's accounting: every aten op is recorded by the
trace engine's `TorchDispatchMode` (`memwall.trace.mode.Tracer`, the one `memwall analyze
--engine trace` uses), then grouped into the kernels a fused runtime runs, with the bytes each
reads (weights, activations) and writes. Nothing here counts on its own: it is the trace
engine pointed at the user's code instead of a model memwall built.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from memwall.api._analyze import MODULE_OP_COLUMNS, UNITS
from memwall.api._common import plain, si
from memwall.api._result import Result
from memwall.errors import MemwallError

_FLOAT_DTYPES = ("fp32", "bf16", "fp16", "fp64")


def count_ops(module: Any = None, *, fused: bool = True, name: str | None = None) -> OpCounter:
    """A context manager that counts every operation PyTorch runs inside it: FLOPs (one
    multiply-accumulate = 2 FLOPs), bytes read and written, arithmetic intensity, per kernel.

    Args:
        module: the `torch.nn.Module` being run (optional): its submodules name the rows
            (`0`, `1`, ... of an `nn.Sequential`, `transformer.h.*.mlp` of GPT-2, layers
            collapsed) and its parameters are counted as weights. Without it, rows are named
            by kernel, and tensors that are `nn.Parameter`s are still counted as weights.
        fused: count bytes per fused kernel (default: each chain of pointwise work between
            two matmuls is one kernel, as `memwall analyze` counts) or False: per aten op.
        name: what the result calls the code (default: the module's class name, or "model").

    After the block: `total_flops`, `total_bytes`, `intensity`, `table` (a DataFrame, one row
    per operation as the trace engine counts it), `coverage` (aten ops with no FLOP formula:
    their bytes are counted, their FLOPs are not) and `result()` (a `memwall.Result`).
    Runs on any device, the meta device included (shapes only, no memory).

    Example:
        >>> with memwall.count_ops(model) as c:
        ...     model(x)
        >>> c.total_flops, c.intensity
    """
    return OpCounter(module, fused=fused, name=name)


class OpCounter:
    """What `count_ops` returns: enter it, run code, read the counts."""

    def __init__(self, module: Any = None, *, fused: bool = True, name: str | None = None):
        self.module = module
        self.fused = fused
        self.name = name or (type(module).__name__ if module is not None else "model")
        self._tracer: Any = None
        self._table: Any = None

    def __enter__(self) -> OpCounter:
        self._table = None
        self._tracer = _tracer_class()(self.module)
        self._tracer.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._tracer.__exit__(*exc)
        if exc[0] is None:
            self._table = self._tabulate(self._tracer.result())
        self._tracer = None

    def _tabulate(self, res: Any) -> Any:
        from memwall.trace import rows_from_traces

        res = dataclasses.replace(res, root=self.name, outputs=res.outputs | _results(res))
        df = rows_from_traces([(res, 1.0)], fused=self.fused)
        df["steps"] = 1
        dtypes = {r.dtype for r in res.records} & set(_FLOAT_DTYPES)
        df.attrs.update(
            engine="trace",
            model=self.name,
            convention="full",
            precision=next(iter(sorted(dtypes)), "-"),
            fused=self.fused,
            coverage=dict(res.coverage),
            aten_calls=len(res.records) + res.view_calls,
            peak_activation_bytes=res.peak_activation_bytes(),
        )
        return df

    @property
    def table(self) -> Any:
        """One row per operation (kernel) with FLOPs, bytes by kind, intensity (pandas)."""
        if self._table is None:
            raise MemwallError(
                "count_ops has no counts yet: read them after the `with` block has run"
            )
        return self._table

    @property
    def total_flops(self) -> float:
        return float(self.table["flops"].sum())

    @property
    def total_bytes(self) -> float:
        return float(self.table["bytes"].sum())

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved (0 when nothing moved)."""
        b = self.total_bytes
        return self.total_flops / b if b else 0.0

    @property
    def coverage(self) -> dict[str, int]:
        """aten ops that ran with no FLOP formula -> calls (never silently counted as 0)."""
        return dict(self.table.attrs["coverage"])

    def result(self) -> Result:
        """The counts as a `memwall.Result` (JSON payload, table, notes; a notebook shows it)."""
        from memwall.count import totals

        df = self.table
        tot = totals(df)
        a = df.attrs
        payload = {
            "model": self.name,
            "convention": "full",
            "engine": "trace",
            "precision": a["precision"],
            "fused": self.fused,
            "totals": {
                k: tot[k]
                for k in ("flops", "bytes", "intensity", "bytes_weight", "bytes_act")
                + ("bytes_written",)
            },
            "units": dict(UNITS),
            "coverage": a["coverage"],
            "aten_calls": a["aten_calls"],
            "counted": "traced (memwall.count_ops), not measured",
            "ops": [{k: r[k] for k in MODULE_OP_COLUMNS if k in r} for r in df.to_dict("records")],
        }
        uncovered = ", ".join(f"{op} x{n}" for op, n in a["coverage"].items()) or "none"
        note = (
            f"total: {si(tot['flops'])}FLOP, {si(tot['bytes'], 'B')} moved, intensity "
            f"{tot['intensity']:.3g} FLOP/B (counted, not measured; 1 MAC = 2 FLOPs); "
            f"ops without a FLOP formula: {uncovered}"
        )
        return Result(
            command="count_ops",
            payload=plain(payload),
            rows=df.to_dict("records"),
            columns=MODULE_OP_COLUMNS,
            title=f"{self.name}: operations counted | precision={a['precision']} engine=trace",
            notes=[note],
            extra={"ops": df},
        )

    def _repr_html_(self) -> str:
        return self.result()._repr_html_()


def _results(res: Any) -> set[int]:
    """Storages the code produced and nothing inside the block read after their last write:
    what it handed back to the caller (their writes count, as the outputs of a traced call)."""
    last_write: dict[int, int] = {}
    last_read: dict[int, int] = {}
    for r in res.records:
        for sid in r.writes:
            last_write[sid] = r.index
        for sid in r.reads:
            last_read[sid] = r.index
    return {
        sid
        for sid, w in last_write.items()
        if res.storages[sid].created and last_read.get(sid, -1) <= w
    }


def _tracer_class() -> type:
    """The trace engine's `Tracer` (it counts any `nn.Parameter` it meets as a weight, so no
    root module is needed). Imported on first use: torch loads only when counting starts."""
    from memwall.trace import Tracer

    return Tracer
