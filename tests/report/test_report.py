"""The HTML report, built from small fixed inputs (a saved fake measurement of this machine,
tiny stand-ins for the case study's models, the quick calibration), checked as data and in a
real headless Chromium: no console errors, no network, every section and figure, hover."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path

import pytest

import memwall
from memwall.count import op_table, totals
from memwall.hardware import save_measurement
from memwall.memory import inference_memory
from memwall.report import ReportOptions, build_report, registered
from memwall.report.fmt import cell
from memwall.spec import Workload, parse_precision, spec_from_config
from memwall.trends import load_dataset, summarize
from tiny_configs import REPORT_MODELS

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

EVIL = "<img src=x onerror=alert(1)><script>alert(1)</script>"
TINY = REPORT_MODELS
CONFIGS = {**TINY, EVIL: TINY["gpt2"]}
MODELS = ("bert-base", "gpt2", EVIL)
DEVICES = ("local", "h100-sxm")


def fake_measurement() -> dict:
    """A measurement as `memwall measure` saves it (fixed numbers, dated now)."""
    return {
        "dram_bandwidth": 2.0e10,
        "peak_flops": {"fp32": 4.0e11, "bf16": 8.0e11, "int8": 1.6e12},
        "cache_levels": [{"name": "L1", "size": 32768.0, "bandwidth": 3.0e11}],
        "op_overhead": 2.0e-6,
        "gemv_bandwidth": 1.5e10,
        "notes": {},
        "metadata": {
            "cpu_model": "Test CPU <b>bold</b>",
            "threads": 1,
            "logical_cpus": 2,
            "mem_total": 8 * 2**30,
            "mode": "quick",
            "torch": "x",
            "numpy": "y",
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def options(out: Path) -> ReportOptions:
    return ReportOptions(
        out=str(out),
        quick=True,
        models=MODELS,
        devices=DEVICES,
        configs=CONFIGS,
        casestudy_lengths=(16, 32),
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMWALL_DATA_DIR", str(tmp_path_factory.mktemp("mwdata")))
    mp.setenv("MEMWALL_CALIBRATION", "quick")
    save_measurement(fake_measurement())
    yield
    mp.undo()


POLICY = "1 (the thread policy, spied)"


@pytest.fixture(scope="module")
def report(env, tmp_path_factory):
    torch = pytest.importorskip("torch")
    import memwall.measure.run as run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setattr(run, "auto_threads", lambda: (1, POLICY))  # what `memwall casestudy` uses
    out = tmp_path_factory.mktemp("report")
    try:
        done = build_report(options(out), show_progress=False)
    finally:
        torch.set_num_threads(threads)
        mp.undo()
    return done, json.loads((out / "results.json").read_text()), (out / "index.html").read_text()


def test_every_section_is_built_and_the_report_is_complete(report):
    done, res, html = report
    assert done.complete and res["complete"], res["stages"]
    assert set(res["sections"]) == {s.name for s in registered()}
    for name in res["sections"]:
        assert f'id="{name}"' in html
    assert res["machine"]["source"].startswith("saved measurement reused")
    assert "quick run" in html


def test_casestudy_ran_under_the_thread_policy_and_the_machine_was_checked(report):
    _, res, _ = report
    env = res["sections"]["casestudy"]["data"]["measured"]["environment"]
    assert env["threads"] == 1 and env["threads_choice"].startswith(POLICY)
    calm = res["machine"]["calm"]
    assert calm["checked"] and calm["wait_bound_s"] == 0  # --quick: no waiting
    assert {"first", "load_1min_after", "others_busy_cores_during", "fair"} <= set(calm)
    pe = res["sections"]["casestudy"]["data"]["prediction_error"]
    assert pe["all_rows"]["n"] == pe["clean"]["n"] + pe["noisy_excluded"] > 0


def test_user_strings_are_escaped(report):
    _, res, html = report
    assert "<script>alert(1)" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Test CPU &lt;b&gt;bold&lt;/b&gt;" in html
    assert any(v["model"] == EVIL for v in res["sections"]["verdict"]["data"]["verdicts"])


def test_every_table_cell_shown_is_in_results_json(report):
    _, res, html = report
    html = html[html.index("<body>") :]  # not the inlined plotly.js
    n = 0
    for sec in res["sections"].values():
        for t in sec["tables"]:
            assert t["rows"], t["caption"]
            for row in t["rows"]:
                for c in t["columns"]:
                    n += 1
                    text = cell(row.get(c["key"]), c["format"], c["unit"])
                    assert _escape(text) in html, (t["caption"], c, text)
    assert n > 100


def _escape(s: str) -> str:
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )


def _analyze_time(tmp_path, model: str, **kw) -> float:
    """What `memwall analyze CONFIG --device ...` predicts by default for a tiny config."""
    cfg = tmp_path / f"{model}.json"
    cfg.write_text(json.dumps(TINY[model]))
    return memwall.analyze(str(cfg), **kw).payload["prediction"]["totals"]["time"]


def test_verdict_and_what_if_times_are_what_analyze_gives_by_default(report, tmp_path):
    _, res, _ = report
    verdicts = {
        (v["model"], v["device"]): v for v in res["sections"]["verdict"]["data"]["verdicts"]
    }
    for model, phase in (("gpt2", "decode"), ("bert-base", "encode")):
        for device in DEVICES:
            v = verdicts[(model, device)]
            want = _analyze_time(
                tmp_path, model, phase=phase, seq_len=v["seq_len"], precision="bf16", device=device
            )
            assert v["time"] == pytest.approx(want, rel=1e-9), (model, device)
            if device != "local":  # the spec-sheet roofline is shown as the bound it is
                assert v["bound_time"] < v["time_low"] <= v["time"] <= v["time_high"]
    rows = res["sections"]["whatif"]["data"]["gpt2"]["batch"]
    r = next(x for x in rows if x["device"] == "h100-sxm" and x["batch"] == 8)
    want = _analyze_time(
        tmp_path, "gpt2", phase="decode", batch=8, seq_len=r["context"], precision="bf16",
        device="h100-sxm",
    )  # fmt: skip
    assert r["time"] == pytest.approx(want, rel=1e-9)


def test_sample_numbers_match_the_library(report):
    _, res, _ = report
    gpt2 = spec_from_config(TINY["gpt2"], name="gpt2")
    bert = spec_from_config(TINY["bert-base"], name="bert-base")
    cs = res["sections"]["casestudy"]["data"]["rows"]
    row = next(x for x in cs if x["model"] == "bert-base" and x["length"] == 32)
    t = totals(op_table(bert, Workload("encode", 1, 32), convention="paper"))
    assert row["flops"] == pytest.approx(t["flops"]) and row["mops"] == pytest.approx(t["bytes"])
    serve = res["sections"]["memory"]["data"]["serving"]
    s = next(x for x in serve if x["model"] == "gpt2" and x["precision"] == "int4")
    fp = inference_memory(gpt2, Workload("decode", 1, 63), parse_precision("int4"))
    assert s["total"] == pytest.approx(fp.total)
    fits = {f["series"]: f for f in summarize(load_dataset("paper"))["fits"]}
    claims = {c["id"]: c for c in res["sections"]["claims"]["data"]["claims"]}
    assert claims["params"]["ours"] == pytest.approx(fits["transformer_params"]["growth_per_2yr"])


def test_numbers_in_sentences_come_from_results(report):
    _, res, html = report
    v = res["sections"]["verdict"]["data"]["verdicts"][0]
    assert cell(v["time"], "seconds") in html
    assert f"{v['intensity']:.3g} FLOP/B" in html


def test_interrupted_run_writes_finished_sections_marked_incomplete(env, tmp_path, monkeypatch):
    trends = next(s for s in registered() if s.name == "trends")

    def stop(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(trends, "build", stop)
    opts = ReportOptions(
        out=str(tmp_path),
        quick=True,
        models=("gpt2",),
        devices=("h100-sxm",),
        configs=CONFIGS,
        measure=False,
    )
    done = build_report(opts, show_progress=False)
    res = json.loads((tmp_path / "results.json").read_text())
    html = (tmp_path / "index.html").read_text()
    assert not done.complete and not res["complete"]
    assert "memory" in res["sections"] and "trends" in res["sections_missing"]
    assert 'id="incomplete"' in html and "Incomplete report" in html
    assert re.search(r'id="trends" class="report-section missing"', html)


def test_a_failing_section_is_reported_and_the_others_are_built(env, tmp_path, monkeypatch):
    trends = next(s for s in registered() if s.name == "trends")

    def broken(ctx):
        raise ValueError("boom")

    monkeypatch.setattr(trends, "build", broken)
    opts = ReportOptions(
        out=str(tmp_path),
        quick=True,
        models=("gpt2",),
        devices=("h100-sxm",),
        configs=CONFIGS,
        measure=False,
    )
    done = build_report(opts, show_progress=False)
    res = json.loads((tmp_path / "results.json").read_text())
    assert not done.complete and not done.interrupted and done.failed == ["trends"]
    assert "internal error ValueError: boom" in res["sections"]["trends"]["notes"][0]
    assert res["sections"]["method"]["complete"] and res["sections_missing"] == []


# ---------------------------------------------------------------- in a real browser


def test_page_in_chromium(report, browser, open_page):
    done, res, _ = report
    index = done.out / "index.html"
    open_page(browser, index)
    severe = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert severe == []
    urls = []
    for e in browser.get_log("performance"):
        msg = json.loads(e["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    assert urls and all(u.startswith(("file:", "data:", "blob:")) for u in urls), urls
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(u.startswith(("file:", "data:", "blob:")) for u in resources), resources
    for name in res["sections"]:
        assert browser.find_element("id", name).is_displayed()
    plots = browser.find_elements("css selector", ".js-plotly-plot")
    n_figs = sum(len(s["figures"]) for s in res["sections"].values())
    assert len(plots) == n_figs > 5
    cs = browser.find_element("id", "casestudy")  # test_report_length counts on this bound
    assert cs.size["height"] < 1500
    for p in plots:
        assert p.size["width"] > 100 and p.size["height"] > 100, p.get_attribute("id")
    Path("build").mkdir(exist_ok=True)
    browser.save_screenshot("build/test_report.png")


def test_hovering_a_roofline_point_shows_its_numbers(report, browser, open_page):
    from selenium.webdriver.common.action_chains import ActionChains

    done, _, _ = report
    open_page(browser, done.out / "index.html")
    fig = browser.find_element("id", "fig-roofline-local")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", fig)
    point = fig.find_elements("css selector", ".scatterlayer .trace .points path")[0]
    ActionChains(browser).move_to_element(point).perform()
    text = ""
    for _ in range(50):
        text = " ".join(e.text for e in fig.find_elements("css selector", ".hoverlayer text"))
        if text:
            break
        time.sleep(0.1)
    for word in ("FLOPs:", "bytes:", "intensity:", "predicted time:", "bound:"):
        assert word in text, text


def test_interrupted_report_opens_and_says_so(env, tmp_path, monkeypatch, browser, open_page):
    whatif = next(s for s in registered() if s.name == "whatif")
    monkeypatch.setattr(whatif, "build", lambda ctx: (_ for _ in ()).throw(KeyboardInterrupt()))
    opts = ReportOptions(
        out=str(tmp_path),
        quick=True,
        models=("gpt2",),
        devices=("h100-sxm",),
        configs=CONFIGS,
        measure=False,
    )
    build_report(opts, show_progress=False)
    open_page(browser, tmp_path / "index.html")
    assert "Incomplete report" in browser.find_element("id", "incomplete").text
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []


def test_first_screen_holds_the_verdict_figure_and_its_sentences(report, browser, open_page):
    """At 1280 x 900, before any scrolling: the verdict's figure and its three sentences."""
    done, res, _ = report
    open_page(browser, done.out / "index.html")
    assert browser.execute_script("return [window.innerWidth, window.innerHeight]") == [1280, 900]
    fig = browser.find_element("css selector", "#verdict #fig-verdict")
    leads = browser.find_elements("css selector", "#verdict p.lead")
    assert len(leads) == 3
    assert leads[0].text.startswith("Memory-bound in their headline workload")
    assert leads[2].text.startswith("What helps most")
    for el in (fig, *leads):
        top, bottom = browser.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.top, r.bottom]", el
        )
        assert 0 <= top and bottom <= 900, (el.tag_name, top, bottom)
    assert fig.size["height"] > 150
    v = res["sections"]["verdict"]["data"]["verdicts"][0]  # the cells are the predictions
    assert cell(v["time"], "seconds") in fig.text


