"""Spec sheet vs achievable (memwall.predict.efficiency): the headline workloads on each chosen
accelerator, predicted by the plain roofline and by memwall's efficiency model (the fraction of
peak bandwidth and FLOP/s that kernels of each size reach on that class of device)."""

from __future__ import annotations

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.predict.efficiency import device_prediction
from memwall.report.base import Column, ReportContext, SectionResult
from memwall.report.workloads import headline, model_spec
from memwall.spec import parse_precision


class EfficiencySection:
    name = "efficiency"
    title = "Spec sheet vs achievable"
    order = 89
    weight = 1.0

    def build(self, ctx: ReportContext) -> SectionResult:
        res = SectionResult()
        rows = []
        for model in ctx.options.models:
            wl, prec = headline(ctx, model)
            ops = op_table(model_spec(ctx, model), wl, prec, "full")
            for dname, dev in ctx.devices.items():
                if dev.measured:
                    continue
                try:
                    p = device_prediction(ops, dev, parse_precision(prec))
                except MemwallError as e:
                    res.notes.append(f"{model} on {dname}: {e}")
                    continue
                rows.append(
                    {
                        "model": model,
                        "device": dname,
                        "class": p.device_class,
                        "roofline": p.roofline.totals["time"],
                        "time": p.totals["time"],
                        "low": p.totals["time_low"],
                        "high": p.totals["time_high"],
                        "ratio": p.totals["time"] / p.roofline.totals["time"],
                    }
                )
        res.text(
            "The roofline with spec-sheet roofs is a lower bound: real kernels reach a "
            "fraction of peak bandwidth and FLOP/s, smaller kernels less. memwall's "
            "efficiency model prices each operation at the fraction its size reaches on "
            "that class of device (with a range); the ratio says how optimistic the spec "
            "sheet is for each headline workload."
        )
        res.table(
            "Headline workloads: spec-sheet roofline vs efficiency model (predicted)",
            [
                Column("model", "model"),
                Column("device", "device"),
                Column("class", "device class"),
                Column("roofline", "roofline", "seconds"),
                Column("time", "efficiency model", "seconds"),
                Column("low", "low", "seconds"),
                Column("high", "high", "seconds"),
                Column("ratio", "ratio", "ratio"),
            ],
            rows,
            folded=True,
        )
        res.data = {"rows": rows}
        return res


SECTION = EfficiencySection()
