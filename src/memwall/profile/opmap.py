"""Per-operation time from torch.profiler, under memwall's operation names.

While profiling, every module that corresponds to a memwall operation (or holds some) is
wrapped in a `record_function` range named `mw:<module path>`; the KV-cache update and
(for rotary models) `apply_rotary_pos_emb` get ranges of their own. Each range's exclusive
time (its duration minus its labelled children) is attributed:
- a module that *is* an operation (`c_attn` -> qkv_proj, `ln_2` -> attn_add_norm, ...) gets all
  its exclusive time;
- a container (`transformer.h.3`, `BertSelfOutput`) splits its exclusive time into the gaps
  between its labelled children and names each gap by the child it follows: in a GPT-2 block
  the gap after `attn` is the residual add, part of `attn_add_norm`.
Time no rule names is `framework` (mask creation, cache bookkeeping, Python glue between
modules): reported, never hidden. Coverage = named time / profiled time of the model calls.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

FRAMEWORK = "framework"
PREFIX = "mw:"
KV_LABEL = "kv_cache_write"
ROPE_LABEL = "rope"
# Groups: one measured range that holds several closed-form operations.
GROUPS = {
    "experts": ("expert_gate", "expert_up", "expert_act_mul", "expert_down"),
}


@dataclass(frozen=True)
class Rule:
    """What a labelled module stands for: an op (`op`) or a container (`gaps`)."""

    op: str | None = None  # all exclusive time goes here
    gaps: tuple[tuple[str | None, str], ...] = ()  # (previous child attr or None, op name)
    gap_default: str = FRAMEWORK

    def gap_name(self, prev: str | None) -> str:
        if self.op is not None:
            return self.op
        for after, name in self.gaps:
            if after == prev:
                return name
        return self.gap_default


def _layer_norm_name(first_layer_name: str) -> Callable[[int | None], str]:
    """Pre-norm models: layer 0's first norm belongs to embed_norm, the others close the
    previous layer's MLP (mlp_add_norm), as the closed form counts them."""

    def f(layer: int | None) -> str:
        return first_layer_name if layer == 0 else "mlp_add_norm"

    return f


_L = r"(?P<layer>\d+)"

# (regex on the module path, rule or callable(layer) -> op name)
_GPT2 = [
    (r"", Rule(gaps=())),
    (r"transformer", Rule(gaps=(("wte", "embed"), ("wpe", "embed_norm")))),
    (r"transformer\.(wte|wpe)", Rule(op="embed")),
    (rf"transformer\.h\.{_L}", Rule(gaps=(("attn", "attn_add_norm"), ("mlp", "mlp_add_norm")))),
    (rf"transformer\.h\.{_L}\.ln_1", _layer_norm_name("embed_norm")),
    (rf"transformer\.h\.{_L}\.attn", Rule(op="attention")),
    (rf"transformer\.h\.{_L}\.attn\.c_attn", Rule(op="qkv_proj")),
    (rf"transformer\.h\.{_L}\.attn\.c_proj", Rule(op="o_proj")),
    (rf"transformer\.h\.{_L}\.ln_2", Rule(op="attn_add_norm")),
    (rf"transformer\.h\.{_L}\.mlp", Rule(op="act")),
    (rf"transformer\.h\.{_L}\.mlp\.c_fc", Rule(op="fc1")),
    (rf"transformer\.h\.{_L}\.mlp\.act", Rule(op="act")),
    (rf"transformer\.h\.{_L}\.mlp\.c_proj", Rule(op="fc2")),
    (r"transformer\.ln_f", Rule(op="mlp_add_norm")),
    (r"lm_head", Rule(op="lm_head")),
]

_BERT = [
    (r"", Rule()),
    (
        r"embeddings",
        Rule(
            gaps=(
                (None, "embed"),
                ("word_embeddings", "embed"),
                ("token_type_embeddings", "embed_norm"),
                ("position_embeddings", "embed_norm"),
            ),
            gap_default="embed_norm",
        ),
    ),
    (r"embeddings\.(word|position|token_type)_embeddings", Rule(op="embed")),
    (r"embeddings\.LayerNorm", Rule(op="embed_norm")),
    (r"encoder", Rule()),
    (rf"encoder\.layer\.{_L}", Rule()),
    (rf"encoder\.layer\.{_L}\.attention", Rule()),
    (rf"encoder\.layer\.{_L}\.attention\.self", Rule(op="attention")),
    (rf"encoder\.layer\.{_L}\.attention\.self\.query", Rule(op="q_proj")),
    (rf"encoder\.layer\.{_L}\.attention\.self\.key", Rule(op="k_proj")),
    (rf"encoder\.layer\.{_L}\.attention\.self\.value", Rule(op="v_proj")),
    (rf"encoder\.layer\.{_L}\.attention\.output", Rule(op="attn_add_norm")),
    (rf"encoder\.layer\.{_L}\.attention\.output\.dense", Rule(op="o_proj")),
    (rf"encoder\.layer\.{_L}\.attention\.output\.LayerNorm", Rule(op="attn_add_norm")),
    (rf"encoder\.layer\.{_L}\.intermediate", Rule(op="act")),
    (rf"encoder\.layer\.{_L}\.intermediate\.dense", Rule(op="fc1")),
    (rf"encoder\.layer\.{_L}\.intermediate\.intermediate_act_fn", Rule(op="act")),
    (rf"encoder\.layer\.{_L}\.output", Rule(op="mlp_add_norm")),
    (rf"encoder\.layer\.{_L}\.output\.dense", Rule(op="fc2")),
    (rf"encoder\.layer\.{_L}\.output\.LayerNorm", Rule(op="mlp_add_norm")),
    (r"pooler", Rule(op="pooler")),
]

