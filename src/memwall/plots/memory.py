"""Memory figures: a footprint's breakdown, the rematerialisation trade-off, the paper's Figure 4.

Matplotlib through `Figure` + the Agg canvas (no pyplot state). Files are written to a temporary
name beside the target and renamed into place: an interrupted run leaves no half-written image.
Every figure says what is predicted (memwall's closed form), what is printed by the paper and
what comes from spec sheets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from memwall.plots.save import check_plot_path, save_figure

GIB = 2.0**30
COLORS = {
    "weights": "#4c72b0",
    "gradients": "#8172b3",
    "optimizer state": "#dd8452",
    "master weights": "#c44e52",
    "activations (kept)": "#55a868",
    "recomputed segment": "#8fd19e",
    "temporaries": "#ccb974",
    "ZeRO buffers": "#64b5cd",
    "framework overhead": "#999999",
    "KV cache": "#da8bc3",
    "activations (peak)": "#55a868",
}


def plot_breakdown(fp: Any, path: str | Path, fit: Any = None) -> Path:
    """One stacked bar of a training or inference footprint (GiB per device) and the device."""
    check_plot_path(path)
    rows = [r for r in fp.rows() if r["component"] in COLORS and r["bytes"] > 0]
    fig = Figure(figsize=(8, 3.6), layout="constrained")
    ax = fig.add_subplot()
    left = 0.0
    for r in rows:
        w = r["bytes"] / GIB
        ax.barh([0], [w], left=left, color=COLORS[r["component"]], label=r["component"])
        left += w
    peak = getattr(fp, "peak", None)
    if peak is not None:
        ax.axvline(peak / GIB, color="black", ls=":", lw=1.2, label="peak on the step's timeline")
    if fit is not None:
        ax.axvline(fit.capacity / GIB, color="red", lw=2, label=f"{fit.display_name} (spec sheet)")
    ax.set_yticks([])
    ax.set_xlabel("GiB per device (predicted, memwall closed form)")
    kind = "training" if hasattr(fp, "optimizer") else "inference"
    extra = (
        f", {fp.optimizer}, checkpointing {fp.checkpointing}, ZeRO-{fp.zero} x{fp.devices}"
        if kind == "training"
        else f", {fp.phase}, context {fp.context}"
    )
    ax.set_title(f"{fp.model} {kind} memory: {fp.precision}, batch {fp.batch}{extra}", fontsize=9)
    fig.legend(fontsize=7, loc="outside lower center", ncol=4, frameon=False)
    return save_figure(fig, path)


def plot_remat(curve: pd.DataFrame, path: str | Path) -> Path:
    """Activation memory against extra compute, one point per checkpointing strategy."""
    check_plot_path(path)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    fam = curve["strategy"].str.split(":").str[0]
    for name, marker in (("layers", "o"), ("every", "s")):
        sel = curve[fam == name]
        ax.plot(
            100 * sel["extra_compute"],
            sel["activation_memory"] / GIB,
            marker=marker,
            ls="-" if name == "layers" else "none",
            label=f"{name}:K",
            alpha=0.8,
        )
    for name in ("none", "selective", "sqrt", "full"):
        r = curve[curve["strategy"] == name]
        if len(r):
            x, y = 100 * r["extra_compute"].iloc[0], r["activation_memory"].iloc[0] / GIB
            ax.plot([x], [y], marker="D", color="black")
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    base = float(curve.loc[curve["strategy"] == "none", "activation_memory"].iloc[0]) / GIB
    ax.axhline(base / 5, color="gray", ls=":", lw=1)
    ax.axvline(20, color="gray", ls=":", lw=1)
    ax.annotate(
        "paper: 5x less for ~20% more",
        (20, base / 5),
        fontsize=8,
        color="gray",
        textcoords="offset points",
        xytext=(4, 4),
    )
    a = curve.attrs
    ax.set_xlabel("recompute FLOPs, % of the step without it (forward + backward = 3x forward)")
    ax.set_ylabel("activation memory at the worst moment (GiB, predicted)")
    ax.set_title(
        f"Rematerialisation trade-off: {a.get('model', '')}, batch {a.get('batch')} x "
        f"{a.get('seq_len')}, {a.get('precision')}, {a.get('impl')}"
        f"{', fused attention' if a.get('fused_attention') else ', unfused attention'}",
        fontsize=9,
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_paper_figure4(path: str | Path, table: pd.DataFrame) -> Path:
    """The paper's training-memory table as stacked bars, memwall's recomputation beside the rows
    it models, and the largest accelerator memory of each year (catalog spec sheets); `table`
    is `memwall.studies.figure4.figure4_table()` (plots draw what they are given)."""
    check_plot_path(path)
    t = table
    fig = Figure(figsize=(11, 5.2), layout="constrained")
    ax = fig.add_subplot()
    parts = (
        ("params", "#4c72b0", "parameters"),
        ("optimizer", "#dd8452", "optimizer state"),
        ("activations", "#55a868", "activations"),
    )
    labels, x = [], 0.0
    xs_acc, ys_acc = [], []
    grads_labelled = False
    for i, r in t.iterrows():
        bottom = 0.0
        for key, color, label in parts:
            v = r[f"paper_{key}_GB"]
            ax.bar(x, v, 0.38, bottom=bottom, color=color, label=label if i == 0 else None)
            bottom += v
        if pd.notna(r.get("memwall_params_GB")):
            bottom = 0.0
            for key, color, _label in parts:
                v = r[f"memwall_{key}_GB"]
                ax.bar(x + 0.4, v, 0.38, bottom=bottom, color=color, hatch="//", edgecolor="white")
                bottom += v
            ax.bar(
                x + 0.4,
                r["memwall_gradients_GB"],
                0.38,
                bottom=bottom,
                color="#8172b3",
                hatch="//",
                edgecolor="white",
                label=None if grads_labelled else "gradients (memwall; not in the paper's table)",
            )
            grads_labelled = True
        xs_acc.append(x)
        ys_acc.append(r["accelerator_memory_GB"])
        labels.append(f"{r['model']}\n{int(r['year'])}")
        x += 1.0
    ax.plot(
        xs_acc,
        ys_acc,
        "k--",
        marker="_",
        ms=20,
        label="largest accelerator memory of the year (spec sheets)",
    )
    for xa, ya, (_, r) in zip(xs_acc, ys_acc, t.iterrows(), strict=True):
        if pd.notna(ya):
            ax.annotate(
                str(r["accelerator"]).replace("NVIDIA ", ""),
                (xa, ya),
                fontsize=6,
                textcoords="offset points",
                xytext=(0, 4),
                ha="center",
            )
    ax.bar(
        0,
        0,
        color="white",
        edgecolor="gray",
        hatch="//",
        label="hatched: memwall's prediction (closed form or traced module)",
    )
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("GB = 2^30 bytes (the paper's unit; memwall and devices alike)")
    ax.set_title(
        "Memory to train each model (paper's Fig. 4 data, Gholami et al. 2024, authors' README "
        "table) vs accelerator memory",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left")
    return save_figure(fig, path)
