"""Figures, one module per domain (roofline, memory, trends, casestudy); `save` holds the one
path check and atomic save every figure goes through."""

from memwall.plots.save import FORMATS, check_plot_path, save_figure

__all__ = ["FORMATS", "check_plot_path", "save_figure"]
