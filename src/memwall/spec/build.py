"""A `ModelSpec` from an HF-style config: validated by the family's schema, derived by its
rules (`data/families.json`); nothing in a config is executed."""

from __future__ import annotations

from typing import Any

from memwall.configs import check_common, short, sources, validate
from memwall.errors import MemwallError
from memwall.families import Family, activations, family_for_config
from memwall.spec.model import SPEC_ATTRS, ModelSpec


def spec_from_config(cfg: Any, name: str = "custom") -> ModelSpec:
    """Build a ModelSpec from a parsed HF-style config dict, validating every field used."""
    fam = family_for_config(cfg)
    v = validate(fam, cfg)
    src = sources(fam, cfg)
    for attr, f in fam.fields.items():
        if f.refuse and v[attr]:
            raise MemwallError(
                f"config field {src[attr]!r} is true: not supported by the closed form "
                f"(family {fam.name}); set it to false, or count the real module with "
                "--engine trace"
            )
        if f.only is not None and v[attr] is not None and v[attr] != f.only:
            raise MemwallError(
                f"config field {src[attr]!r} is {short(v[attr])}: only {f.only!r} is supported by "
                f"the closed form (family {fam.name}); or count the real module with "
                "--engine trace"
            )
        if f.equals and v[attr] != v[f.equals]:
            raise MemwallError(
                f"config field {src[attr]!r} ({v[attr]}) must equal {src[f.equals]!r} "
                f"({v[f.equals]}) for family {fam.name}"
            )
    _check_heads(fam, v, src)
    check_common(cfg, v.get("vocab_size", 0))  # a vision model (ViT) has no vocabulary
    window, n_window = _window(fam, v, src)
    attrs = {**fam.fixed, **{k: x for k, x in v.items() if k in SPEC_ATTRS}}
    act, gated = _ffn_proj(v["activation"])
    attrs.update(
        name=name,
        family=fam.name,
        head_dim=v.get("head_dim") or v["d_model"] // v["n_heads"],
        n_kv_heads=v.get("n_kv_heads") or v["n_heads"],
        raw_activation=v["activation"],
        activation=activations()[act],
        sliding_window=window,
        window_layers=n_window,
    )
    if v.get("kv_lora_rank"):  # MLA: query/key heads are the unrotated and rotated parts
        attrs.update(
            head_dim=v["nope_head_dim"] + v["rope_head_dim"],
            q_lora_rank=v["q_lora_rank"] or 0,
            n_kv_heads=v["n_heads"],
            dense_layers=min(v["dense_layers"], v["n_layers"]),
        )
    attrs.update(_layer_plan(v))
    if v.get("patch_size"):  # ViT: the tokens are an image's patches and a class token
        if v["patch_size"] > v["image_size"]:
            raise MemwallError(
                f"config field {src['patch_size']!r} ({v['patch_size']}) is larger than "
                f"{src['image_size']!r} ({v['image_size']})"
            )
        attrs["max_positions"] = (v["image_size"] // v["patch_size"]) ** 2 + 1
    attrs.update(_derived(fam, v))
    if attrs.get("n_experts", 1) > 1 and "experts_per_token" not in attrs:
        attrs["experts_per_token"] = 1
    if gated:  # T5's feed_forward_proj "gated-<act>" (Flan-T5, T5 v1.1): a gated MLP
        attrs["gated_mlp"] = True
    return ModelSpec(**attrs)


def _layer_plan(v: dict) -> dict[str, Any]:
    """Per-layer facts transformers decides by layer index, as counts (the closed form sums
    layers; where they sit does not change a total): the layers that run a dense MLP instead of
    experts (Qwen2-MoE: `mlp_only_layers` and every layer whose index + 1 is not a multiple of
    `decoder_sparse_step`; Llama 4: those not in `moe_layers`, or with no list every
    `interleave_moe_layer_step`-th is MoE) and the layers with no rotary embedding (Llama 4)."""
    n = v["n_layers"]
    out: dict[str, Any] = {}
    if "sparse_step" in v:
        step, dense = v["sparse_step"], set(v.get("mlp_only_layers") or ())
        out["dense_layers"] = sum(1 for i in range(n) if i in dense or (i + 1) % step)
    if "moe_layer_list" in v:
        moe = v["moe_layer_list"]
        if moe is None:
            moe = range(v["moe_step"] - 1, n, v["moe_step"])
        out["dense_layers"] = n - len(set(moe) & set(range(n)))
    if out.get("dense_layers") == n:  # no layer runs experts: a dense model of the dense width
        out.update(n_experts=1, experts_per_token=1, d_ff=v.get("dense_d_ff") or v["d_ff"])
        out["dense_layers"] = 0
        out.update(n_shared_experts=0, shared_d_ff=0, shared_expert_gate=False)
    if "no_rope_layers" in v:
        out["nope_layers"] = n - sum(_rope_flags(v))
    return out


def _rope_flags(v: dict) -> list[bool]:
    """Llama 4: whether each layer rotates q and k. `no_rope_layers` holds one flag per layer (1:
    rope, 0: none, despite its name); empty, every `no_rope_layer_interval`-th layer has none."""
    n, flags = v["n_layers"], v["no_rope_layers"]
    if not flags:
        return [(i + 1) % v["nope_interval"] != 0 for i in range(n)]
    if len(flags) < n or any(x not in (0, 1) for x in flags):
        raise MemwallError(
            f"config field 'no_rope_layers' must be empty or hold a 1 (rope) or 0 (no rope) for "
            f"each of the {n} layers, got {short(flags)}"
        )
    return [x == 1 for x in flags[:n]]


def _ffn_proj(name: str) -> tuple[str, bool]:
    """(activation, gated) of an activation name; T5's `feed_forward_proj` may read
    "gated-<act>", and transformers runs "gated-gelu" with the tanh GELU (gelu_new)."""
    if name == "gated-gelu":
        return "gelu_new", True
    if name.startswith("gated-"):
        return name[len("gated-") :], True
    return name, False


def _derived(fam: Family, v: dict) -> dict[str, Any]:
    """The family's `derive` rules on the validated config values, in order (later rules win):
    facts that depend on other config values, such as Falcon's K/V heads and norms."""
    out: dict[str, Any] = {}
    for rule in fam.derive:
        unknown = [*(k for k in rule.when if k not in v), *(rule.set.keys() - SPEC_ATTRS)]
        if unknown:
            raise MemwallError(
                f"family {fam.name!r}: a derive rule names {unknown[0]!r}, which is not one of "
                "its fields (when) or a ModelSpec attribute (set)"
            )
        if any(v[k] != x for k, x in rule.when.items()):
            continue
        if rule.refuse:
            raise MemwallError(rule.refuse)
        for attr, x in rule.set.items():
            if isinstance(x, dict) and "same_as" in x:
                if v.get(x["same_as"]) is not None:
                    out[attr] = v[x["same_as"]]
            else:
                out[attr] = x
    return out


def _check_heads(fam: Family, v: dict, src: dict) -> None:
    d, heads = v["d_model"], v["n_heads"]
    if v.get("kv_lora_rank"):  # MLA: head widths are given, not derived from the width
        v = {**v, "head_dim": v["nope_head_dim"] + v["rope_head_dim"]}
    if v.get("head_dim") is None and d % heads:
        raise MemwallError(
            f"attention heads ({heads}) must divide the model width ({d}); "
            "or give 'head_dim' explicitly"
        )
    kv = v.get("n_kv_heads") or heads
    if heads % kv:
        raise MemwallError(f"key/value heads ({kv}) must divide attention heads ({heads})")
    head_dim = v.get("head_dim") or d // heads
    if fam.fixed.get("position") == "rotary" and head_dim % 2:
        raise MemwallError(
            f"rotary position embeddings need an even head width, got head_dim {head_dim}"
        )
    if heads * head_dim > 64 * d:
        raise MemwallError(
            f"heads x head_dim ({heads} x {head_dim}) is over 64 times the model width ({d})"
        )
    e, k = v.get("n_experts") or 1, v.get("experts_per_token") or 1
    if k > e:
        raise MemwallError(
            f"{src.get('experts_per_token')!r} ({k}) exceeds {src.get('n_experts')!r} ({e})"
        )


def _window(fam: Family, v: dict, src: dict) -> tuple[int | None, int]:
    """(sliding window, number of layers that use it), as transformers decides them.

    Mistral and Mixtral window every layer when `sliding_window` is set; Gemma all but every
    `sliding_window_pattern`-th layer (Gemma 2: every 2nd, fixed); Qwen2 only when
    `use_sliding_window` is true, and then only the layers from `max_window_layers` on (or the
    layers `layer_types` marks `sliding_attention`). Llama 4's rotary layers attend within
    chunks of `attention_chunk_size` (`chunked_attention`): transformers caches the last chunk's
    worth of tokens and masks the rest, so a step reads them as it reads a window.
    """
    layers = v["n_layers"]
    window = v.get("sliding_window")
    if "use_sliding_window" in v and not v["use_sliding_window"]:
        window = None
    types = v.get("layer_types")
    if types is not None:
        if len(types) != layers:
            raise MemwallError(
                f"config field 'layer_types' has {len(types)} entries; "
                f"accepted: one per layer ({layers})"
            )
        n = sum(t == "sliding_attention" for t in types)
        chunked = sum(t == "chunked_attention" for t in types)
        if chunked and "no_rope_layers" not in v:
            raise MemwallError(
                "config field 'layer_types' names chunked_attention layers: only Llama 4 "
                "(attention_chunk_size) runs them"
            )
        n += chunked  # Llama 4: a chunk is cached and read as a window of its size
        if n and window is None:
            raise MemwallError(
                "config field 'layer_types' names sliding_attention layers but no "
                "'sliding_window' is in use"
            )
        return (window if n else None), n
    if window is None:
        return None, 0
    if "no_rope_layers" in v:  # Llama 4: the rotary layers attend within chunks (a window)
        n = sum(_rope_flags(v))
        return (window if n else None), n
    every = v.get("window_pattern") or fam.window_every
    if every:  # Gemma: every `every`-th layer attends globally, the others in the window
        n = layers - layers // every
        return (window if n else None), n
    if "max_window_layers" in v:
        n = layers - min(v["max_window_layers"], layers)
        return (window if n else None), n
    return window, layers
