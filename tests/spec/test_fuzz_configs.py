"""Random configs for every supported family: a spec with finite, non-negative counts and
memory, or one MemwallError line; nothing else (issue 10)."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memwall.count import op_table, totals
from memwall.errors import MemwallError
from memwall.families import family_names, get_family
from memwall.memory import inference_memory, training_memory
from memwall.spec import Workload, parse_precision, preset_config, preset_names, spec_from_config

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

BF16 = parse_precision("bf16")
INT4 = parse_precision("4/16/8")
# one bundled config per family: the starting point of every mutation
BASE = {}
for _name in preset_names():
    _cfg = preset_config(_name)
    BASE.setdefault(_cfg["model_type"], _cfg)
FAMILIES = sorted(BASE)
EXTRA_KEYS = ["model_type", "architectures", "head_dim", "layer_types", "rope_scaling"]


def _keys(family: str) -> list[str]:
    fam = get_family(family)
    keys = {k for f in fam.fields.values() for k in f.keys}
    return sorted(keys | set(BASE[family]) | set(EXTRA_KEYS))


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.integers(1, 5000),
    st.integers(-(2**80), 2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e400, -1e400, 1e-300, 0.5, 64.0, 1e6]),
    st.text(max_size=6),
    st.sampled_from(["gelu", "silu", "relu", "gelu_new", "16", "false", "true", "llama"]),
    st.lists(st.sampled_from(["full_attention", "sliding_attention", 1, "x"]), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.lists(st.integers(), max_size=2), max_size=2),
)


@st.composite
def configs(draw):
    family = draw(st.sampled_from(FAMILIES))
    cfg = dict(BASE[family])
    for key in draw(st.lists(st.sampled_from(_keys(family)), max_size=4)):
        if draw(st.booleans()):
            cfg.pop(key, None)
        else:
            cfg[key] = draw(JUNK)
    return cfg


def _finite_nonneg(x: float) -> bool:
    return math.isfinite(x) and x >= 0


def _check_spec(spec) -> None:
    wl = Workload("decode", 1, 64) if spec.is_decoder else Workload("encode", 1, 64)
    for prec in (BF16, INT4):
        t = totals(op_table(spec, wl, prec))
        assert all(_finite_nonneg(v) for v in t.values()), t
    inf = inference_memory(spec, wl, BF16)
    assert all(_finite_nonneg(r["bytes"]) for r in inf.rows()), inf.rows()
    tr = training_memory(spec, 1, 64, BF16)
    parts = (tr.peak, tr.weights, tr.gradients, tr.optimizer_state, tr.activations, tr.temporaries)
    assert all(_finite_nonneg(x) for x in parts), tr


@settings(
    max_examples=2000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(configs())
def test_random_configs_count_or_raise_one_line(cfg):
    try:
        spec = spec_from_config(cfg)
    except MemwallError as e:
        assert str(e) and "\n" not in str(e)
        return
    try:
        _check_spec(spec)
    except MemwallError as e:  # a valid spec may still be refused (e.g. too large a memory)
        assert str(e) and "\n" not in str(e)


def test_every_supported_family_is_fuzzed():
    assert set(FAMILIES) == set(family_names())


# ---------------------------------------------------------------- the CLI contract, sampled


def _cli_sample(n: int, seed: int = 10) -> list[dict]:
    rng = random.Random(seed)
    junk = [None, True, -1, 0, 7, 3.5, "abc", "16", [1], {"a": 1}, 10**30, 1e300]
    out = []
    for i in range(n):
        family = FAMILIES[i % len(FAMILIES)]
        cfg = dict(BASE[family])
        for key in rng.sample(_keys(family), rng.randint(0, 2)):
            cfg[key] = rng.choice(junk)
        out.append(cfg)
    return out


SAMPLE = _cli_sample(14)


@pytest.mark.parametrize("i", range(len(SAMPLE)))
def test_cli_sample_one_line_and_exit_2(tmp_path, i):
    p = tmp_path / "config.json"
    p.write_text(json.dumps(SAMPLE[i]))
    for cmd in (["analyze", str(p), "-f", "json"], ["memory", str(p), "-f", "json"]):
        r = subprocess.run(
            [sys.executable, "-m", "memwall", *cmd], capture_output=True, text=True, timeout=120
        )
        if r.returncode == 0:
            assert isinstance(json.loads(r.stdout), dict)
            continue
        assert r.returncode == 2, (cmd, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr and r.stdout == ""
