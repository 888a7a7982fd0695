"""The one way a figure reaches disk: path checked first, then written atomically.

Why: every figure module used to carry its own temp-file dance and its own path check; a
figure is now saved by `save_figure` and a path checked by `check_plot_path`, both built on
`memwall.io`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg

from memwall.io import check_output_path, write_atomic_with

FORMATS = ("png", "svg", "pdf")


def check_plot_path(
    path: str | Path, formats: tuple[str, ...] = FORMATS, what: str = "--plot file"
) -> Path:
    """Refuse a figure path before any work (see `memwall.io.check_output_path`)."""
    return check_output_path(path, formats, what)


def save_figure(
    fig: Any, path: str | Path, formats: tuple[str, ...] = FORMATS, **savefig: Any
) -> Path:
    """Render a matplotlib figure to `path` (format from its extension) atomically."""
    p = check_plot_path(path, formats)
    fmt = p.suffix.lower().lstrip(".")
    if not isinstance(getattr(fig, "canvas", None), FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return write_atomic_with(p, lambda f: fig.savefig(f, format=fmt, **savefig))
