"""The paper's Figure 4: memory to train each model of its table, against accelerator memory.

The table (parameters, optimizer state, activations, total; GB as printed) is the authors'
"Memory Breakdown" README table, bundled in data/trends/paper_training_memory.csv with its
source. Accelerator memory "of its year" is the largest memory of any GPU, TPU or accelerator
in the devices catalog released by the end of that year (spec sheets). memwall recomputes the
rows it can model (data/paper_figure4_models.json says how) beside the printed numbers.

Note the paper's breakdown has no gradient column: its totals are parameters + optimizer state
+ activations. memwall reports gradients separately so the two can be compared part by part.

Units: the table's "GB" are 2^30 bytes (GiB): its CNN parameter columns equal 4 bytes x the
parameter count only in those units (AlexNet 61.1M x 4 B = 0.23 GiB, 0.24 GB), and the catalog's
accelerators are sized in them too (16 GB V100 = 16 GiB). Every column here uses 2^30 bytes.

Rows come from the closed form (a preset: BERT Large, GPT-2) or from the trace engine
(torchvision's CNNs, the 2017 Transformer): its torch import happens only when such a row is
computed.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import pandas as pd

from memwall.memory.report import MemoryReport
from memwall.memory.training import training_memory
from memwall.spec import Precision, load_model, parse_precision

GB = 2**30  # the paper's "GB" (see the module docstring)
ACCELERATOR_KINDS = ("gpu", "tpu", "accelerator")


def paper_training_table() -> pd.DataFrame:
    """The paper's training-memory table as bundled (one row per model)."""
    path = resources.files("memwall.data").joinpath("trends/paper_training_memory.csv")
    with path.open("r", encoding="utf-8") as f:
        return pd.read_csv(f)


@functools.lru_cache(maxsize=1)
def figure4_models() -> dict[str, dict[str, Any]]:
    text = resources.files("memwall.data").joinpath("paper_figure4_models.json").read_text("utf-8")
    return json.loads(text)["models"]


def accelerator_memory_by_year(years: list[int]) -> pd.DataFrame:
    """For each year: the catalog accelerator with the most memory released by its end."""
    from memwall.hardware import catalog_frame

    cat = catalog_frame()
    cat = cat[cat["kind"].isin(ACCELERATOR_KINDS) & cat["mem_capacity"].notna()]
    cat = cat[cat["released"].notna()]
    rows = []
    for y in sorted(set(int(y) for y in years)):
        avail = cat[cat["released"].dt.year <= y]
        if avail.empty:
            rows.append({"year": y, "device": None, "display_name": None, "mem_capacity": None})
            continue
        best = avail.loc[avail["mem_capacity"].idxmax()]
        rows.append(
            {
                "year": y,
                "device": best["name"],
                "display_name": best["display_name"],
                "mem_capacity": float(best["mem_capacity"]),
            }
        )
    return pd.DataFrame(rows)


def predict_row(model: str) -> dict[str, Any] | None:
    """memwall's breakdown (bytes) for a paper row it can model, else None."""
    setup = figure4_models().get(model)
    if setup is None:
        return None
    prec = parse_precision(setup["precision"])  # text of the data file, parsed once here
    if setup.get("engine", "closed") == "trace":
        return _trace_row(setup, prec)
    spec = load_model(setup["preset"])
    fp = training_memory(
        spec,
        batch=setup["batch"],
        seq_len=setup["seq_len"],
        precision=prec,
        optimizer=setup["optimizer"],
        impl=setup["impl"],
        fused_attention=setup["fused_attention"],
        dropout=setup["dropout"],
    )
    return {
        "preset": setup["preset"],
        "engine": "closed",
        "seq_len": setup["seq_len"],
        "batch": setup["batch"],
        "params": fp.weights,
        "gradients": fp.gradients,
        "optimizer": fp.optimizer_state + fp.master_weights,  # the paper's column holds both
        "activations": fp.activations,
        "peak": fp.peak,
        "states_plus_activations": fp.weights
        + fp.optimizer_state
        + fp.master_weights
        + fp.activations,
    }


def _trace_row(setup: dict[str, Any], prec: Precision) -> dict[str, Any]:
    """A row from a traced module: torchvision's model, or the Transformer built from sizes."""
    from memwall.trace.models import resolve_dtype
    from memwall.trace.sources import torchvision_run
    from memwall.trace.training import module_training_memory
    from memwall.trace.zoo import transformer_run

    dtype = resolve_dtype(prec)
    src = setup["source"]
    if src.startswith("torchvision:"):
        run = torchvision_run(src.split(":", 1)[1], setup["batch"], setup["image_size"], dtype)
        size = f"{setup['image_size']}x{setup['image_size']}"
    else:
        run = transformer_run(setup["config"], setup["batch"], setup["seq_len"], dtype)
        size = str(setup["seq_len"])
    fp = module_training_memory(run, setup["optimizer"], prec)
    return {
        "preset": src,
        "engine": "trace",
        "seq_len": size,
        "batch": setup["batch"],
        "params": fp.weights,
        "gradients": fp.gradients,
        "optimizer": fp.optimizer_state + fp.master_weights,
        "activations": fp.activations,
        "peak": fp.total,
        "states_plus_activations": fp.weights
        + fp.optimizer_state
        + fp.master_weights
        + fp.activations,
    }


def figure4_table() -> pd.DataFrame:
    """The paper's rows, the accelerator memory of each year, and memwall's numbers, all in the
    paper's GB (2^30 bytes)."""
    t = paper_training_table()
    acc = accelerator_memory_by_year(t["year"].tolist()).set_index("year")
    rows = []
    for r in t.itertuples(index=False):
        a = acc.loc[int(r.year)]
        row = {
            "year": int(r.year),
            "model": r.model,
            "optimizer": r.optimizer,
            "input_size": r.input_size,
            "batch_size": int(r.batch_size),
            "paper_params_GB": r.params_memory_GB,
            "paper_optimizer_GB": r.optimizer_memory_GB,
            "paper_activations_GB": r.activation_memory_GB,
            "paper_total_GB": r.total_memory_GB,
            "accelerator": a["display_name"],
            "accelerator_memory_GB": (a["mem_capacity"] / GB) if a["mem_capacity"] else None,
        }
        p = predict_row(r.model)
        if p:
            row.update(
                memwall_preset=p["preset"],
                memwall_engine=p["engine"],
                memwall_params_GB=p["params"] / GB,
                memwall_gradients_GB=p["gradients"] / GB,
                memwall_optimizer_GB=p["optimizer"] / GB,
                memwall_activations_GB=p["activations"] / GB,
                memwall_paper_total_GB=p["states_plus_activations"] / GB,
                memwall_peak_GB=p["peak"] / GB,
            )
        rows.append(row)
    return pd.DataFrame(rows)


def figure4_report() -> MemoryReport:
    """The paper's Figure 4 training-memory table beside memwall's predictions (GB)."""
    t: pd.DataFrame = figure4_table()
    rows = t.to_dict("records")
    payload = {
        "figure": "Gholami et al., AI and Memory Wall, Fig. 4 (training memory)",
        "source": "the authors' README 'Memory Breakdown' table (amirgholami/ai_and_memory_wall "
        "@ a1f1d67), GB as printed; accelerators: memwall device catalog (spec sheets); "
        "memwall columns: predicted (closed form for presets, traced module on the meta device "
        "for the CNNs and the 2017 Transformer; memwall_engine says which); every GB is 2^30 "
        "bytes, the paper's unit",
        "rows": rows,
    }
    return MemoryReport(payload, rows, list(t.columns), t)
