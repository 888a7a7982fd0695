"""memwall parallel vs published training measurements, and a real tensor-parallel GPT-2 block.

    .venv/bin/python benchmarks/bench_parallel.py [--no-measure] [--batch 4] [--seq 128]

1. Every row of `memwall/data/published_training.csv` (Megatron-LM, Korthikanti et al., Llama 3):
   memwall's predicted MFU/HFU beside the published one, the relative error, then the median
   and the worst error, for two compute models: the roofline at dense peak (no kernel
   efficiency loss, so expected high) and the published kernel efficiencies
   (`--efficiency`); both add alpha-beta communication and the pipeline schedule.
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
from memwall.parallel.published import predict_row, published_rows
from memwall.spec import load_model, parse_precision, spec_from_config


def published() -> None:
    print("predicted vs published (fractions of the dense 16-bit peak). roofline: every kernel at "
          "dense peak / datasheet bandwidth; effic.: kernels at the published efficiencies of "
          "memwall.predict.efficiency; both + alpha-beta communication")  # fmt: skip
    print(f"{'id':18} {'metric':6} {'published':>9} {'roofline':>9} {'error':>8} {'effic.':>7} "
          f"{'error':>8} {'fits':>5} {'comm':>6} {'bubble':>6}")  # fmt: skip
    errs: dict[str, list[float]] = {"roofline": [], "efficiency": []}
    for r in published_rows():
        d, e = predict_row(r), predict_row(r, efficiency=True)
        errs["roofline"].append(d["error"])
        errs["efficiency"].append(e["error"])
        print(f"{d['id']:18} {d['metric']:6} {d['published']:9.3f} {d['predicted']:9.3f} "
              f"{d['error']:+8.1%} {e['predicted']:7.3f} {e['error']:+8.1%} {str(d['fits']):>5} "
              f"{d['communication_fraction']:6.1%} {d['bubble']:6.1%}")  # fmt: skip
    for name, es in errs.items():
        worst = max(es, key=abs)
        print(
            f"{name}: rows {len(es)}; median error {statistics.median(es):+.1%}; "
            f"median |error| {statistics.median(abs(x) for x in es):.1%}; worst {worst:+.1%}"
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
    a = ap.parse_args()
    load_model("gpt2")  # the presets resolve (fail early)
    published()
    if not a.no_measure:
        tp_block(a.batch, a.seq)


if __name__ == "__main__":
    main()
