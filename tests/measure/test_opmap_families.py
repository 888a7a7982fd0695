"""Each family's profiler op map (families.json `opmap`) fits the model transformers builds.

The profiler labels modules by path (`memwall.measure.opmap`); a pattern that matches nothing, a
Linear whose time lands in another operation's range, or a name the closed form has no row for
would silently misattribute measured time. Built from each preset's config shrunk to a few
narrow layers (the calibration's tiny config), on the CPU: small, a second or so each.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from memwall.families import family_names, get_family  # noqa: E402
from memwall.measure.models import tiny_config  # noqa: E402
from memwall.measure.opmap import _compiled, labelled_modules, rule_for  # noqa: E402
from memwall.predict.calibrated import FRAMEWORK, GROUPS, closed_table  # noqa: E402
from memwall.spec import Workload, load_model, preset_config, preset_names  # noqa: E402
from memwall.trace import build_model  # noqa: E402

# Families whose op map is not written yet: the profiler names all their time `framework`.
NO_OPMAP = {"t5": "encoder-decoder, added this session; its op map is still to be written"}
# Names the profiler gives ranges of its own (the cache update, the rotary function)
SPECIAL = {FRAMEWORK, "rope", "kv_cache_write"}


def _by_family() -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for p in preset_names():
        out[load_model(p).family].append(p)
    return dict(out)


PRESETS = _by_family()
MAPPED = sorted(f for f in PRESETS if f not in NO_OPMAP)


def _tiny_model(preset: str):
    """The preset's architecture at width 64, with one MoE layer past any dense first layers."""
    spec = load_model(preset)
    n = spec.dense_layers + 1 if spec.is_moe else 2
    cfg = tiny_config(spec, preset_config(preset), n)
    if "layer_types" in cfg:  # per-layer attention kinds: keep as many as there are layers
        cfg["layer_types"] = cfg["layer_types"][:n]
    cfg["pad_token_id"] = 0  # Phi-3's default pad id lies outside the tiny vocabulary
    return spec, build_model(cfg, torch.float32, "cpu")


_BUILT: dict[str, tuple] = {}


def _built(preset: str):
    if preset not in _BUILT:
        _BUILT[preset] = _tiny_model(preset)
    return _BUILT[preset]


def _table(spec) -> dict[str, str]:
    """The closed form's op names and kinds, as the profile's prediction has them."""
    wl = Workload("decode" if spec.is_decoder else "encode", 1, 16)
    df = closed_table(spec, wl, "fp32")
    return dict(zip(df["name"], df["kind"], strict=True))


def _owner(path: str, mods: dict, rules: dict):
    """The labelled module whose range holds `path`'s time: itself or its nearest ancestor."""
    while path not in rules and path:
        path = path.rsplit(".", 1)[0] if "." in path else ""
    return rules.get(path)


@pytest.mark.parametrize("family", MAPPED)
def test_every_pattern_matches_a_module(family):
    """Across the presets that share this op map, every pattern labels some module."""
    opmap = get_family(family).opmap
    sharing = [f for f in MAPPED if get_family(f).opmap == opmap]
    paths = [n for f in sharing for p in PRESETS[f] for n, _ in _built(p)[1].named_modules()]
    dead = [pat.pattern for pat, _ in _compiled(family) if not any(pat.match(x) for x in paths)]
    assert dead == [], f"{family}: patterns that match no module of {sharing}"


@pytest.mark.parametrize("preset", [p for f in MAPPED for p in PRESETS[f]])
def test_op_names_are_rows_of_the_closed_form(preset):
    spec, model = _built(preset)
    names = set()
    for r in labelled_modules(model, spec.family).values():
        names |= {r.op, r.gap_default, *(n for _, n in r.gaps)} - {None}
    table = _table(spec)
    assert names - set(table) - set(GROUPS) - SPECIAL == set()


@pytest.mark.parametrize("preset", [p for f in MAPPED for p in PRESETS[f]])
def test_every_weight_lands_in_its_own_operation(preset):
    """A module holding weights is labelled or inside a module labelled with one operation,
    and a Linear or Embedding lands in a matmul / embedding / MoE row (never `attention`)."""
    spec, model = _built(preset)
    rules = labelled_modules(model, spec.family)
    mods = dict(model.named_modules())
    table = _table(spec)
    wrong = []
    for path, mod in mods.items():
        if list(mod.children()) or not list(mod.parameters(recurse=False)):
            continue
        owner = _owner(path, mods, rules)
        if owner is None or owner.op is None:
            wrong.append((path, "unlabelled"))
        elif isinstance(mod, torch.nn.Linear | torch.nn.Embedding):
            kind = "moe" if owner.op in GROUPS else table.get(owner.op)
            if kind not in ("matmul", "embedding", "moe"):
                wrong.append((path, owner.op))
    assert wrong == []


def test_families_without_an_op_map_are_the_known_ones():
    """A new family with a preset must bring its op map (or be listed here, with why)."""
    empty = {f for f in family_names() if f in PRESETS and not get_family(f).opmap}
    assert empty == set(NO_OPMAP)


def test_rule_for_names_the_mla_projections():
    """DeepSeek-V3's low-rank query and latent KV projections are ops of their own."""
    names = {
        rule_for("deepseek_v3", f"model.layers.3.self_attn.{m}").op
        for m in ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj")
    }
    assert names == {"q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj"}