_OPT = [
    (r"", Rule()),
    (r"model", Rule()),
    (r"model\.decoder", Rule(gaps=(("embed_positions", "embed_norm"),))),
    (r"model\.decoder\.(embed_tokens|embed_positions)", Rule(op="embed")),
    (
        rf"model\.decoder\.layers\.{_L}",
        Rule(
            gaps=(("self_attn", "attn_add_norm"), ("fc2", "mlp_add_norm"), ("activation_fn", "act"))
        ),
    ),
    (rf"model\.decoder\.layers\.{_L}\.self_attn_layer_norm", _layer_norm_name("embed_norm")),
    (rf"model\.decoder\.layers\.{_L}\.self_attn", Rule(op="attention")),
    (rf"model\.decoder\.layers\.{_L}\.self_attn\.(q|k|v)_proj", None),  # named by attr below
    (rf"model\.decoder\.layers\.{_L}\.self_attn\.out_proj", Rule(op="o_proj")),
    (rf"model\.decoder\.layers\.{_L}\.final_layer_norm", Rule(op="attn_add_norm")),
    (rf"model\.decoder\.layers\.{_L}\.fc1", Rule(op="fc1")),
    (rf"model\.decoder\.layers\.{_L}\.activation_fn", Rule(op="act")),
    (rf"model\.decoder\.layers\.{_L}\.fc2", Rule(op="fc2")),
    (r"model\.decoder\.final_layer_norm", Rule(op="mlp_add_norm")),
    (r"lm_head", Rule(op="lm_head")),
]

_LLAMA = [
    (r"", Rule()),
    (r"model", Rule()),
    (r"model\.embed_tokens", Rule(op="embed")),
    (r"model\.rotary_emb", Rule(op="rope")),
    (rf"model\.layers\.{_L}", Rule(gaps=(("self_attn", "attn_add_norm"), ("mlp", "mlp_add_norm")))),
    (rf"model\.layers\.{_L}\.input_layernorm", _layer_norm_name("embed_norm")),
    (rf"model\.layers\.{_L}\.self_attn", Rule(op="attention")),
    (rf"model\.layers\.{_L}\.self_attn\.(q|k|v)_proj", None),
    (rf"model\.layers\.{_L}\.self_attn\.o_proj", Rule(op="o_proj")),
    (rf"model\.layers\.{_L}\.post_attention_layernorm", Rule(op="attn_add_norm")),
    (rf"model\.layers\.{_L}\.mlp", Rule(op="act_mul")),
    (rf"model\.layers\.{_L}\.mlp\.(gate|up|down)_proj", None),
    (rf"model\.layers\.{_L}\.mlp\.act_fn", Rule(op="act_mul")),
    (r"model\.norm", Rule(op="mlp_add_norm")),
    (r"lm_head", Rule(op="lm_head")),
]

_MIXTRAL = [
    *[r for r in _LLAMA if not r[0].startswith(rf"model\.layers\.{_L}\.mlp")],
    (rf"model\.layers\.{_L}\.mlp", Rule(op="expert_combine")),
    (rf"model\.layers\.{_L}\.mlp\.gate", Rule(op="router")),
    (rf"model\.layers\.{_L}\.mlp\.experts", Rule(op="experts")),
]

RULES: dict[str, list] = {
    "gpt2": _GPT2,
    "bert": _BERT,
    "opt": _OPT,
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "mixtral": _MIXTRAL,
}
_COMPILED = {
    fam: [(re.compile(pat + r"\Z"), rule) for pat, rule in rules] for fam, rules in RULES.items()
}


def rule_for(family: str, path: str) -> Rule | None:
    """The rule of one module path (None: the module is not labelled)."""
    for pat, rule in _COMPILED.get(family, []):
        m = pat.match(path)
        if not m:
            continue
        if rule is None:  # q_proj / k_proj / v_proj / gate_proj ...: the attribute is the op
            return Rule(op=path.rsplit(".", 1)[-1])
        if callable(rule) and not isinstance(rule, Rule):
            layer = m.groupdict().get("layer")
            return Rule(op=rule(int(layer) if layer is not None else None))
        return rule
    return None


