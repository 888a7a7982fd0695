"""What is analysed: the model (`ModelSpec`), number formats (`Precision`), work (`Workload`).

Model configs are HF-style `config.json` files read as JSON data and validated field by field;
nothing in them is ever executed. Bundled presets are the same files, shipped as data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from memwall.configfile import MAX_CONFIG_BYTES, path_exists, read_config_file
from memwall.configs import MAX_LENGTH, check_common, short, sources, validate
from memwall.errors import MemwallError, suggest
from memwall.families import Family, activations, family_for_config
from memwall.precision import (
    PAPER_PRECISION,
    RUNNABLE_ALIASES,
    RUNNABLE_PRECISIONS,
    Precision,
    act_dtype,
    kernel_dtype,
    parse_precision,
    runnable_precision,
)
from memwall.workload import (
    MAX_BATCH,
    PHASES,
    Workload,
    check_workload_fits,
    positions_note,
)

# Precision lives in memwall.precision; re-exported: memwall.spec names every input type.
__all__ = [
    "PAPER_PRECISION",
    "RUNNABLE_ALIASES",
    "RUNNABLE_PRECISIONS",
    "Precision",
    "act_dtype",
    "kernel_dtype",
    "parse_precision",
    "runnable_precision",
    "MAX_BATCH",
    "MAX_CONFIG_BYTES",
    "MAX_LENGTH",
    "PHASES",
    "ModelSpec",
    "Workload",
    "check_workload_fits",
    "positions_note",
    "load_model",
    "load_model_config",
    "preset_config",
    "preset_names",
    "read_config_file",
    "spec_from_config",
]

Phase = Literal["encode", "prefill", "decode", "generate"]


@dataclass(frozen=True)
class ModelSpec:
    """The architecture facts that counting needs, normalised across model families."""

    name: str
    family: str  # a family of data/families.json (bert, gpt2, opt, llama, ...)
    is_decoder: bool
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    vocab_size: int
    max_positions: int
    activation: str  # gelu | gelu_tanh | relu | silu
    gated_mlp: bool  # SwiGLU-style gate * up
    norm: str  # layernorm | rmsnorm
    pre_norm: bool  # norm before each block (GPT-2, OPT, Llama) or after the residual (BERT)
    position: str  # learned | rotary
    tied_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    mlp_bias: bool
    fused_qkv: bool = False  # one projection to Q, K and V (GPT-2's c_attn, Phi-3's qkv_proj)
    fused_gate_up: bool = False  # one projection to the gate and up halves (Phi-3's gate_up_proj)
    qk_norm: bool = False  # RMSNorm over each query and key head (Qwen3's q_norm, k_norm)
    parallel_block: bool = False  # attention and MLP both read the layer input (GPT-NeoX)
    rotary_fraction: float = 1.0  # share of each head's width that is rotated (GPT-NeoX: 0.25)
    type_vocab_size: int = 0  # BERT token-type embeddings
    embed_norm: bool = False  # BERT normalises the embeddings
    final_norm: bool = True
    pooler: bool = False  # BERT pooler: dense + tanh on the first token
    n_experts: int = 1
    experts_per_token: int = 1
    sliding_window: int | None = None
    window_layers: int | None = None  # layers that use the sliding window (None: all of them)
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    raw_activation: str = ""  # the config's own activation name
    norm_affine: bool = True  # norms carry a weight (and, for LayerNorm, a bias)
    q_scale_kernel: bool = False  # queries scaled in a kernel of their own (OPT)
    position_offset: int = 0  # extra rows of a learned position table (OPT: 2)
    sandwich_norm: bool = False  # norms after attention and after the MLP too (Gemma 2/3)
    embed_scale: bool = False  # embeddings multiplied by sqrt(d_model) (Gemma)
    attn_softcap: float | None = None  # cap * tanh(scores / cap) before softmax (Gemma 2)
    logit_softcap: float | None = None  # cap * tanh(logits / cap) after the LM head (Gemma 2)
    eager_attention: bool = False  # transformers has no fused (SDPA) path: scores materialised
    attn_sinks: bool = False  # one learned sink logit per head joins each softmax (GPT-OSS)
    router_bias: bool = False  # the MoE router's linear has a bias (GPT-OSS)
    # transformers before 5.25 cached Falcon-40B's K/V repeated to every query head; the count
    # follows what it and serving engines do now (the K/V heads as projected); only the trace
    # engine reads this, to build the cache an older transformers fills
    kv_broadcast: bool = False
    block_norms: int = 2  # norms per block (a Falcon-7B parallel block has one)
    kv_lora_rank: int = 0  # MLA (DeepSeek): the cached latent's width (0: not MLA)
    q_lora_rank: int = 0  # MLA: queries through a low-rank projection (0: one q_proj)
    rope_head_dim: int = 0  # MLA: the rotated part of each query/key head (shared key)
    v_head_dim: int = 0  # MLA: value head width (0: head_dim)
    n_shared_experts: int = 0  # experts every token runs, beside its routed top-k (DeepSeek)
    dense_layers: int = 0  # the first layers run a dense MLP of `dense_d_ff` (DeepSeek)
    dense_d_ff: int = 0
    n_decoder_layers: int = 0  # encoder-decoder (T5): decoder blocks (n_layers: the encoder's)
    relative_buckets: int = 0  # T5: rows of each stack's relative position bias table
    shared_d_ff: int = 0  # the shared expert's width (0: d_ff x n_shared_experts; Qwen2-MoE)
    shared_expert_gate: bool = False  # shared expert scaled by sigmoid(Linear(d, 1)) (Qwen2-MoE)
    nope_layers: int = 0  # layers with no rotary embedding, attending globally (Llama 4)
    rope_qk_norm: bool = False  # weightless RMSNorm of q, k after rope, rotary layers (Llama 4)
    attn_temperature: bool = False  # queries scaled by position on the NoPE layers (Llama 4)
    image_size: int = 0  # ViT: image side in pixels (0: not a vision model)
    patch_size: int = 0  # ViT: patch side; (image_size / patch_size)^2 patches + a class token
    num_channels: int = 0  # ViT: image channels

    @property
    def is_encoder_decoder(self) -> bool:
        return self.n_decoder_layers > 0

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def kv_cached_dim(self) -> int:
        """Width of K (and of V) as cached and read by attention, per token and layer."""
        return self.n_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    @property
    def has_lm_head(self) -> bool:
        return self.is_decoder

    @property
    def n_window_layers(self) -> int:
        """Layers whose attention is limited to the sliding window."""
        if self.sliding_window is None:
            return 0
        return self.n_layers if self.window_layers is None else self.window_layers

    def kv_tokens(self, context: int) -> int:
        """Cached tokens summed over the layers at `context` (a window caps its layers; T5:
        the decoder's self-attention layers)."""
        if self.is_encoder_decoder:
            return self.n_decoder_layers * context
        w = self.n_window_layers
        if not w:
            return self.n_layers * context
        return (self.n_layers - w) * context + w * min(context, self.sliding_window)

    def kv_note(self, context: int, batch: int) -> str:
        """What the KV cache holds, in tokens per sequence, naming the sliding window."""
        w, n = self.n_window_layers, self.n_layers
        if not w or context <= self.sliding_window:
            return f"{context:,} tokens x batch {batch}"
        kind = "attention chunk" if self.nope_layers else "sliding window"  # Llama 4: chunks
        kept = f"{self.sliding_window:,}-token {kind}"
        where = "every layer" if w == n else f"{w} of {n} layers ({n - w} hold all {context:,})"
        return f"{min(context, self.sliding_window):,} tokens x batch {batch} ({kept} in {where})"

    def norm_params(self) -> int:
        """Parameters of one norm: weight (and LayerNorm's bias), none without affine."""
        if not self.norm_affine:
            return 0
        return self.d_model * (2 if self.norm == "layernorm" else 1)

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank > 0

    @property
    def kv_width(self) -> int:
        """Elements cached per token and layer: K and V, or MLA's latent and shared rope key."""
        return self.kv_lora_rank + self.rope_head_dim if self.is_mla else 2 * self.kv_cached_dim

    @property
    def o_dim(self) -> int:
        """Width of the attention output (o_proj's input)."""
        return self.n_heads * self.v_head_dim if self.v_head_dim else self.q_dim

    @property
    def moe_layers(self) -> int:
        return self.n_layers - self.dense_layers if self.is_moe else 0

    @property
    def shared_width(self) -> int:
        """Width of the MLP every token runs beside its routed experts (0: none)."""
        return self.shared_d_ff or self.d_ff * self.n_shared_experts

    @property
    def rope_layers(self) -> int:
        """Layers that rotate q and k (all rotary-position layers but Llama 4's NoPE ones)."""
        return self.n_layers - self.nope_layers if self.position == "rotary" else 0

    def image_tokens(self, image_size: int | None = None) -> int:
        """ViT: tokens of one square image, (side / patch)^2 patches + the class token."""
        side = self.image_size if image_size is None else image_size
        return (side // self.patch_size) ** 2 + 1

    def attn_params(self) -> int:
        d, b = self.d_model, self.qkv_bias
        o = self.o_dim * d + (d if self.o_bias else 0) + (self.n_heads if self.attn_sinks else 0)
        if not self.is_mla:
            attn = d * self.q_dim + 2 * d * self.kv_dim + o
            return attn + ((self.q_dim + 2 * self.kv_dim) if b else 0)
        ql, kv = self.q_lora_rank, self.kv_lora_rank + self.rope_head_dim
        q = (d * ql + ql * b + ql + ql * self.q_dim) if ql else d * self.q_dim  # + q_a norm
        nope = self.head_dim - self.rope_head_dim
        up = self.kv_lora_rank * self.n_heads * (nope + self.v_head_dim)
        return q + d * kv + kv * b + self.kv_lora_rank + up + o  # + kv_a norm

    def mlp_params(self, moe: bool) -> int:
        """One layer's MLP: dense, or all experts + router + shared experts."""
        d = self.d_model
        n_mats = 3 if self.gated_mlp else 2
        if not moe:
            f = self.dense_d_ff or self.d_ff
            return n_mats * d * f + ((f * (n_mats - 1) + d) if self.mlp_bias else 0)
        f = self.d_ff
        expert = n_mats * d * f + ((f * (n_mats - 1) + d) if self.mlp_bias else 0)
        shared = n_mats * d * self.shared_width + (d if self.shared_expert_gate else 0)
        router = (d + self.router_bias) * self.n_experts
        return self.n_experts * expert + router + shared

    def layer_params(self) -> int:
        """Parameters of one Transformer block (all experts of a MoE layer included); the mean
        over the layers where the first ones are dense (DeepSeek)."""
        return self.layers_params() // self.n_layers

    def layers_params(self) -> int:
        """Parameters of all Transformer blocks."""
        qk = 2 * self.head_dim if self.qk_norm else 0
        norms = 4 if self.sandwich_norm else self.block_norms
        common = self.attn_params() + norms * self.norm_params() + qk
        moe = self.moe_layers
        dense = self.n_layers - moe
        n = self.n_layers * common + moe * self.mlp_params(True) + dense * self.mlp_params(False)
        if self.is_encoder_decoder:  # T5: decoder blocks add cross-attention and a third norm
            dec = 2 * self.attn_params() + 3 * self.norm_params() + self.mlp_params(False)
            n += self.n_decoder_layers * dec + 2 * self.relative_buckets * self.n_heads
        return n

    def embedding_params(self) -> int:
        n = self.vocab_size * self.d_model
        if self.position == "learned":  # OPT's table has 2 extra rows (position offset)
            n += (self.max_positions + self.position_offset) * self.d_model
        n += self.type_vocab_size * self.d_model
        if self.patch_size:  # ViT: the patch projection (a conv: weight and bias), class token
            n += (self.patch_size**2 * self.num_channels + 2) * self.d_model
        return n

    def n_params(self) -> int:
        """All parameters, counting tied embedding matrices once."""
        n = self.embedding_params() + self.layers_params()
        n += self.norm_params() if (self.final_norm or self.embed_norm) else 0
        n += self.norm_params() if self.is_encoder_decoder else 0  # the encoder's final norm
        if self.has_lm_head and not self.tied_embeddings:
            n += self.vocab_size * self.d_model
        if self.pooler:
            n += self.d_model * self.d_model + self.d_model
        return n

    def active_params_per_token(self) -> int:
        """Parameters one token touches (for a MoE, only its top-k experts)."""
        if not self.is_moe:
            return self.n_params()
        d = self.d_model
        expert = 3 * d * self.d_ff if self.gated_mlp else 2 * d * self.d_ff
        idle = self.moe_layers * (self.n_experts - self.experts_per_token) * expert
        return self.n_params() - idle

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- config parsing

SPEC_ATTRS = frozenset(f.name for f in fields(ModelSpec))


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


def _preset_dir():
    return resources.files("memwall") / "data" / "models"


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".json"))


def preset_config(name: str) -> dict:
    """The raw bundled config.json of a preset (facts, with their source in `_source`)."""
    names = preset_names()
    if name not in names:  # a listed name: a string too long for a file name is not looked up
        raise MemwallError(
            f"unknown model {name!r}{suggest(name, names)}; presets: {', '.join(names)}; "
            "or give a path to a config.json"
        )
    return json.loads((_preset_dir() / f"{name}.json").read_text())


def load_model_config(name_or_path: str) -> tuple[ModelSpec, dict]:
    """The spec and the raw config dict (engines that build the real model need the dict)."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise MemwallError(
            "the model is empty: give a preset name (e.g. gpt2) or a path to a config.json"
        )
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".json")
    if looks_like_path or (path_exists(name_or_path) and name_or_path not in preset_names()):
        cfg = read_config_file(name_or_path)
        return spec_from_config(cfg, name=Path(name_or_path).stem), cfg
    cfg = preset_config(name_or_path)
    return spec_from_config(cfg, name=name_or_path), cfg


def load_model(name_or_path: str) -> ModelSpec:
    """A preset name (`gpt2`) or a path to an HF `config.json` (or its folder)."""
    return load_model_config(name_or_path)[0]


# ---------------------------------------------------------------- workload
