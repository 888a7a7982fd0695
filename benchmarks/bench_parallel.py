"""memwall parallel vs published training measurements, and a real tensor-parallel GPT-2 block.

    .venv/bin/python benchmarks/bench_parallel.py [--no-measure] [--batch 4] [--seq 128]
    .venv/bin/python benchmarks/bench_parallel.py --fit

--fit chooses the whole-step kernel rate (`training_step.kernel_rate` of data/efficiency.json)
on the rows marked fitted = yes alone: for each, the rate at which memwall's prediction equals
what the row measured; value = their median, low/high = their quartiles. It prints them beside
the data file's values and stops.

1. Every row of `memwall/data/published_training.csv` (Megatron-LM, Korthikanti et al., Llama 3,
   NeMo, llm-foundry, torchtitan), priced with the attention kernel the row's software ran (its
   `attention` column): memwall's predicted MFU/HFU beside the published one, the relative
   error, then the median
   and the worst error, for the default (realistic) prediction and the plain roofline (an
   upper bound, `--roofline`); the default's error is also given over the rows not used to
   choose any value (out of sample).
2. (unless --no-measure) transformers' GPT2Block split over 2 gloo ranks on this CPU: the
   largest output difference from the unsplit block, the measured times, and memwall's
   prediction for the same split on `local` (needs `memwall measure` and
   `memwall measure --collectives` to have been run; otherwise it says so).
"""

from __future__ import annotations

import argparse
import statistics

from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.block import tp_block_prediction
from memwall.parallel.links import links_for
from memwall.parallel.published import fit_kernel_rate, predict_row, published_rows, row_spec
from memwall.predict.efficiency import training_kernel_rate
from memwall.spec import load_model, parse_precision, spec_from_config


def _summary(label: str, es: list[float]) -> str:
    if not es:
        return f"{label}: no rows"
    worst = max(es, key=abs)
    return (f"{label}: rows {len(es)}; median error {statistics.median(es):+.1%}; median |error| "
            f"{statistics.median(abs(x) for x in es):.1%}; worst {worst:+.1%}")  # fmt: skip


def _num(x: float) -> str:
    """A fraction of the peak to 3 places, a throughput (tokens/s per GPU) to the unit."""
    return f"{x:.3f}" if x < 10 else f"{x:.0f}"


def published() -> None:
    print("predicted vs published MFU/HFU (fractions of the dense peak of the row's precision). "
          "default: memwall's realistic prediction (published kernel efficiencies, NCCL bus "
          "bandwidth, training work outside the op table); roofline: every kernel at dense peak "
          "and datasheet bandwidth, links at line rate (an upper bound); fit: row used to "
          "choose a value")  # fmt: skip
    print(f"{'id':36} {'device':14} {'metric':14} {'published':>9} {'default':>8} {'error':>8} "
          f"{'roofline':>8} {'error':>8} {'fit':>3} {'fits':>5} {'comm':>6} "
          f"{'bubble':>6} {'attn':>6}")  # fmt: skip
    errs: dict[str, list[float]] = {
        "default": [], "roofline": [], "default, out of sample": [], "default, fit rows": [],
        "default, dense models": [], "default, mixture-of-experts models": [],
    }  # fmt: skip
    over: list[dict] = []  # published runs (they ran) that memwall says do not fit
    for r in published_rows():
        d, e = predict_row(r), predict_row(r, efficiency=False)
        if not d["fits"]:
            over.append(d)
        errs["default"].append(d["error"])
        errs["roofline"].append(e["error"])
        errs["default, fit rows" if d["fitted"] else "default, out of sample"].append(d["error"])
        moe = row_spec(r).is_moe
        errs["default, mixture-of-experts models" if moe else "default, dense models"].append(
            d["error"]
        )
        print(f"{d['id']:36} {d['device']:14} {d['metric']:14} {_num(d['published']):>9} "
              f"{_num(d['predicted']):>8} {d['error']:+8.1%} {_num(e['predicted']):>8} "
              f"{e['error']:+8.1%} "
              f"{'yes' if d['fitted'] else 'no':>3} {str(d['fits']):>5} "
              f"{d['communication_fraction']:6.1%} {d['bubble']:6.1%} "
              f"{d['attention']:>6}")  # fmt: skip
    for name, es in errs.items():
        print(_summary(name, es))
    n = len(errs["default"])
    print(f"memory: {n - len(over)} of {n} published runs fit memwall's predicted per-device peak "
          "(every one of them ran, so all should)")  # fmt: skip
    for d in sorted(over, key=lambda d: d["peak_memory"] / d["capacity"], reverse=True):
        print(
            f"  {d['id']:36} {d['device']:14} peak {d['peak_memory'] / 2**30:6.1f} GiB of "
            f"{d['capacity'] / 2**30:5.0f} GiB ({d['peak_memory'] / d['capacity'] - 1:+.0%})"
        )


def fit() -> None:
    rates, (q1, med, q3) = fit_kernel_rate()
    for r, k in rates:
        print(f"{r['id']:36} {r['device']:14} kernel rate that matches: {k:.3f}")
    t = training_kernel_rate()
    print(
        f"fit over {len(rates)} rows: value {med:.3f} (median), low {q1:.3f}, high {q3:.3f} "
        f"(quartiles); data/efficiency.json has {t.value:.3f} ({t.low:.3f}-{t.high:.3f})"
    )


def tp_block(batch: int, seq: int) -> None:
    from memwall.measure.tp_block import tp_block_check

    m = tp_block_check(batch=batch, seq=seq)
    print(f"\nGPT-2 block (d 768, 12 heads), batch {batch} x seq {seq}, fp32, 2 gloo ranks:")
    print(f"  max |split - unsplit| = {m['max_abs_diff']:.3g} (output max {m['ref_max_abs']:.3g})")
    print(f"  measured: unsplit {m['unsplit'] * 1e3:.3f} ms, split {m['split'] * 1e3:.3f} ms "
          f"(all-reduces {m['split_all_reduce'] * 1e3:.3f} ms), "
          f"speed-up {m['unsplit'] / m['split']:.2f}x")  # fmt: skip
    cfg = {"model_type": "gpt2", "n_embd": 768, "n_layer": 1, "n_head": 12, "vocab_size": 50257,
           "n_positions": 1024}  # fmt: skip
    try:
        spec, prec = spec_from_config(cfg, "gpt2-block"), parse_precision("fp32")
        p = tp_block_prediction(spec, get_device("local"), links_for("local"), 2, batch, seq, prec)
    except MemwallError as e:
        print(f"  predicted on local: unavailable ({e})")
        return
    print(f"  predicted on local: unsplit {p['unsplit'] * 1e3:.3f} ms, split {p['split'] * 1e3:.3f}"
          f" ms (all-reduces {p['split_all_reduce'] * 1e3:.3f} ms); "
          f"split measured/predicted {m['split'] / p['split']:.2f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-measure", action="store_true", help="skip the real split GPT-2 block")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--fit", action="store_true", help="choose the kernel rate on the fit rows")
    a = ap.parse_args()
    load_model("gpt2")  # the presets resolve (fail early)
    if a.fit:
        fit()
        return
    published()
    if not a.no_measure:
        tp_block(a.batch, a.seq)


if __name__ == "__main__":
    main()
