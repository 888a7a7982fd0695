"""HF `config.json` validation: one pydantic model per family, built from `data/families.json`.

Each family's `fields` name the config keys of a spec attribute and the kind of value it holds;
a kind is a strict pydantic type (an int is an int, a bool is a bool, floats are finite) with a
range that makes sense. Unknown keys are ignored. Every failure is one `MemwallError` line that
names the config key, the value given and what is accepted. Cross-field rules (heads dividing
the width, key/value heads dividing heads, ...) live in `spec.spec_from_config`.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StrictBool, StrictInt, ValidationError, create_model

from memwall.errors import MemwallError
from memwall.families import Family, activations, rope_types

MAX_LENGTH = 10_000_000  # tokens; beyond this a length is a typo, not a workload
MAX_DIM = 1_000_000
MAX_LAYERS = 10_000
MAX_VOCAB = 100_000_000
MAX_EXPERTS = 100_000
MAX_EPS = 1.0
MAX_THETA = 1e15
LAYER_TYPES = ("full_attention", "sliding_attention", "chunked_attention")
FFN_PROJ = tuple(
    f"{g}{a}" for g in ("", "gated-") for a in ("relu", "gelu", "gelu_new", "silu")
)  # T5 feed_forward_proj values transformers runs with an activation memwall counts


def _int(lo: int, hi: int) -> Any:
    return Annotated[StrictInt, Field(ge=lo, le=hi)]


def _float(hi: float) -> Any:
    # strict: no strings, no booleans; a JSON integer such as 500000 is still a valid float
    return Annotated[float, Field(gt=0, le=hi, allow_inf_nan=False, strict=True)]


# kind -> (type, what is accepted); `None` is allowed where the kind says "or null"
KINDS: dict[str, tuple[Any, str]] = {
    "dim": (_int(1, MAX_DIM), f"an integer between 1 and {MAX_DIM:,}"),
    "layers": (_int(1, MAX_LAYERS), f"an integer between 1 and {MAX_LAYERS:,}"),
    "layer_index": (_int(0, MAX_LAYERS), f"an integer between 0 and {MAX_LAYERS:,}"),
    "vocab": (_int(1, MAX_VOCAB), f"an integer between 1 and {MAX_VOCAB:,}"),
    "positions": (_int(1, MAX_LENGTH), f"an integer between 1 and {MAX_LENGTH:,}"),
    "count": (_int(0, MAX_DIM), f"an integer between 0 and {MAX_DIM:,}"),
    "experts": (_int(1, MAX_EXPERTS), f"an integer between 1 and {MAX_EXPERTS:,}"),
    "eps": (_float(MAX_EPS), "a finite number above 0 and at most 1"),
    "theta": (_float(MAX_THETA), f"a finite number above 0 and at most {MAX_THETA:g}"),
    "fraction": (
        _float(1.0),
        "a number above 0 and at most 1",
    ),
    "cap": (_float(MAX_THETA) | None, "null or a finite number above 0"),
    "rank": (_int(1, MAX_DIM) | None, f"null or an integer between 1 and {MAX_DIM:,}"),
    "bool": (StrictBool, "true or false (a JSON boolean, not a string)"),
    "window": (_int(1, MAX_LENGTH) | None, f"null or an integer between 1 and {MAX_LENGTH:,}"),
    "layer_types": (
        Annotated[list[Literal[LAYER_TYPES]], Field(max_length=MAX_LAYERS)] | None,  # type: ignore[valid-type]
        f"null or a list of {' / '.join(LAYER_TYPES)}, one per layer",
    ),
    "ffn_proj": (  # T5's feed_forward_proj: "<act>" or "gated-<act>"
        Literal[FFN_PROJ],  # type: ignore[valid-type]
        f"one of {', '.join(FFN_PROJ)}",
    ),
    "index_list": (
        Annotated[list[_int(0, MAX_LAYERS)], Field(max_length=MAX_LAYERS)] | None,
        "null or a list of layer indices",
    ),
}
NULLABLE = frozenset({"window", "layer_types", "cap", "index_list", "rank"})


def _kind(name: str) -> tuple[Any, str]:
    if name == "activation":
        names = tuple(sorted(activations()))
        return Literal[names], f"one of {', '.join(names)}"  # type: ignore[valid-type]
    if name not in KINDS:
        raise MemwallError(f"unknown field kind {name!r}; known: activation, {', '.join(KINDS)}")
    return KINDS[name]


_SCHEMAS: dict[str, tuple[Family, Any]] = {}


def schema(family: Family) -> Any:
    """The pydantic model of one family's config (attributes as field names, strict types)."""
    hit = _SCHEMAS.get(family.name)
    if hit is None or hit[0] is not family:
        hit = _SCHEMAS[family.name] = (family, _build_schema(family))
    return hit[1]


def _build_schema(family: Family) -> Any:
    fields: dict[str, Any] = {}
    for attr, f in family.fields.items():
        typ, _ = _kind(f.kind)
        fields[attr] = (typ, ...) if f.required else (typ | None, None)
    cfg = ConfigDict(extra="ignore", strict=True, frozen=True)
    return create_model(f"{family.name}_config", __config__=cfg, **fields)


