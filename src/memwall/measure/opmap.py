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

import functools
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from memwall.families import get_family
from memwall.records.calibration import FRAMEWORK

PREFIX = "mw:"
KV_LABEL = "kv_cache_write"
ROPE_LABEL = "rope"


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


_L = r"(?P<layer>\d+)"


def _rule(d: dict[str, Any]) -> Rule | str | None:
    """A rule of families.json: `op`, `gaps`, `first_layer` (a name: layer 0's op) or
    `attr` (None: the module's attribute name is the op)."""
    if d.get("attr"):
        return None
    if "first_layer" in d:
        return str(d["first_layer"])
    if "op" in d:
        return Rule(op=d["op"])
    gaps = tuple((a, str(n)) for a, n in d.get("gaps", ()))
    return Rule(gaps=gaps, gap_default=d.get("gap_default", FRAMEWORK))


@functools.cache
def _compiled(family: str) -> tuple[tuple[re.Pattern[str], Rule | str | None], ...]:
    """The family's module-path -> rule map (families.json `opmap`), compiled once."""
    return tuple(
        (re.compile(pat.replace("{L}", _L) + r"\Z"), _rule(rule))
        for pat, rule in get_family(family).opmap
    )


def rule_for(family: str, path: str) -> Rule | None:
    """The rule of one module path (None: the module is not labelled)."""
    for pat, rule in _compiled(family):
        m = pat.match(path)
        if not m:
            continue
        if rule is None:  # q_proj / k_proj / v_proj / gate_proj ...: the attribute is the op
            return Rule(op=path.rsplit(".", 1)[-1])
        if isinstance(rule, str):  # pre-norm: layer 0's first norm is embed_norm, later ones
            return Rule(op=rule if m.groupdict().get("layer") == "0" else "mlp_add_norm")
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
