"""Every per-family fact in one place: what `data/families.json` says about each model family.

A family is what an HF `config.json` names in `model_type` (or, lacking it, `architectures`).
Its entry says which config keys hold each `ModelSpec` attribute (with the value's kind and
transformers' default), the facts no config can change (norm, activation gating, biases, ...),
and how transformers runs it (dropout keys, eager kernels, the profiler's module-path map).

Public API (light: no torch, no transformers):
- `Family` (frozen): `name`, `model_types`, `architectures`, `fixed` (spec attribute -> value),
  `fields` (spec attribute -> `Field`), `keys(attr)` / `key(attr)` (config keys of an attribute),
  `dropout_keys`, `hidden_dropout`, `embed_dropout`, `fp32_softmax`, `eager_norm`
  (`layernorm` | `llama_rmsnorm`), `eager_passes` (op -> eager bytes / fused bytes), `hf_model` /
  `hf_train_model` (transformers Auto class names), `tiny` (extra config keys of a shrunk copy),
  `opmap` (tuple of (regex with `{L}` for the layer index, rule dict): rule is `{"op": name}`,
  `{"gaps": [[after, name], ...], "gap_default": name}`, `{"first_layer": name}` (layer 0 -> that
  name, later layers -> `mlp_add_norm`) or `{"attr": true}` (the module's attribute is the op)),
  `source`, `window_every` (with no `layer_types`, every n-th layer attends globally and the
  others in the sliding window: Gemma), `derive` (tuple of `Rule`: spec attributes set, or a
  config refused, when config values match: Falcon's K/V heads and norms).
- `get_family(name)`, `family_for_config(cfg)`, `family_names()`, `ACTIVATIONS` (config name ->
  memwall activation), `EAGER_CHAIN_ACTIVATIONS`.
- `reload()`: forget added families and read the data files again.
- `add_families(path)`: register the families of another JSON file of the same shape (also read
  from the `MEMWALL_FAMILIES` environment variable: paths separated by `os.pathsep`). Adding a
  family that needs no new operation is one entry there (plus a preset config if wanted).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError, model_validator

from memwall.errors import MemwallError, first_problem, suggest

ENV_VAR = "MEMWALL_FAMILIES"
MAX_FILE_BYTES = 1024 * 1024


class Field(BaseModel):
    """Where one spec attribute lives in a config: keys (first present wins), kind, default.

    `default` absent: the field is required. A dict default is computed from another attribute:
    `{"same_as": attr}` or `{"times": attr, "by": k}`. `refuse`: a true value is not supported.
    `equals`: the value must equal that attribute's. `only`: any other value is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    keys: tuple[str, ...]
    kind: str
    default: Any = None
    required: bool = False
    refuse: StrictBool = False
    equals: str | None = None
    only: Any = None  # the one value the closed form models (null is taken as the default)

    @model_validator(mode="before")
    @classmethod
    def _required_without_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and "default" not in data:
            return {**data, "required": True}
        return data


class Rule(BaseModel):
    """A fact that depends on other config values (applied in order, later rules win).

    `when`: attribute -> value, all must match (empty: always). `set`: spec attribute -> a
    value, or `{"same_as": attr}` (that attribute's value; nothing is set when it is null).
    `refuse`: the one-line message of a combination transformers cannot run.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    when: dict[str, Any] = {}
    set: dict[str, Any] = {}
    refuse: str | None = None


class _Entry(BaseModel):
    """Schema of one family in the data file (after `like` is resolved)."""

    model_config = ConfigDict(extra="forbid")
    source: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...] = ()
    fixed: dict[str, Any]
    fields: dict[str, Field]
    dropout_keys: tuple[str, ...] = ()
    hidden_dropout: StrictBool = False
    embed_dropout: StrictBool = False
    fp32_softmax: StrictBool = False
    eager_norm: str = "layernorm"
    eager_passes: dict[str, float] = {}
    hf_model: str = "AutoModelForCausalLM"
    hf_train_model: str = "AutoModelForCausalLM"
    tiny: dict[str, Any] = {}
    opmap: tuple[tuple[str, dict[str, Any]], ...] = ()
    window_every: int = 0
    derive: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class Family:
    """One model family's facts (see the module docstring for each attribute)."""

    name: str
    source: str
    model_types: tuple[str, ...]
    architectures: tuple[str, ...]
    fixed: dict[str, Any]
    fields: dict[str, Field]
    dropout_keys: tuple[str, ...]
    hidden_dropout: bool
    embed_dropout: bool
    fp32_softmax: bool
    eager_norm: str
    eager_passes: dict[str, float]
    hf_model: str
    hf_train_model: str
    tiny: dict[str, Any]
    opmap: tuple[tuple[str, dict[str, Any]], ...]
    window_every: int = 0  # with no layer_types, every n-th layer is global, others windowed
    derive: tuple[Rule, ...] = ()  # facts that depend on config values (Falcon's K/V heads)

    def keys(self, attr: str) -> tuple[str, ...]:
        """Config keys that hold a spec attribute (empty when the family fixes it)."""
        f = self.fields.get(attr)
        return f.keys if f else ()

    def key(self, attr: str) -> str | None:
        """The config key to write an attribute under (the first of its keys)."""
        k = self.keys(attr)
        return k[0] if k else None


