"""Method: the counting conventions, what is measured and what comes from spec sheets, the
versions that produced the report, and where its numbers are (results.json)."""

from __future__ import annotations

import platform
from importlib import metadata

from memwall.report.base import Column, ReportContext, SectionResult
from memwall.version import __version__

PACKAGES = ("torch", "transformers", "numpy", "pandas", "scipy", "plotly", "jinja2")


def versions() -> dict[str, str]:
    out = {"memwall": __version__, "python": platform.python_version()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


class MethodSection:
    name = "method"
    title = "Method"
    order = 90
    weight = 0.5

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        res.text(
            "Counting: one multiply-accumulate is 2 FLOPs; MOPs are bytes. Convention 'paper' "
            "(the case study and the encoder/decoder claim): 8-bit weights and activations, each "
            "operation reads its inputs and writes its output once, embeddings and LM head not "
            "counted, a decoder's length-L cost summed over generating L tokens from no prompt. "
            "Convention 'full' (verdict, roofline, what-if): everything the model executes, at "
            "the stated precision.",
            heading="Conventions",
        )
        res.text(
            "Prediction: per operation, max(FLOPs / compute roof, bytes / memory roof), plus the "
            "device's measured per-op overhead (zero for spec-sheet devices, so their times are "
            "lower bounds). The case study uses the calibrated roofline (terms measured on this "
            "machine), and its latencies are measured: median of timed runs of the real models "
            "with random weights.",
            heading="Measured, predicted, spec sheet",
        )
        origin = [
            {"device": n, "roofs": d.roof_origin, "source": d.source}
            for n, d in ctx.devices.items()
        ]
        res.table(
            "Where each device's roofs come from",
            [Column("device", "device"), Column("roofs", "roofs"), Column("source", "source")],
            origin,
            folded=True,
        )
        v = versions()
        res.table(
            "Versions",
            [Column("package", "package"), Column("version", "version")],
            [{"package": k, "version": x} for k, x in v.items()],
            folded=True,
        )
        res.text(
            "Every number on this page, with more digits and the rows behind each figure, "
            "is in results.json beside this file (one JSON object, base units: FLOPs, "
            "bytes, seconds, bytes/s, FLOP/s).",
            heading="Data",
        )
        res.data = {
            "versions": v,
            "devices": origin,
            "conventions": ["paper", "full"],
            "quick": ctx.options.quick,
        }
        return res


SECTION = MethodSection()
