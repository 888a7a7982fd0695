"""memwall.compress on the tiny model trained here (seconds): accuracy, bytes, determinism."""

from __future__ import annotations

import hashlib
import json
import math
import os

import pytest
import torch

from memwall.compress import parse_method, remedy_claims, run
from memwall.compress.claims import claims_data
from memwall.compress.gpt import new_caches
from memwall.compress.methods import predicted, pruned_spec
from memwall.compress.prune import CSRLinear, prune_structured
from memwall.compress.quant import Int4WeightOnlyLinear, Int8WeightOnlyLinear
from memwall.compress.run import mark_pareto
from memwall.compress.train import get_recipe, load_trained, recipe_spec
from memwall.errors import MemwallError
from memwall.records.store import ENV_CACHE_DIR
from memwall.spec import Workload

# the whole module is `slow`: over a few seconds in all (`make test-fast` leaves it out)
pytestmark = pytest.mark.slow

TINY = "stdlib-gpt-tiny"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private cache folder holding the tiny model, trained once for the module."""
    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get(ENV_CACHE_DIR)
    os.environ[ENV_CACHE_DIR] = str(folder)
    trained = load_trained(TINY)
    yield folder, trained
    if before is None:
        os.environ.pop(ENV_CACHE_DIR, None)
    else:
        os.environ[ENV_CACHE_DIR] = before


@pytest.fixture(scope="module")
def results(cache):
    methods = ["int8", "int4:32", "prune-unstructured:0.3", "prune-unstructured:0.9"]
    methods += ["prune-structured:0.5", "int8-dynamic"]
    return {r["method"]: r for r in run(TINY, methods)["rows"]}


def test_cache_is_checked_and_training_reproducible(cache):
    """A cache hit gives the same model; a manifest whose checksum does not match the weights
    is not trusted: the model is trained again, from the seed, to the same held-out loss."""
    _, first = cache
    assert math.isfinite(first.heldout_loss) and first.heldout_loss < math.log(256)
    hit = load_trained(TINY)
    assert hit.cached and hit.heldout_loss == first.heldout_loss
    manifest = first.path.with_suffix(".json")
    good = manifest.read_text()
    try:
        bad = json.loads(good)
        bad["weights_sha256"] = "0" * 64
        manifest.write_text(json.dumps(bad))
        again = load_trained(TINY)
        assert not again.cached
        assert abs(again.heldout_loss - first.heldout_loss) < 1e-6
    finally:
        manifest.write_text(good)


def test_model_matches_memwall_count(cache):
    _, t = cache
    assert sum(p.numel() for p in t.model.parameters()) == t.spec.n_params()


def test_int8_weight_only_costs_under_two_percent(results):
    assert abs(results["int8"]["perplexity_change"]) < 0.02


def test_heavier_pruning_hurts_more(results):
    p30 = results["prune-unstructured:0.3"]["perplexity"]
    p90 = results["prune-unstructured:0.9"]["perplexity"]
    assert p90 > p30


def test_int4_bytes_within_two_percent_of_count(results):
    r = results["int4:32"]
    assert abs(r["weights_real"] / r["weights_count"] - 1) < 0.02
    assert abs(r["compressed_real"] / r["compressed_count"] - 1) < 0.02
    assert r["footprint_reduction"] > 3


def test_int8_and_pruned_bytes_match_count(results):
    for m in ("int8", "int8-dynamic", "prune-structured:0.5", "prune-unstructured:0.9"):
        assert abs(results[m]["weights_real"] / results[m]["weights_count"] - 1) < 0.02, m


def test_structured_pruning_makes_smaller_dense_model(cache):
    _, t = cache
    small = prune_structured(t.model, 0.5)
    assert sum(p.numel() for p in small.parameters()) == pruned_spec(t.spec, 0.5).n_params()
    caches = new_caches(small)  # decode still runs with the narrower heads
    with torch.no_grad():
        small(torch.zeros(1, 4, dtype=torch.long), caches)
        out = small(torch.zeros(1, 1, dtype=torch.long), caches, start=4)
    assert out.shape == (1, 1, 256)


def test_quantised_and_sparse_layers_compute_the_layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 96)
    x = torch.randn(5, 64)
    ref = lin(x).detach()

    def rel(y):
        return float((y.detach().float() - ref).norm() / ref.norm())

    assert rel(Int8WeightOnlyLinear(lin)(x.bfloat16())) < 0.02
    assert rel(Int4WeightOnlyLinear(lin, 32)(x.bfloat16())) < 0.15
    with torch.no_grad():
        lin.weight[lin.weight.abs() < 0.05] = 0
    ref = lin(x).detach()
    assert rel(CSRLinear(lin)(x)) < 1e-5


@pytest.mark.parametrize(
    "text,needle",
    [
        ("prune-structured:0", "between 0 and 1"),
        ("prune-unstructured:1.5", "between 0 and 1"),
        ("prune-unstructured:nan", "between 0 and 1"),
        ("prune-structured", "needs a fraction"),
        ("prune-structurd:0.3", "did you mean prune-structured"),
        ("quantize", "unknown method"),
        ("int3", "3-bit"),
        ("int4:48", "group size 48"),
        ("int8:64", "takes no argument"),
    ],
)
def test_bad_methods(text, needle):
    with pytest.raises(MemwallError, match=needle):
        parse_method(text)


def test_group_must_divide_width(cache):
    with pytest.raises(MemwallError, match="does not divide the layer width 64"):
        run(TINY, ["int4:128"])


def test_unstructured_prediction_counts_index_overhead():
    spec = recipe_spec("x", get_recipe(TINY))
    wl = Workload("decode", 1, 32)
    half = predicted(parse_method("prune-unstructured:0.5"), spec, wl)
    dense = predicted(parse_method("fp32"), spec, wl)
    assert half["weights_count"] > dense["weights_count"]  # 8 bytes per kept weight > 4 / 0.5
    assert predicted(parse_method("prune-unstructured:0.9"), spec, wl)["speedup_predicted"] > 1


def test_remedy_claims_verdicts():
    rows = [
        {"method": "fp32", "footprint_reduction": 1.0, "perplexity_change": 0.0},
        {"method": "int4:128", "footprint_reduction": 7.0, "speedup_measured": 1.0,
         "perplexity_change": 0.01},
        {"method": "prune-unstructured:0.8", "perplexity_change": 0.5},
    ]  # fmt: skip
    got = {c["id"]: c for c in remedy_claims(rows)}
    assert {c["id"] for c in claims_data()["claims"]} == set(got)
    assert got["int4-footprint"]["verdict"] == "holds"
    assert got["int4-latency"]["verdict"] == "does not hold here"
    assert got["int4-accuracy"]["verdict"] == "holds"
    assert got["unstructured-80"]["verdict"] == "does not hold here"
    assert got["structured-30"]["verdict"] == "not measured"
    assert all(c["source"] and c["cites"] for c in got.values())


def test_pareto_marks_dominated_rows():
    rows = [
        {"method": "a", "weights_real": 10, "perplexity": 5.0},
        {"method": "b", "weights_real": 5, "perplexity": 5.5},
        {"method": "c", "weights_real": 6, "perplexity": 6.0},
    ]
    mark_pareto(rows, measured=False)
    assert [r["pareto"] for r in rows] == [True, True, False]


def test_recovered_variants_are_cached_checked_and_equal_fresh(cache):
    """A pruned variant's recovery fine-tune is cached: the cached copy scores exactly as one
    fine-tuned now without the cache; a damaged file, or consistent weights of another variant
    under its key, is not trusted: the variant is fine-tuned again and rewritten."""
    from memwall.compress import variants
    from memwall.compress.train import heldout_loss, windows

    _, t = cache
    w = windows(t.corpus.heldout, t.recipe.seq_len, t.recipe.eval_windows)
    m = parse_method("prune-unstructured:0.6")
    fresh, hit = variants.recovered(t, m, use_cache=False)
    assert not hit
    key = variants.variant_key(t, m, variants.cache.state_digest(t.model))
    path, man_path = variants.paths(t, m, key)
    path.unlink(missing_ok=True)
    built, hit = variants.recovered(t, m)
    assert not hit and path.is_file() and man_path.is_file()
    loaded, hit = variants.recovered(t, m)
    assert hit
    assert heldout_loss(loaded, w) == heldout_loss(built, w) == heldout_loss(fresh, w)
    pairs = zip(loaded.state_dict().values(), fresh.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")  # damaged weights
    again, hit = variants.recovered(t, m)
    assert not hit and heldout_loss(again, w) == heldout_loss(fresh, w)
    assert variants.recovered(t, m)[1]  # rewritten whole
    other = variants.recovered(t, parse_method("prune-structured:0.5"), use_cache=False)[0]
    man = json.loads(man_path.read_text())
    torch.save(other.state_dict(), path)  # another variant's weights, sha256 updated to match
    man["weights_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    man_path.write_text(json.dumps(man))
    assert not variants.recovered(t, m)[1]
    # the key names everything the weights depend on: another base, seed or fraction differ
    assert variants.variant_key(t, m, "0" * 64) != key
    assert variants.variant_key(t, parse_method("prune-unstructured:0.6000001"), "0" * 64) != (
        variants.variant_key(t, m, "0" * 64)
    )


def test_run_says_which_variants_came_from_the_cache(cache):
    methods = ["prune-structured:0.25", "int8"]
    first = run(TINY, methods)
    second = run(TINY, methods)
    assert first["from_cache"] == [] and second["from_cache"] == ["prune-structured:0.25"]
    assert "run now: prune-structured:0.25" in first["notes"][-1]
    assert "from the cache: prune-structured:0.25" in second["notes"][-1]
    assert first["rows"] == second["rows"]  # same bytes, loss and perplexity