def _paragraphs(html: str) -> list[str]:
    texts = re.findall(r"<p[^>]*>(.*?)</p>", html, flags=re.S)
    return [re.sub(r"<[^>]+>", "", t).strip() for t in texts if t.strip()]


def test_no_two_paragraphs_differ_only_in_numbers(report):
    _, _, html = report
    seen: dict[str, str] = {}
    for p in _paragraphs(html):
        shape = re.sub(r"[-+]?\d[\d.,]*(e[-+]?\d+)?", "#", p)
        assert shape not in seen, f"{seen.get(shape)!r} and {p!r} differ only in numbers"
        seen[shape] = p
    assert len(seen) > 10


def test_every_figure_has_a_caption_and_a_text_alternative(report, browser, open_page):
    done, res, _ = report
    open_page(browser, done.out / "index.html")
    figures = browser.find_elements("css selector", "figure.figure")
    assert len(figures) == sum(len(s["figures"]) for s in res["sections"].values())
    for f in figures:
        plot = f.find_element("css selector", ".plot")
        assert plot.get_attribute("role") == "img"
        assert len(plot.get_attribute("aria-label") or "") > 20, plot.get_attribute("outerHTML")[
            :80
        ]
        assert len(f.find_element("css selector", "figcaption").text) > 20


def test_the_contents_stay_visible_while_reading(report, browser, open_page):
    done, res, _ = report
    open_page(browser, done.out / "index.html")
    toc = browser.find_element("id", "toc")
    links = [a.get_attribute("href").rsplit("#", 1)[1] for a in toc.find_elements("tag name", "a")]
    assert links == list(res["sections"])  # every section, in page order
    browser.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    assert browser.execute_script("return window.scrollY") > 1000
    top = browser.execute_script("return arguments[0].getBoundingClientRect().top", toc)
    assert toc.is_displayed() and top == 0
