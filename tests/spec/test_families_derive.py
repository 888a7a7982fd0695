"""families.json `derive` rules: facts that depend on other config values live in the data.

Falcon's K/V heads and norms are the bundled case (tests/test_families_modern.py counts them);
these tests add families from a temporary data file to check the rule language itself.
"""

from __future__ import annotations

import json

import pytest

from memwall import families
from memwall.errors import MemwallError
from memwall.spec import spec_from_config


@pytest.fixture
def fresh_families(monkeypatch):
    monkeypatch.delenv(families.ENV_VAR, raising=False)
    families.reload()
    yield
    families.reload()


BASE = dict(hidden_size=256, num_attention_heads=8, num_hidden_layers=2, vocab_size=1000)


def _add(tmp_path, derive: list) -> None:
    doc = {
        "families": {
            "birdlm": {
                "_source": "a test family: Falcon with other derive rules",
                "like": "falcon",
                "model_types": ["birdlm"],
                "architectures": [],
                "derive": derive,
            }
        }
    }
    p = tmp_path / "families.json"
    p.write_text(json.dumps(doc))
    families.add_families(p)


def test_rules_apply_in_order_and_same_as_skips_null(tmp_path, fresh_families):
    _add(
        tmp_path,
        [
            {"when": {"multi_query": True}, "set": {"n_kv_heads": 1, "block_norms": 1}},
            {"set": {"block_norms": {"same_as": "parallel_norms"}}},
        ],
    )
    s = spec_from_config({**BASE, "model_type": "birdlm"})
    assert (s.n_kv_heads, s.block_norms) == (1, 1)  # parallel_norms null: left as set before
    s = spec_from_config({**BASE, "model_type": "birdlm", "num_ln_in_parallel_attn": 2})
    assert s.block_norms == 2
    s = spec_from_config({**BASE, "model_type": "birdlm", "multi_query": False})
    assert s.n_kv_heads == 8  # no rule matched: every head has its K/V


def test_a_refusing_rule_is_one_line(tmp_path, fresh_families):
    _add(tmp_path, [{"when": {"alibi": False, "multi_query": False}, "refuse": "no, because"}])
    spec_from_config({**BASE, "model_type": "birdlm"})
    with pytest.raises(MemwallError, match="^no, because$"):
        spec_from_config({**BASE, "model_type": "birdlm", "multi_query": False})


@pytest.mark.parametrize(
    "rule, name",
    [
        ({"when": {"multi_qeury": True}, "set": {"n_kv_heads": 1}}, "multi_qeury"),
        ({"set": {"n_kv_head": 1}}, "n_kv_head"),
    ],
)
def test_a_rule_naming_an_unknown_attribute_is_refused(tmp_path, fresh_families, rule, name):
    """A typo in the data must not silently never match, nor reach ModelSpec as a TypeError."""
    _add(tmp_path, [rule])
    with pytest.raises(MemwallError, match=name) as e:
        spec_from_config({**BASE, "model_type": "birdlm"})
    assert "\n" not in str(e.value)
