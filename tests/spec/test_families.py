"""Every per-family fact lives in data/families.json; a new family is one entry there."""

from __future__ import annotations

import json
import re

import pytest

from memwall import families
from memwall.count import op_table, totals
from memwall.errors import MemwallError
from memwall.families import family_for_config, family_names, get_family
from memwall.spec import Workload, parse_precision, preset_config, preset_names, spec_from_config


@pytest.fixture
def fresh_families(monkeypatch):
    monkeypatch.delenv(families.ENV_VAR, raising=False)
    families.reload()
    yield
    monkeypatch.delenv(families.ENV_VAR, raising=False)
    families.reload()


NEW_FAMILY = {
    "families": {
        "tinylm": {
            "_source": "a test family: Llama's architecture under another model_type",
            "like": "llama",
            "model_types": ["tinylm"],
            "architectures": ["TinyLMForCausalLM"],
        }
    }
}
TINY = dict(
    model_type="tinylm", hidden_size=256, intermediate_size=688, num_hidden_layers=3,
    num_attention_heads=8, num_key_value_heads=2, vocab_size=4096, max_position_embeddings=1024,
)  # fmt: skip


def test_every_family_has_a_preset_and_a_source():
    fams = {spec_from_config(preset_config(n)).family for n in preset_names()}
    assert set(family_names()) <= fams
    for name in family_names():
        f = get_family(name)
        assert f.source and f.model_types and f.fields["d_model"].required


def test_opmap_patterns_compile_and_name_counted_ops():
    from memwall.count import REGISTRY

    counted = {op.name for op in REGISTRY.values()} | {"experts"}
    for name in family_names():
        for pattern, rule in get_family(name).opmap:
            re.compile(pattern.replace("{L}", r"(?P<layer>\d+)"))
            named = [rule.get("op"), rule.get("first_layer")]
            named += [n for _, n in rule.get("gaps", [])]
            assert {n for n in named if n} <= counted, (name, pattern, rule)


def test_a_family_added_from_a_data_file_is_counted(tmp_path, fresh_families):
    with pytest.raises(MemwallError, match="unsupported model_type 'tinylm'"):
        spec_from_config(TINY)
    p = tmp_path / "families.json"
    p.write_text(json.dumps(NEW_FAMILY))
    assert families.add_families(p) == ["tinylm"]
    s = spec_from_config(TINY, "tiny")
    assert s.family == "tinylm" and s.gated_mlp and s.norm == "rmsnorm"
    same = spec_from_config({**TINY, "model_type": "llama"}, "tiny")
    wl = Workload("decode", 1, 100)
    bf16 = parse_precision("bf16")
    a, b = totals(op_table(s, wl, bf16)), totals(op_table(same, wl, bf16))
    assert a == b and a["flops"] > 0
    assert s.n_params() == same.n_params()
    # the facts the memory model reads come from the same entry
    assert get_family("tinylm").fp32_softmax == get_family("llama").fp32_softmax


def test_families_file_from_the_environment(tmp_path, monkeypatch, fresh_families):
    p = tmp_path / "more.json"
    p.write_text(json.dumps(NEW_FAMILY))
    monkeypatch.setenv(families.ENV_VAR, str(p))
    families.reload()
    assert "tinylm" in family_names()
    assert family_for_config({"architectures": ["TinyLMForCausalLM"]}).name == "tinylm"


@pytest.mark.parametrize(
    "entry,msg",
    [
        ({"like": "nope", "model_types": ["x"]}, "unknown family 'nope'"),
        ({"like": "llama", "model_types": ["x"], "hidden_dropout": "yes"}, "hidden_dropout"),
        ({"like": "llama", "model_types": ["x"], "colour": 1}, "colour"),
    ],
)
def test_bad_family_entries_are_one_line_errors(tmp_path, fresh_families, entry, msg):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"families": {"x": {"_source": "test", **entry}}}))
    with pytest.raises(MemwallError, match=msg) as e:
        families.add_families(p)
    assert "\n" not in str(e.value)


def test_unknown_family_suggests_and_lists():
    with pytest.raises(MemwallError, match="did you mean llama"):
        get_family("lama")
