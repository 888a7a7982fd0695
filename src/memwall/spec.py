"""What is analysed: the model (`ModelSpec`), number formats (`Precision`), work (`Workload`).

Model configs are HF-style `config.json` files read as JSON data and validated field by field;
nothing in them is ever executed. Bundled presets are the same files, shipped as data.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from memwall.errors import MemwallError, suggest

MAX_LENGTH = 10_000_000  # tokens; beyond this a length is a typo, not a workload
MAX_BATCH = 1_000_000
MAX_DIM = 1_000_000
MAX_LAYERS = 10_000
MAX_CONFIG_BYTES = 4 * 1024 * 1024

Phase = Literal["encode", "prefill", "decode", "generate"]
PHASES: tuple[str, ...] = ("encode", "prefill", "decode", "generate")
FAMILIES = ("bert", "gpt2", "opt", "llama", "mistral", "qwen2", "mixtral")


@dataclass(frozen=True)
class ModelSpec:
    """The architecture facts that counting needs, normalised across model families."""

    name: str
    family: str  # model_type of the config: bert, gpt2, opt, llama, mistral, qwen2, mixtral
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
    fused_qkv: bool = False  # one projection to Q, K and V (GPT-2's c_attn)
    type_vocab_size: int = 0  # BERT token-type embeddings
    embed_norm: bool = False  # BERT normalises the embeddings
    final_norm: bool = True
    pooler: bool = False  # BERT pooler: dense + tanh on the first token
    n_experts: int = 1
    experts_per_token: int = 1
    sliding_window: int | None = None
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    raw_activation: str = ""  # the config's own activation name
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def q_dim(self) -> int:
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.n_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    @property
    def has_lm_head(self) -> bool:
        return self.is_decoder

    def layer_params(self) -> int:
        """Parameters of one Transformer block (all experts of a MoE layer included)."""
        d = self.d_model
        attn = d * self.q_dim + 2 * d * self.kv_dim + self.q_dim * d
        attn += (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        attn += d if self.o_bias else 0
        n_mats = 3 if self.gated_mlp else 2
        expert = n_mats * d * self.d_ff + ((self.d_ff * (n_mats - 1) + d) if self.mlp_bias else 0)
        mlp = self.n_experts * expert + (d * self.n_experts if self.is_moe else 0)
        norms = 2 * d * (2 if self.norm == "layernorm" else 1)
        return attn + mlp + norms

    def embedding_params(self) -> int:
        n = self.vocab_size * self.d_model
        if self.position == "learned":  # OPT's table has 2 extra rows (position offset)
            n += (self.max_positions + self.extra.get("position_offset", 0)) * self.d_model
        n += self.type_vocab_size * self.d_model
        return n

    def n_params(self) -> int:
        """All parameters, counting tied embedding matrices once."""
        n = self.embedding_params() + self.n_layers * self.layer_params()
        norm_w = self.d_model * (2 if self.norm == "layernorm" else 1)
        n += norm_w if (self.final_norm or self.embed_norm) else 0
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
        idle = self.n_layers * (self.n_experts - self.experts_per_token) * expert
        return self.n_params() - idle

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        return out


# ---------------------------------------------------------------- config parsing


def _field(cfg: dict, keys: tuple[str, ...], what: str, default: Any = ...) -> Any:
    for k in keys:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    if default is ...:
        raise MemwallError(f"config is missing required field {keys[0]!r} ({what})")
    return default


def _int(cfg: dict, keys: tuple[str, ...], what: str, default: Any = ..., hi: int = MAX_DIM) -> int:
    v = _field(cfg, keys, what, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or int(v) != v:
        raise MemwallError(f"config field {keys[0]!r} must be an integer, got {v!r}")
    v = int(v)
    if v < 1 or v > hi:
        raise MemwallError(f"config field {keys[0]!r} must be between 1 and {hi:,}, got {v:,}")
    return v


_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}


def spec_from_config(cfg: Any, name: str = "custom") -> ModelSpec:
    """Build a ModelSpec from a parsed HF-style config dict, validating every field used."""
    if not isinstance(cfg, dict):
        raise MemwallError("config must be a JSON object")
    mtype = cfg.get("model_type")
    if not isinstance(mtype, str):
        raise MemwallError(
            f"config is missing required field 'model_type' (accepted: {', '.join(FAMILIES)})"
        )
    mtype = mtype.lower()
    if mtype not in FAMILIES:
        raise MemwallError(
            f"unsupported model_type {mtype!r}{suggest(mtype, FAMILIES)}; "
            f"accepted: {', '.join(FAMILIES)}"
        )
    d = _int(cfg, ("hidden_size", "n_embd", "d_model"), "model width")
    layers = _int(cfg, ("num_hidden_layers", "n_layer", "num_layers"), "layers", hi=MAX_LAYERS)
    heads = _int(cfg, ("num_attention_heads", "n_head"), "attention heads")
    kv_heads = _int(cfg, ("num_key_value_heads",), "key/value heads", default=heads)
    vocab = _int(cfg, ("vocab_size",), "vocabulary size", hi=100_000_000)
    head_dim_given = cfg.get("head_dim")
    if head_dim_given is None:
        if d % heads:
            raise MemwallError(
                f"attention heads ({heads}) must divide the model width ({d}); "
                "or give 'head_dim' explicitly"
            )
        head_dim = d // heads
    else:
        head_dim = _int(cfg, ("head_dim",), "head width")
    if heads % kv_heads:
        raise MemwallError(f"key/value heads ({kv_heads}) must divide attention heads ({heads})")
    act_name = str(_field(cfg, ("hidden_act", "activation_function"), "activation", "gelu"))
    if act_name not in _ACTIVATIONS:
        raise MemwallError(
            f"unsupported activation {act_name!r}; accepted: {', '.join(sorted(_ACTIVATIONS))}"
        )
    common: dict[str, Any] = dict(
        name=name,
        family=mtype,
        n_layers=layers,
        d_model=d,
        n_heads=heads,
        n_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        activation=_ACTIVATIONS[act_name],
        raw_activation=act_name,
    )
    if mtype == "bert":
        return ModelSpec(
            **common,
            is_decoder=False,
            d_ff=_int(cfg, ("intermediate_size",), "FFN width"),
            max_positions=_int(cfg, ("max_position_embeddings",), "positions", hi=MAX_LENGTH),
            gated_mlp=False,
            norm="layernorm",
            pre_norm=False,
            position="learned",
            tied_embeddings=True,
            qkv_bias=True,
            o_bias=True,
            mlp_bias=True,
            type_vocab_size=_int(cfg, ("type_vocab_size",), "token types", default=2),
            embed_norm=True,
            final_norm=False,
            pooler=bool(cfg.get("add_pooling_layer", True)),
            norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        )
    if mtype == "gpt2":
        return ModelSpec(
            **common,
            is_decoder=True,
            d_ff=_int(cfg, ("n_inner",), "FFN width", default=4 * d),
            max_positions=_int(cfg, ("n_positions", "n_ctx"), "positions", hi=MAX_LENGTH),
            gated_mlp=False,
            norm="layernorm",
            pre_norm=True,
            position="learned",
            tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
            qkv_bias=True,
            o_bias=True,
            mlp_bias=True,
            fused_qkv=True,
            norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
        )
    if mtype == "opt":
        proj = cfg.get("word_embed_proj_dim", d)
        if proj not in (None, d):
            raise MemwallError(
                f"OPT configs with word_embed_proj_dim ({proj}) != hidden_size ({d}) "
                "are not supported"
            )
        return ModelSpec(
            **common,
            is_decoder=True,
            d_ff=_int(cfg, ("ffn_dim",), "FFN width"),
            max_positions=_int(cfg, ("max_position_embeddings",), "positions", hi=MAX_LENGTH),
            gated_mlp=False,
            norm="layernorm",
            pre_norm=bool(cfg.get("do_layer_norm_before", True)),
            position="learned",
            tied_embeddings=bool(cfg.get("tie_word_embeddings", True)),
            qkv_bias=bool(cfg.get("enable_bias", True)),
            o_bias=bool(cfg.get("enable_bias", True)),
            mlp_bias=bool(cfg.get("enable_bias", True)),
            final_norm=bool(cfg.get("do_layer_norm_before", True)),
            extra={"position_offset": 2},
        )
    # Llama-style: llama, mistral, qwen2, mixtral
    experts = _int(cfg, ("num_local_experts",), "experts", default=1, hi=100_000)
    topk = _int(cfg, ("num_experts_per_tok",), "experts per token", default=1, hi=100_000)
    if topk > experts:
        raise MemwallError(f"num_experts_per_tok ({topk}) exceeds num_local_experts ({experts})")
    bias = bool(cfg.get("attention_bias", mtype == "qwen2"))
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window", True) else None
    return ModelSpec(
        **common,
        is_decoder=True,
        d_ff=_int(cfg, ("intermediate_size",), "FFN width"),
        max_positions=_int(cfg, ("max_position_embeddings",), "positions", hi=MAX_LENGTH),
        gated_mlp=True,
        norm="rmsnorm",
        pre_norm=True,
        position="rotary",
        tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=bias,
        o_bias=bool(cfg.get("attention_bias", False)) and mtype != "qwen2",
        mlp_bias=bool(cfg.get("mlp_bias", False)),
        n_experts=experts,
        experts_per_token=topk,
        sliding_window=int(window) if isinstance(window, int) and window > 0 else None,
        norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        rope_theta=float(cfg.get("rope_theta", 10000.0)),
    )


def _preset_dir():
    return resources.files("memwall") / "data" / "models"


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".json"))


def preset_config(name: str) -> dict:
    """The raw bundled config.json of a preset (facts, with their source in `_source`)."""
    path = _preset_dir() / f"{name}.json"
    if not path.is_file():
        names = preset_names()
        raise MemwallError(
            f"unknown model {name!r}{suggest(name, names)}; presets: {', '.join(names)}; "
            "or give a path to a config.json"
        )
    return json.loads(path.read_text())


def read_config_file(path: str | Path) -> dict:
    """Read a config.json as data (size-capped, strict JSON), never as code."""
    p = Path(path)
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise MemwallError(f"no such config file: {p}")
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise MemwallError(f"config file {p} is larger than {MAX_CONFIG_BYTES // 1024} KiB")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"), parse_constant=_reject_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise MemwallError(f"config file {p} is not valid JSON: {e}") from None
    return cfg


def _reject_constant(name: str) -> None:
    raise MemwallError(f"config contains {name}, which is not a number")


def load_model_config(name_or_path: str) -> tuple[ModelSpec, dict]:
    """The spec and the raw config dict (engines that build the real model need the dict)."""
    looks_like_path = "/" in name_or_path or name_or_path.endswith(".json")
    if looks_like_path or (Path(name_or_path).exists() and name_or_path not in preset_names()):
        cfg = read_config_file(name_or_path)
        return spec_from_config(cfg, name=Path(name_or_path).stem), cfg
    cfg = preset_config(name_or_path)
    return spec_from_config(cfg, name=name_or_path), cfg


def load_model(name_or_path: str) -> ModelSpec:
    """A preset name (`gpt2`) or a path to an HF `config.json` (or its folder)."""
    return load_model_config(name_or_path)[0]


# ---------------------------------------------------------------- precision

_NAMED_PRECISIONS = {
    "fp32": (32, 32, 32),
    "bf16": (16, 16, 16),
    "fp16": (16, 16, 16),
    "int8": (8, 8, 8),
    "int4": (4, 16, 16),
}
_ALLOWED_BITS = (2, 3, 4, 8, 16, 32)


@dataclass(frozen=True)
class Precision:
    """Bits of weights, activations and KV cache; integer weights carry one fp16 scale per group.

    `paper=True` is the paper's accounting: every number exactly that many bits, no scales.
    """

    weight_bits: int
    act_bits: int
    kv_bits: int
    group_size: int = 128
    name: str = ""
    float_kind: str = "bf16"  # which 16-bit float: bf16 or fp16
    paper: bool = False

    def _stored_bytes(self, bits: int) -> float:
        """Bytes per stored element; integers carry one 2-byte scale per group (not in `paper`)."""
        scales = 2 / self.group_size if bits < 16 and not self.paper else 0.0
        return bits / 8 + scales

    @property
    def weight_bytes(self) -> float:
        return self._stored_bytes(self.weight_bits)

    @property
    def act_bytes(self) -> float:
        return self.act_bits / 8

    @property
    def kv_bytes(self) -> float:
        return self._stored_bytes(self.kv_bits)

    @property
    def compute_dtype(self) -> str:
        """The dtype the matmuls run in: the wider of weights and activations."""
        bits = max(self.weight_bits, self.act_bits)
        if bits >= 32:
            return "fp32"
        if bits == 16:
            return self.float_kind
        return "int8" if self.weight_bits >= 8 else "int4"

    @property
    def label(self) -> str:
        return self.name or f"{self.weight_bits}/{self.act_bits}/{self.kv_bits}"


def parse_precision(text: str, group_size: int = 128) -> Precision:
    """`fp32`, `bf16`, `fp16`, `int8`, `int4`, or `W/A/KV` bits such as `4/16/8`."""
    t = text.strip().lower()
    if not 1 <= group_size <= 1 << 20:
        raise MemwallError(f"group size must be between 1 and {1 << 20}, got {group_size}")
    if t in _NAMED_PRECISIONS:
        w, a, kv = _NAMED_PRECISIONS[t]
        return Precision(w, a, kv, group_size, name=t, float_kind="fp16" if t == "fp16" else "bf16")
    m = re.fullmatch(r"(\d+)/(\d+)/(\d+)", t)
    if not m:
        raise MemwallError(
            f"unknown precision {text!r}{suggest(t, _NAMED_PRECISIONS)}; accepted: "
            f"{', '.join(_NAMED_PRECISIONS)} or W/A/KV bits such as 4/16/8"
        )
    w, a, kv = (int(x) for x in m.groups())
    for what, bits in (("weight", w), ("activation", a), ("KV-cache", kv)):
        if bits not in _ALLOWED_BITS:
            raise MemwallError(
                f"{what} bits must be one of {', '.join(map(str, _ALLOWED_BITS))}, got {bits}"
            )
    return Precision(w, a, kv, group_size, name=t)


PAPER_PRECISION = Precision(8, 8, 8, name="8-bit (paper)", paper=True)


# ---------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """What the model is asked to do.

    encode / prefill: one forward over `seq_len` tokens per sequence.
    decode: one step that adds 1 token to a KV cache already holding `seq_len` tokens
        (the new token attends to seq_len + 1 keys).
    generate: `gen_len` decode steps after a prompt of `seq_len` tokens (the prompt's
        prefill is not included); seq_len 0 is the paper's generation from no prompt.
    """

    phase: str
    batch: int = 1
    seq_len: int = 128
    gen_len: int = 0

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise MemwallError(
                f"unknown phase {self.phase!r}{suggest(self.phase, PHASES)}; "
                f"accepted: {', '.join(PHASES)}"
            )
        for what, v, lo, hi in (
            ("batch", self.batch, 1, MAX_BATCH),
            ("seq-len", self.seq_len, 0, MAX_LENGTH),
            ("gen-len", self.gen_len, 0, MAX_LENGTH),
        ):
            if isinstance(v, bool) or not isinstance(v, int):
                raise MemwallError(f"{what} must be an integer, got {v!r}")
            if not lo <= v <= hi:
                raise MemwallError(f"{what} must be between {lo} and {hi:,}, got {v:,}")
        if self.phase in ("encode", "prefill") and self.seq_len < 1:
            raise MemwallError(f"{self.phase} needs seq-len >= 1")
        if self.phase == "generate" and self.gen_len < 1:
            raise MemwallError("generate needs gen-len >= 1")

    @property
    def total_context(self) -> int:
        """The longest sequence the model holds during this workload."""
        if self.phase == "decode":
            return self.seq_len + 1
        if self.phase == "generate":
            return self.seq_len + self.gen_len
        return self.seq_len

    def with_(self, **kw: Any) -> Workload:
        return replace(self, **kw)


def check_workload_fits(spec: ModelSpec, wl: Workload) -> None:
    """Encoders cannot decode; learned position tables cap the length."""
    if not spec.is_decoder and wl.phase in ("decode", "generate", "prefill"):
        raise MemwallError(
            f"{spec.name} is an encoder: use --phase encode "
            "(prefill, decode and generate need a decoder)"
        )
    if spec.is_decoder and wl.phase == "encode":
        raise MemwallError(f"{spec.name} is a decoder: use --phase prefill, decode or generate")
