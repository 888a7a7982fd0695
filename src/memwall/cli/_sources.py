"""`memwall memory` for MODELs that are Python code: `torchvision:NAME` and `module:function`
(see `memwall.sources`). Parse, call the trace engine, render. (`memwall analyze` of such a
MODEL is `memwall.api.analyze`, which builds the module with `memwall.api._common.module_run`.)"""

from __future__ import annotations

from typing import Any

from memwall.api._analyze import CODE_NOTE, MODULE_OP_COLUMNS, UNITS  # noqa: F401
from memwall.api._common import module_run
from memwall.cli._common import binary, emit, rich_table, typed_options
from memwall.sources import ModuleSource
from memwall.spec import Precision, parse_precision


def _run(source: ModuleSource, batch: int, image_size, seq_len, precision: Precision):
    """The module and its inputs; the flags the user typed are the ones an entry point that
    does not declare them refuses (`memwall.api._common.module_run`)."""
    typed = typed_options()
    asked = [a for a in ("batch", "seq_len", "image_size") if "--" + a.replace("_", "-") in typed]
    return module_run(source, batch, image_size, seq_len, precision, asked)


def memory_module(
    source: ModuleSource,
    mode: str,
    batch: int,
    seq_len: int | None,
    image_size: int | None,
    precision: str,
    optimizer: str,
    fmt,
) -> None:
    """Inference (traced activation peak) or training (autograd's saved tensors) memory."""
    from memwall.trace.table import trace_run
    from memwall.trace.training import module_inference_memory, module_training_memory

    prec = parse_precision(precision)
    run = _run(source, batch, image_size, seq_len, prec)
    if mode == "train":
        fp = module_training_memory(run, optimizer, prec)
        rows, total, detail = fp.rows(), fp.total, fp.to_dict()
    else:
        df = trace_run(run, cross_check=False)
        detail = module_inference_memory(run, df.attrs["peak_activation_bytes"])
        total = detail["total"]
        rows = [
            {"component": k, "bytes": detail[k], "note": ""}
            for k in ("weights", "buffers", "activations", "total")
        ]
        rows[2]["note"] = "traced peak, freed at last use (no_grad)"
    for r in rows:
        r["share"] = r["bytes"] / total if total else 0.0
    payload: dict[str, Any] = {
        "model": source.label,
        "mode": mode,
        "precision": prec.label,
        "predicted": "traced module on the meta device (memwall.trace), not measured",
        "workload": {"batch": batch, "inputs": run.inputs},
        "params": run.n_params,
        "footprint": detail,
        "breakdown": rows,
        "units": {"bytes": "byte"},
    }
    if source.kind == "entry_point":
        payload["note"] = CODE_NOTE

    def table():
        cols = [
            ("component", "component", None),
            ("bytes", "bytes", lambda v: binary(v)),
            ("share", "share", lambda v: f"{100 * v:.1f}%"),
            ("note", "note", None),
        ]
        title = f"{source.label} {mode} memory: {run.inputs}, {prec.label}" + (
            f", {optimizer}" if mode == "train" else ""
        )
        cap = "predicted from a traced step on the meta device (not measured)"
        return [rich_table(title, rows, cols, cap)]

    emit(fmt, payload, rows, table, ["component", "bytes", "share", "note"])
