"""The published serving measurements (memwall/data/published_serving.csv) and the benchmark
that prices them (benchmarks/bench_serve_published.py): every row is complete and loadable,
and pricing a row gives a finite positive number. No assertion on the error: the benchmark
reports it."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from memwall.hardware import get_device
from memwall.precision import serving_precision
from memwall.spec import load_model_config

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_serve_published.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_serve_published", BENCH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while building the class
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def rows(bench):
    return bench.load_rows()


def _max_len(text: str) -> int:
    return int(text.split(":")[-1])


def test_csv_parses_with_enough_rows(rows):
    assert len(rows) >= 8
    assert len({r.id for r in rows}) == len(rows)
    assert sum(r.lengths_stated for r in rows) >= 8  # the headline needs reproducible rows


def test_every_row_is_sourced_and_positive(rows):
    for r in rows:
        assert "http" in r.source, r.id
        assert r.value > 0 and math.isfinite(r.value), r.id
        assert r.gpus >= r.tp >= 1 and r.gpus % r.tp == 0, r.id
        assert _max_len(r.input_len) >= 1 and _max_len(r.output_len) >= 1, r.id
        if not r.lengths_stated:
            assert r.assumed, f"{r.id}: lengths not stated, so `assumed` must say what was taken"


def test_every_model_device_and_precision_loads(bench, rows):
    for r in rows:
        spec, _ = load_model_config(bench.model_ref(r.model))
        total = _max_len(r.input_len) + _max_len(r.output_len)
        assert total <= spec.max_positions, f"{r.id}: {total} tokens > {r.model}'s context"
        assert get_device(r.device).name == r.device, r.id
        serving_precision(r.precision)


def test_bad_rows_are_refused(bench):
    text = (BENCH.parents[1] / "src" / "memwall" / "data" / "published_serving.csv").read_text()
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    good = next(csv.DictReader(io.StringIO("\n".join(lines))))

    def as_csv(*dicts: dict[str, str]) -> str:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(good))
        w.writeheader()
        w.writerows(dicts)
        return buf.getvalue()

    assert len(bench.parse_rows(as_csv(good))) == 1
    with pytest.raises(ValueError, match="source"):
        bench.parse_rows(as_csv({**good, "source": ""}))
    with pytest.raises(ValueError, match="positive"):
        bench.parse_rows(as_csv({**good, "value": "-1"}))
    with pytest.raises(ValueError, match="duplicate"):
        bench.parse_rows(as_csv(good, good))


@pytest.mark.parametrize(
    "row_id", ["trt017-mistral-7b-h100-tp1-1000-1000", "trtlat-l33-70b-h100-tp2-1000-1000"]
)
def test_pricing_a_small_row_is_finite_and_positive(bench, rows, row_id):
    row = next(r for r in rows if r.id == row_id)
    small = dataclasses.replace(row, requests=200)  # the row's shape, fewer requests: fast
    pred = bench.price(small)
    assert pred is not None and math.isfinite(pred) and pred > 0
