"""The serving, energy and remedies sections, each built directly on tiny models: their numbers
are the libraries' (memwall.api.serve, energy.shares.energy_shares, compress.pareto), their
figures carry a caption and a text alternative, and their data is JSON-able."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from memwall.api import serve
from memwall.energy.shares import BATCHES, VARIANTS, energy_shares
from memwall.errors import MemwallError
from memwall.hardware import get_device
from memwall.parallel.published_energy import compare
from memwall.report.base import Figure, Paragraph, ReportContext, ReportOptions, Table
from memwall.report.render import section_json
from memwall.report.sections import energy, remedies, serving
from memwall.report.workloads import model_spec
from tiny_configs import LLAMA_TINY, REPORT_MODELS

CONFIGS = {**REPORT_MODELS, "llama-tiny": LLAMA_TINY}
DEVICE = "h100-sxm"


def context(models=("bert-base", "gpt2", "llama-tiny"), devices=(DEVICE,), **kw) -> ReportContext:
    """Quick and timing nothing unless asked; the tiny configs (a copy: a test may add one)."""
    kw = {"quick": True, "measure": False, **kw}
    opts = ReportOptions(models=models, devices=devices, configs=dict(CONFIGS), **kw)
    ctx = ReportContext(opts)
    ctx.devices = {d: get_device(d) for d in devices}
    return ctx


def blocks(res, kind):
    return [b for b in res.blocks if isinstance(b, kind)]


def check_figures(res, *words: str) -> None:
    figs = blocks(res, Figure)
    assert len(figs) == 1
    f = figs[0]
    assert f.alt and f.alt != f.caption and len(f.alt.split(". ")) <= 2  # one sentence or so
    for w in words:
        assert w in f.caption
    assert f.figure.layout.height and f.figure.layout.height <= 360
    json.dumps(section_json(res))  # results.json can hold it


# ---------------------------------------------------------------- serving


@pytest.fixture
def few_requests(monkeypatch):
    """300 requests a run (the report's 2,000 take longer; 20 are enough to judge stability),
    at three rates (one past capacity)."""
    monkeypatch.setattr(serving, "REQUESTS", 300)
    monkeypatch.setattr(serving, "FRACTIONS", (0.25, 0.5, 1.2))


def test_serving_is_the_serve_library(few_requests, tmp_path, data_dir):
    """Every row of the sweep is what memwall.api.serve gives for the same server and rate;
    the rates are fractions of the throughput of the same requests queued at once."""
    ctx = context()
    res = serving.SECTION.build(ctx)
    d = res.data
    assert d["model"] == "gpt2" and d["device"] == DEVICE  # the first decoder; bert is not one
    assert (d["input_len"], d["output_len"]) == serving.lengths(64)  # TINY_GPT2's context
    assert d["input_len"] + d["output_len"] <= 64
    path = tmp_path / "gpt2.json"
    path.write_text(json.dumps(CONFIGS["gpt2"]))
    kw = serving.serve_kwargs(DEVICE, d["input_len"], d["output_len"])
    assert kw["requests"] == 300
    cap = serve(str(path), **kw).payload
    assert d["capacity"]["requests_per_s"] == cap["requests_per_s"]
    assert d["kv_cache"]["blocks"] == cap["kv_cache"]["blocks"]
    rows = d["rows"]
    assert [r["fraction"] for r in rows] == list(serving.FRACTIONS)
    for r in rows[:2]:
        assert r["rate"] == pytest.approx(r["fraction"] * cap["requests_per_s"])
        p = serve(str(path), rate=r["rate"], **kw).payload
        assert p["stable"] and r["stable"]
        assert r["ttft_p50"] == p["ttft"]["p50"] and r["ttft_p90"] == p["ttft"]["p90"]
        assert r["tpot_p50"] == p["tpot"]["p50"]
        assert r["output_tokens_per_s"] == p["output_tokens_per_s"]
        assert r["j_per_output_token"] == p["energy"]["j_per_output_token"]
    low = rows[0]
    text = blocks(res, Paragraph)[0].text
    assert serving.si(low["ttft_p50"], "s") in text and serving.si(low["rate"], "req/s") in text
    assert d["saturation"]["limit"] in ("kv_cache", "compute")
    tables = blocks(res, Table)
    assert len(tables) == 1 and tables[0].folded and len(tables[0].rows) == len(rows)
    check_figures(res, "predicted", "seconds", "bf16")
    # no real engine was checked on this machine: the section says how to do it
    assert d["engine_check"] is None
    assert "bench_serve.py" in blocks(res, Paragraph)[-1].text


def test_serving_shows_the_real_engine_checked_here(few_requests, data_dir):
    """A saved bench_serve comparison is shown as measured beside simulated, with its errors,
    the engine's own repeatability and the machine's unsteadiness."""
    from engine_records import record
    from memwall.records import engine_check

    engine_check.save(record())
    res = serving.SECTION.build(context())
    saved = res.data["engine_check"]
    assert saved["load_generator"] == "guidellm 0.8.1" and len(saved["workloads"]) == 2
    table = blocks(res, Table)[-1]
    assert not table.folded and "measured" in table.caption and "simulated" in table.caption
    assert [r["mix"] for r in table.rows] == ["short", "long"]
    w = engine_check.load().workloads[0]
    assert table.rows[0]["ttft_m"] == w.measured.ttft_p50
    assert table.rows[0]["ttft_s"] == w.simulated.ttft_p50
    assert table.rows[0]["tpot_e"] == w.error.tpot_p50
    text = blocks(res, Paragraph)[-1].text
    s = engine_check.load().summary
    for v in (s.ttft_p50, s.tpot_p50, s.e2e_p50, s.throughput):
        assert serving.pct(v) in text
    assert "2026-12-07" in text and "not steady" in text and serving.pct(0.55) in text
    figs = blocks(res, Figure)
    assert [f.key for f in figs] == ["serving", "serving-engine"]
    f = figs[1]
    assert "measured" in f.caption and "simulated" in f.caption and "seconds" in f.caption
    assert f.alt and serving.pct(s.tpot_p50) in f.alt
    points = [t for t in f.figure.data if t.mode == "markers"]
    assert [t.name for t in points] == ["TTFT p50", "TPOT p50", "E2E p50"]
    assert list(points[1].x) == [wl.measured.tpot_p50 for wl in engine_check.load().workloads]
    assert list(points[1].y) == [wl.simulated.tpot_p50 for wl in engine_check.load().workloads]
    json.dumps(section_json(res))


def test_serving_kv_wall_is_named(few_requests):
    """Where the KV cache fills when every request is queued, the section says it is the wall;
    where it stays mostly free, the step time."""
    cap = {
        "kv_cache": {"bytes": 2.0**30, "tokens": 8192},
        "workload": {"mean_input_len": 1024.0, "mean_output_len": 128.0},
        "kv_utilization": {"max": 0.97, "mean": 0.7},
        "limits": {"max_seqs": 1024},
        "mean_batch_size": 6.5,
        "busy_fraction": 1.0,
        "preemptions": 3,
    }
    s = serving.saturation(cap)
    assert s["limit"] == "kv_cache" and s["sequences_that_fit"] == 8192 // 1152
    free = {**cap, "kv_utilization": {"max": 0.2, "mean": 0.1}, "preemptions": 0}
    assert serving.saturation(free)["limit"] == "compute"


def test_serving_picks_llama_and_an_accelerator():
    ctx = context(models=("gpt2", "llama-3-8b"), devices=("a100-sxm-80gb", DEVICE))
    assert serving.pick_model(ctx) == "llama-3-8b" and serving.pick_device(ctx) == DEVICE
    ctx = context(models=("gpt2", "llama-tiny"), devices=("a100-sxm-80gb",))
    assert serving.pick_model(ctx) == "gpt2" and serving.pick_device(ctx) == "a100-sxm-80gb"


def test_serving_and_energy_refuse_without_decoder_or_accelerator():
    """Not built, with the reason (the builder turns MemwallError into the section's note)."""
    for sec in (serving.SECTION, energy.SECTION):
        with pytest.raises(MemwallError, match="decode"):
            sec.build(context(models=("bert-base",)))
        ctx = context()
        ctx.devices = {}  # e.g. only this machine's measured roofline
        with pytest.raises(MemwallError, match="accelerator"):
            sec.build(ctx)


def test_serving_model_argument_is_the_config(tmp_path):
    """A test-supplied config reaches memwall.api.serve as a config.json with the same
    content (a preset goes by its name)."""
    ctx = context(models=("<b>/evil", "gpt2"))
    ctx.options.configs["<b>/evil"] = CONFIGS["gpt2"]
    with serving.model_argument(ctx, "<b>/evil") as arg:
        assert Path(arg).is_file() and json.loads(Path(arg).read_text()) == CONFIGS["gpt2"]
        assert Path(arg).name == "b_evil.json"
    assert not Path(arg).exists()
    with serving.model_argument(ctx, "llama-3-8b") as arg:
        assert arg == "llama-3-8b"


# ---------------------------------------------------------------- energy


def test_energy_table_is_energy_shares():
    ctx = context()
    res = energy.SECTION.build(ctx)
    d = res.data
    assert d["models"] == ["gpt2", "llama-tiny"] and d["device"] == DEVICE
    tables = blocks(res, Table)
    assert len(tables) == 1 and tables[0].folded
    rows = list(tables[0].rows)
    assert rows == d["rows"] and len(rows) == 2 * len(BATCHES) * len(VARIANTS)
    for m in d["models"]:
        spec = model_spec(ctx, m)
        want = energy_shares(spec, DEVICE, context=min(2048, spec.max_positions - 1))
        got = [r for r in rows if r["model"] == m]
        assert [r["j_per_token"] for r in got] == list(want["j_per_token"])
        assert [r["bytes_share_dynamic"] for r in got] == list(want["bytes_share_dynamic"])
        assert [r["static_share"] for r in got] == list(want["static_share"])
        for r in got:
            assert r["fits"] is True and r["footprint_bytes"] > 0  # tiny models fit an H100
            parts = r["compute_j_per_token"] + r["bytes_j_per_token"] + r["static_j_per_token"]
            assert math.isclose(parts, r["j_per_token"], rel_tol=1e-9)
    head = [r for r in rows if r["model"] == "gpt2" and r["variant"] == VARIANTS[0][1]]
    text = blocks(res, Paragraph)[0].text
    assert f"{head[0]['j_per_token']:.3g} J" in text and f"{head[-1]['j_per_token']:.3g} J" in text
    assert "predicted" in text
    assert all(c.unit == "J/token" for c in tables[0].columns if c.key.endswith("_per_token"))
    check_figures(res, "predicted", "J/token")
    # the section says how far the model is from published measurements: bench_energy's numbers
    t = compare().table
    check = t[t["role"] == "check"]
    v = d["validation"]
    assert v["check_rows"] == len(check) >= 20
    assert v["check_median_abs_error"] == check["error"].abs().median()
    sweeps = (t.groupby("series").size() >= 2).sum()  # a trend needs two batches
    assert v["trend_sweeps_right"] <= v["trend_sweeps"] == sweeps
    assert v["measured_falling_sweeps"] <= v["trend_sweeps"]
    said = blocks(res, Paragraph)[1].text
    assert f"{len(check)} rows that chose no value" in said
    assert f"{v['check_median_abs_error']:.1%}" in said and "B200" in said


def test_energy_names_what_does_not_fit():
    """A batch whose weights and KV cache exceed the device is still priced, marked as not
    fitting (open marker, `fits` False, a note)."""
    ctx = context(models=("mixtral-8x7b",))
    res = energy.SECTION.build(ctx)
    rows = res.data["rows"]
    assert res.data["does_not_fit"] == ["mixtral-8x7b"]
    bf16 = [r for r in rows if r["variant"] == VARIANTS[0][1]]
    assert all(r["fits"] is False for r in bf16)  # 47B parameters in bf16 > 80 GB
    assert any(r["fits"] for r in rows if r["variant"] == VARIANTS[3][1])  # int4 fits
    assert any("do not fit" in n for n in res.notes)


# ---------------------------------------------------------------- remedies


def fake_result(measured: bool) -> dict:
    rows = []
    for i, (m, b, ppl) in enumerate(
        [("fp32", 4e6, 7.6), ("int8", 1.2e6, 7.61), ("int4:32", 7e5, 7.65), ("bf16", 2e6, 7.7)]
    ):
        r = {
            "method": m, "weights_real": b, "footprint_reduction": 4e6 / b, "perplexity": ppl,
            "perplexity_change": ppl / 7.6 - 1, "speedup_predicted": 4e6 / b,
            "pareto": m != "bf16",
        }  # fmt: skip
        if measured:
            r["latency_measured"] = 1e-3 * (1 + i / 10)
            r["speedup_measured"] = 1 / (1 + i / 10)
        rows.append(r)
    res = {"model": "stdlib-gpt", "phase": "decode", "context": 128, "threads": 1}
    from memwall.compress.claims import remedy_claims

    return {**res, "measured": measured, "rows": rows, "claims": remedy_claims(rows)}


def test_remedies_marks_a_busy_machine(monkeypatch):
    """Latencies timed while others kept the CPUs busy are marked on every timed row, in the
    prose and the caption; a calm run is marked clean."""
    ctx = context(measure=True)
    busy = ["other processes kept 1.2 of 2 CPUs busy while it was measured (limit 0.5)"]
    monkeypatch.setattr(remedies, "timed_sweep", lambda m, q, meas: (fake_result(True), busy))
    res = remedies.SECTION.build(ctx)
    rows = res.data["rows"]
    assert res.data["noisy"] and all(r["noisy_row"] for r in rows)
    assert all(r["mark"].startswith(remedies.MARK) for r in rows)
    assert remedies.MARK in blocks(res, Paragraph)[0].text
    assert remedies.MARK in blocks(res, Figure)[0].caption
    monkeypatch.setattr(remedies, "timed_sweep", lambda m, q, meas: (fake_result(True), []))
    res = remedies.SECTION.build(ctx)
    assert not any(r["noisy_row"] for r in res.data["rows"])
    assert {r["mark"] for r in res.data["rows"]} == {"clean"}
    check_figures(res, "measured", "MiB", "ms per token")
    fig = blocks(res, Figure)[0].figure
    assert len(fig.data) == 4  # fp32 / bf16 and quantised, in two panels
    assert {t.name for t in fig.data} == {"fp32 / bf16", "quantised"}
    hover = [(c[0], c[5]) for t in fig.data for c in t.customdata]
    marks = [(r["method"], "Pareto-optimal" if r["pareto"] else "dominated") for r in rows]
    assert sorted(hover) == sorted(marks * 2)
    filled = {
        c[0]: sym == "circle"
        for t in fig.data
        for c, sym in zip(t.customdata, t.marker.symbol, strict=True)
    }
    assert filled == {r["method"]: r["pareto"] for r in rows}  # filled: Pareto-optimal


def test_remedies_default_leaves_out_unclaimed_prunes(monkeypatch):
    """The default report runs compress' sweep without the two pruned variants no claim reads;
    --quick runs compress.pareto on the tiny model; --no-measure times nothing."""
    import memwall.compress as compress

    seen = {}

    def fake_run(model, methods, measure, threads=1):
        seen.update(model=model, methods=methods, measure=measure, threads=threads)
        return fake_result(measure)

    def fake_pareto(model, measure=True, threads=1):
        seen.update(model=model, methods="all", measure=measure)
        return fake_result(measure)

    monkeypatch.setattr(compress, "run", fake_run)
    monkeypatch.setattr(compress, "pareto", fake_pareto)
    remedies.SECTION.build(context(quick=False))
    assert seen["model"] == remedies.MODEL and not seen["measure"]
    assert not set(remedies.LEFT_OUT) & set(seen["methods"])
    assert {"int4:128", "prune-structured:0.3", "prune-unstructured:0.8"} <= set(seen["methods"])
    res = remedies.SECTION.build(context())
    assert seen == {**seen, "model": remedies.QUICK_MODEL, "methods": "all", "measure": False}
    assert all(r["mark"] is None for r in res.data["rows"])  # nothing timed: no noise cell
    assert "Nothing was timed" in blocks(res, Paragraph)[0].text
    assert len(blocks(res, Figure)[0].figure.data) == 2  # one panel: no latency


@pytest.mark.slow
def test_remedies_rows_are_compress_pareto(tmp_path, monkeypatch):
    """Built for real on the tiny model trained here (a private cache; nothing timed): the rows,
    the Pareto marks and the claims are compress.pareto's, whose pruned variants come from the
    cache the section filled."""
    from memwall.compress import pareto, remedy_claims
    from memwall.records.store import ENV_CACHE_DIR

    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path))
    res = remedies.SECTION.build(context())
    want = pareto(remedies.QUICK_MODEL, measure=False)
    got = res.data["rows"]
    assert [r["method"] for r in got] == [r["method"] for r in want["rows"]]
    for g, w in zip(got, want["rows"], strict=True):
        assert g["weights_real"] == w["weights_real"] and g["pareto"] == w["pareto"]
        assert g["perplexity"] == pytest.approx(w["perplexity"], rel=1e-9)
    assert res.data["claims"] == remedy_claims(want["rows"])
    # the section fine-tuned the pruned variants and cached them; pareto loaded them, and its
    # perplexities above equal the fresh ones
    pruned = [r["method"] for r in got if r["method"].startswith("prune")]
    assert res.data["from_cache"] == [] and want["from_cache"] == pruned
    assert any(f"run now and cached: {', '.join(pruned)}" in n for n in res.notes)
    assert remedies.cache_note(want) == [
        f"pruned variants' recovery fine-tunes: from the cache: {', '.join(pruned)} "
        "(memwall's cache, compress/variants/; delete it to fine-tune again)"
    ]
    claims = blocks(res, Table)[1]
    assert [c["verdict"] for c in claims.rows] == [c["verdict"] for c in res.data["claims"]]
    check_figures(res, "measured", "MiB")


# ---------------------------------------------------------------- parallel headline


def test_the_headline_sets_nvidias_measured_run_beside_memwalls_prediction():
    """The report's headline training layout comes with the published run of the same
    architecture, device and precision: what it measured, what memwall predicts for it."""
    from memwall.report.sections import parallel

    res = parallel.SectionResult()
    out = parallel.SECTION._headline(context(), res)
    pub = out["published"][0]
    assert pub["id"] == "dgxc-llama31-70b-h100-64" and pub["published"] == 0.541
    texts = [b.text for b in blocks(res, Paragraph)]
    assert any("Measured by others: dgxc-llama31-70b-h100-64" in t and "54.1%" in t for t in texts)
    # that run chose the fitted whole-step kernel rate: the report says the match is in sample
    assert pub["fitted"] and any("in sample" in t for t in texts if "Measured by others" in t)
    json.dumps(out)