def labelled_modules(module: Any, family: str) -> dict[str, Rule]:
    """Module path -> rule for every module of `module` that gets a profiler range."""
    out = {}
    for path, _ in module.named_modules():
        r = rule_for(family, path)
        if r is not None:
            out[path] = r
    return out


@contextmanager
def labels(module: Any, family: str, cache: Any = None) -> Iterator[dict[str, Rule]]:
    """Install the profiler ranges (module hooks, cache update, rotary function); undo after."""
    import torch

    rules = labelled_modules(module, family)
    stack: list[Any] = []
    handles = []

    def pre(name: str):
        def hook(mod, args):
            rf = torch.profiler.record_function(PREFIX + name)
            rf.__enter__()
            stack.append(rf)

        return hook

    def post(mod, args, out):
        if stack:
            stack.pop().__exit__(None, None, None)

    mods = dict(module.named_modules())
    for path in rules:
        m = mods[path]
        handles.append(m.register_forward_pre_hook(pre(path)))
        handles.append(m.register_forward_hook(post, always_call=True))
    patched: list[tuple[Any, str, Any]] = []
    for mod_name in {type(m).__module__ for m in mods.values()}:
        pymod = sys.modules.get(mod_name)
        fn = getattr(pymod, "apply_rotary_pos_emb", None) if pymod else None
        if fn is not None and mod_name.startswith("transformers."):
            patched.append((pymod, "apply_rotary_pos_emb", fn))
            pymod.apply_rotary_pos_emb = _ranged(fn, PREFIX + ROPE_LABEL)
    if cache is not None:
        wrap_cache(cache)
    try:
        yield rules
    finally:
        for h in handles:
            h.remove()
        for pymod, attr, fn in patched:
            setattr(pymod, attr, fn)
        if cache is not None:
            unwrap_cache(cache)


def _ranged(fn: Callable, label: str) -> Callable:
    import torch

    def wrapped(*a, **k):
        with torch.profiler.record_function(label):
            return fn(*a, **k)

    wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapped


def wrap_cache(cache: Any) -> None:
    """Give a transformers cache's `update` (the KV append) a profiler range of its own."""
    if "update" not in vars(cache):
        cache.update = _ranged(cache.update, PREFIX + KV_LABEL)


def unwrap_cache(cache: Any) -> None:
    vars(cache).pop("update", None)


# ---------------------------------------------------------------- attribution


@dataclass
class Attribution:
    """Profiled time per memwall op name (seconds), and how much of it is named."""

    times: dict[str, float]  # op name (or group) -> seconds
    total: float  # profiled seconds of the model calls (root ranges)
    calls: int  # root ranges (model calls) seen

    @property
    def framework(self) -> float:
        return self.times.get(FRAMEWORK, 0.0)

    @property
    def coverage(self) -> float:
        """Share of profiled model time attributed to a memwall operation."""
        return (self.total - self.framework) / self.total if self.total > 0 else 0.0


def _special_rule(name: str) -> Rule | None:
    if name == KV_LABEL:
        return Rule(op="kv_cache_write")
    if name == ROPE_LABEL:
        return Rule(op="rope")
    return None


def attribute(events: Any, rules: dict[str, Rule]) -> Attribution:
    """Attribute profiler events (from `prof.events()`) to op names (see module doc)."""
    lab = [e for e in events if e.name.startswith(PREFIX)]
    ids = {id(e) for e in lab}

    def label_parent(e):
        p = e.cpu_parent
        while p is not None and id(p) not in ids:
            p = p.cpu_parent
        return p

    children: dict[int, list] = defaultdict(list)
    roots = []
    for e in lab:
        p = label_parent(e)
        if p is None:
            roots.append(e)
        else:
            children[id(p)].append(e)
    times: dict[str, float] = defaultdict(float)
    for e in lab:
        name = e.name[len(PREFIX) :]
        rule = rules.get(name) or _special_rule(name) or Rule()
        start, end = e.time_range.start, e.time_range.end
        prev: str | None = None
        cursor = start
        for c in sorted(children.get(id(e), []), key=lambda c: c.time_range.start):
            gap = max(0.0, c.time_range.start - cursor)
            times[rule.gap_name(prev)] += gap
            cursor = max(cursor, c.time_range.end)
            cname = c.name[len(PREFIX) :]
            prev = cname.rsplit(".", 1)[-1]
        times[rule.gap_name(prev)] += max(0.0, end - cursor)
    total = sum(r.time_range.end - r.time_range.start for r in roots)
    us = 1e-6
    return Attribution({k: v * us for k, v in times.items() if v > 0}, total * us, len(roots))


def expand_groups(names: list[str]) -> dict[str, tuple[str, ...]]:
    """Measured name -> the closed-form op names it stands for."""
    return {n: GROUPS.get(n, (n,)) for n in names}
