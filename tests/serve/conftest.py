"""Shared pieces of the serve tests: a small model's step model (built once), the library's
simulation on hand-made request lists, and the command line in-process."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from memwall.cli import main
from memwall.hardware import get_device
from memwall.serve.costmodel import build_step_model
from memwall.serve.workload import Requests
from memwall.spec import load_model_config, parse_precision


@pytest.fixture(scope="session")
def gpt2_model():
    spec, _ = load_model_config("gpt2")
    return build_step_model(
        spec, get_device("h100-sxm"), parse_precision("bf16"), "efficiency", "graph", 8192, 1024,
        256,
    )  # fmt: skip


def reqs(arrival, input_len, output_len, concurrency=0) -> Requests:
    n = max(len(np.atleast_1d(x)) for x in (arrival, input_len, output_len))

    def arr(x, dtype):
        a = np.atleast_1d(np.asarray(x, dtype=dtype))
        return np.full(n, a[0], dtype=dtype) if len(a) == 1 else a

    return Requests(arr(arrival, float), arr(input_len, np.int64), arr(output_len, np.int64),
                    concurrency)  # fmt: skip


def run_cli(*args):
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


def cli_json(*args):
    code, out, err = run_cli(*args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="session")
def make_reqs():
    """`make_reqs(arrival, input_len, output_len, concurrency=0)` -> Requests."""
    return reqs


@pytest.fixture(scope="session")
def serve_cli():
    """`serve_cli(*args)` -> (exit code, stdout, stderr), in this process."""
    return run_cli


@pytest.fixture(scope="session")
def serve_json():
    """`serve_json(*args)` -> the JSON object of `memwall ARGS --format json` (exit 0)."""
    return cli_json


@pytest.fixture(scope="session")
def spec_pair():
    """(target, draft) step models: gpt2-large verified, gpt2 drafting (same vocabulary)."""
    dev, prec = get_device("h100-sxm"), parse_precision("bf16")

    def build(name):
        spec, _ = load_model_config(name)
        return build_step_model(spec, dev, prec, "efficiency", "graph", 8192 + 3 * 256, 1024, 256)

    return build("gpt2-large"), build("gpt2")