def _pick(family: Family, cfg: dict) -> tuple[dict[str, Any], dict[str, str]]:
    """(attribute -> raw value, attribute -> config key it came from), first present key wins.

    A null value counts as absent, except for kinds where null means something (no window).
    """
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for attr, f in family.fields.items():
        for k in f.keys:
            if k in cfg and (cfg[k] is not None or f.kind in NULLABLE):
                values[attr], source[attr] = cfg[k], k
                break
        else:
            source[attr] = f.keys[0]
    return values, source


def short(v: Any, n: int = 60) -> str:
    """A value as the user wrote it, cut to one short line."""
    if isinstance(v, float) and not math.isfinite(v):
        r = str(v)
    else:
        r = repr(v)
    r = r.replace("\n", " ")
    return r if len(r) <= n else r[: n - 3] + "..."


def _message(family: Family, err: dict, values: dict, source: dict) -> str:
    attr = str(err["loc"][0]) if err["loc"] else ""
    key = source.get(attr, attr)
    f = family.fields.get(attr)
    accepted = _kind(f.kind)[1] if f else ""
    if err["type"] == "missing":
        return f"config is missing required field {key!r} ({accepted})"
    v = values.get(attr)
    if f is not None and f.kind == "activation":
        return f"unsupported activation {short(v)} in {key!r}; accepted: {accepted[7:]}"
    typ = "" if v is None else f" ({_TYPE_NAMES.get(type(v), type(v).__name__)})"
    return f"config field {key!r} must be {accepted}, got {short(v)}{typ}"


_TYPE_NAMES = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "an object",
}


def validate(family: Family, cfg: dict) -> dict[str, Any]:
    """Typed values of every field of `family` (attribute -> value, defaults still unresolved:
    an absent optional field is None)."""
    values, source = _pick(family, cfg)
    try:
        model = schema(family).model_validate(values)
    except ValidationError as e:
        raise MemwallError(_message(family, e.errors()[0], values, source)) from None
    out = model.model_dump()
    for attr, f in family.fields.items():
        if attr not in values and not f.required:
            out[attr] = _default(f.default, out, family)
    return out


def _default(default: Any, out: dict, family: Family) -> Any:
    """A field's default: a value, or computed from another attribute."""
    if isinstance(default, dict):
        if "same_as" in default:
            return out[default["same_as"]]
        if "times" in default:
            return out[default["times"]] * default["by"]
        raise MemwallError(f"family {family.name!r}: unknown default rule {default!r}")
    return default


def sources(family: Family, cfg: dict) -> dict[str, str]:
    """attribute -> the config key its value came from (for messages)."""
    return _pick(family, cfg)[1]


# ---------------------------------------------------------------- keys every HF config may hold

TOKEN_ID_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id")


def check_common(cfg: dict, vocab: int) -> None:
    """Keys the model-building engines read (token ids, RoPE scaling, label maps): a value that
    would make transformers fail or misbehave is one clear line here, for every engine."""
    for key in TOKEN_ID_KEYS if vocab else ():  # no vocabulary (ViT): token ids are unused
        v = cfg.get(key)
        ids = v if key == "eos_token_id" and isinstance(v, list) else [v]
        if v is not None and not all(_is_index(x, vocab) for x in ids):
            raise MemwallError(
                f"config field {key!r} must be null or a token id between 0 and {vocab - 1:,} "
                f"(the vocabulary), got {short(v)}"
            )
    for key in ("rope_scaling", "rope_parameters"):
        _check_rope(key, cfg.get(key))
    for key, values in (("id2label", str), ("label2id", int)):
        v = cfg.get(key)
        ok = v is None or (
            isinstance(v, dict)
            and len(v) <= 100_000
            and all(isinstance(x, values) and not isinstance(x, bool) for x in v.values())
        )
        if not ok:
            what = "label names" if values is str else "integer ids"
            raise MemwallError(
                f"config field {key!r} must be null or an object of {what}, got {short(v)}"
            )


def _is_index(x: Any, n: int) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and 0 <= x < n


def _check_rope(key: str, v: Any) -> None:
    if v is None:
        return
    kinds = rope_types()
    if not isinstance(v, dict):
        raise MemwallError(
            f"config field {key!r} must be null or an object with a rope_type "
            f"({', '.join(kinds)}), got {short(v)}"
        )
    kind = v.get("rope_type", v.get("type", "default"))
    if kind not in kinds:
        raise MemwallError(
            f"config field {key!r} has rope_type {short(kind)}; accepted: {', '.join(kinds)}"
        )
    factor = v.get("factor")
    if factor is not None and not (
        isinstance(factor, int | float)
        and not isinstance(factor, bool)
        and math.isfinite(factor)
        and 0 < factor <= 1e6
    ):
        raise MemwallError(
            f"config field {key!r} has factor {short(factor)}; accepted: a finite number above 0"
        )