def _merge(base: dict, over: dict) -> dict:
    """`over` on top of `base`, maps merged one level deep; a None entry removes it."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "opmap":
            merged = {**base[k], **v}
            out[k] = {kk: vv for kk, vv in merged.items() if vv is not None}
        else:
            out[k] = v
    return out


def _build(name: str, pool: dict) -> Family:
    data = {k.lstrip("_"): v for k, v in _resolve_raw(name, pool, 0).items()}
    try:
        e = _Entry.model_validate(data)
    except ValidationError as err:
        raise MemwallError(f"family {name!r} entry is invalid at {first_problem(err)}") from None
    return Family(
        name=name, **e.model_dump(exclude={"fields", "derive"}), fields=e.fields, derive=e.derive
    )


def _resolve_raw(name: str, pool: dict, depth: int) -> dict:
    raw = pool[name]
    if "like" not in raw:
        return raw
    if raw["like"] not in pool:
        raise MemwallError(f"family {name!r} is 'like' unknown family {raw['like']!r}")
    if depth > 8:
        raise MemwallError(f"family {name!r}: 'like' chain is too deep (a loop?)")
    base = _resolve_raw(raw["like"], pool, depth + 1)
    return _merge(base, {k: v for k, v in raw.items() if k != "like"})


def _read(text: str, where: str) -> dict:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise MemwallError(f"families file {where} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("families"), dict):
        raise MemwallError(f"families file {where} must be an object with a 'families' object")
    bad = [k for k, v in doc["families"].items() if not isinstance(v, dict)]
    if bad:
        raise MemwallError(f"families file {where}: entry {bad[0]!r} must be an object")
    return doc


_STATE: dict[str, Any] = {}


def _load() -> dict[str, Any]:
    if not _STATE:
        try:
            _read_bundled()
            for path in filter(None, os.environ.get(ENV_VAR, "").split(os.pathsep)):
                _add_file(Path(path))
        except MemwallError:
            _STATE.clear()  # never half-loaded: the next call reads everything again
            raise
    return _STATE


def _read_bundled() -> None:
    text = (resources.files("memwall") / "data" / "families.json").read_text()
    doc = _read(text, "data/families.json")
    _STATE.update(
        raw={},
        families={},
        activations=dict(doc["activations"]),
        chains=tuple(doc["eager_chain_activations"]),
        rope_types=tuple(doc["rope_types"]),
    )
    _commit({"families": doc["families"]})


def _commit(doc: dict) -> None:
    """Add a file's families, all or none: the registry is unchanged if one entry is bad."""
    pool = {**_STATE["raw"], **doc["families"]}
    built = {name: _build(name, pool) for name in pool}
    _STATE["raw"] = pool
    _STATE["families"] = built
    _STATE["activations"].update(doc.get("activations", {}))


def _add_file(path: Path) -> list[str]:
    if not path.is_file():
        raise MemwallError(f"no such families file: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise MemwallError(f"families file {path} is larger than {MAX_FILE_BYTES // 1024} KiB")
    doc = _read(path.read_text(encoding="utf-8"), str(path))
    _commit(doc)
    return list(doc["families"])


def add_families(path: str | Path) -> list[str]:
    """Register the families of another data file (same shape as data/families.json)."""
    _load()
    return _add_file(Path(path))


def reload() -> None:
    """Forget every family and read the data again (the bundled file, then MEMWALL_FAMILIES)."""
    _STATE.clear()


def family_names() -> tuple[str, ...]:
    return tuple(_load()["families"])


def get_family(name: str) -> Family:
    fams = _load()["families"]
    if name not in fams:
        raise MemwallError(
            f"unknown model family {name!r}{suggest(name, fams)}; supported: {', '.join(fams)}"
        )
    return fams[name]


def activations() -> dict[str, str]:
    """Config activation name -> memwall's (gelu | gelu_tanh | relu | silu)."""
    return dict(_load()["activations"])


def eager_chain_activations() -> tuple[str, ...]:
    """Activations transformers runs as a chain of eager pointwise ops (tanh-GELU variants)."""
    return _load()["chains"]


def rope_types() -> tuple[str, ...]:
    """RoPE scaling kinds transformers knows (`rope_scaling` / `rope_parameters` `rope_type`)."""
    return _load()["rope_types"]


def _by_model_type(mtype: str) -> Family | None:
    for fam in _load()["families"].values():
        if mtype in fam.model_types:
            return fam
    return None


def family_for_config(cfg: Any) -> Family:
    """The family a config belongs to: by `model_type`, else by `architectures`."""
    if not isinstance(cfg, dict):
        raise MemwallError("config must be a JSON object")
    supported = ", ".join(family_names())
    hint = "; or count the real module with --engine trace"
    mtype = cfg.get("model_type")
    if mtype is None:
        archs = cfg.get("architectures")
        for fam in _load()["families"].values():
            if isinstance(archs, list) and any(a in fam.architectures for a in archs):
                return fam
        raise MemwallError(f"config is missing required field 'model_type' (accepted: {supported})")
    if not isinstance(mtype, str):
        raise MemwallError(
            f"config field 'model_type' must be a string, got {type(mtype).__name__} "
            f"{_short(mtype)} (accepted: {supported})"
        )
    fam = _by_model_type(mtype.lower())
    if fam is None:
        text = cfg.get("text_config")
        inner = text.get("model_type") if isinstance(text, dict) else None
        if isinstance(inner, str) and _by_model_type(inner.lower()) is not None:
            raise MemwallError(  # Llama 4's config.json: a multimodal wrapper of a text model
                f"model_type {_short(mtype)} is a multimodal config; its text model "
                f"({_short(inner)}) is supported: give its 'text_config' object as the config"
            )
        raise MemwallError(
            f"unsupported model_type {_short(mtype)}{suggest(mtype.lower(), family_names())}; "
            f"accepted: {supported}{hint}"
        )
    return fam


def _short(v: Any, n: int = 60) -> str:
    r = repr(v)
    return r if len(r) <= n else r[: n - 3] + "..."
