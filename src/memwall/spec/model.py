"""`ModelSpec`: every fact of a model that counting needs, frozen and derived once."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

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
        """Routed experts: more than one, or an expert-parallel slice holding one expert of
        several each token uses (Mixtral at EP 8: 1 local expert, top-2)."""
        return self.n_experts > 1 or self.experts_per_token > 1

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
        idle = self.moe_layers * max(0, self.n_experts - self.experts_per_token) * expert
        return self.n_params() - idle

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- config parsing

SPEC_ATTRS = frozenset(f.name for f in fields(ModelSpec))
