"""Activation memory derived from the model's operations (the closed-form op table of `count`).

Training keeps, for backward, the tensors each operation's gradient formula needs. The sizes come
from `count.op_table(..., convention="full")`: `bytes_written / count` of a row is the size of the
tensor that kernel produces in one layer. What is kept (one training step, batch B, length L,
T = B*L tokens, a = bytes per activation element, S = B*heads*L*L attention scores):

- matmuls keep their input (the output of the op before them): the normalised input of the Q/K/V
  projections, the attention output before the output projection, the normalised input of the
  first MLP matmul, the activation output before the second;
- attention keeps Q, K and V; fused attention (SDPA / flash) also keeps its output and the
  log-sum-exp (B*heads*L fp32 numbers) and recomputes the scores in backward; unfused attention
  keeps the softmax probabilities (S elements) instead;
- norms keep their input and their statistics (mean and 1/std for LayerNorm, 1/rms for RMSNorm;
  fp32, one or two per token); the residual adds keep nothing;
- the MLP activation keeps its input (GELU, SiLU) or only its output (ReLU, which the next matmul
  keeps anyway); a gated MLP keeps the gate and up projections;
- dropout (only when `dropout > 0`; transformers' dropout with p = 0 returns its input) keeps a
  mask per element: 1 byte (CUDA's native_dropout keeps a bool mask), or `mask_bytes` (PyTorch's
  CPU kernel keeps it in the activation dtype); attention dropout also keeps the dropped
  probabilities, and fused attention then keeps only its random seed (flash attention);
- the loss keeps the log-softmax of the logits; the embedding lookup keeps the token ids;
- multi-head latent attention (DeepSeek) keeps its query and KV latents before and after their
  norms, the up-projected keys and values, the assembled keys and the fused attention's output
  (`_mla_saved`); DeepSeek's shared experts and dense first layers keep a gated MLP's tensors.

Two implementations are modelled, because they differ by up to 2x:
- `fused`: the kernels of count's `full` convention, each keeping the minimum above.
- `eager`: PyTorch eager as Hugging Face transformers runs these models (checked tensor by tensor
  with `torch.autograd.graph.saved_tensors_hooks`): GPT-2's `gelu_new` is a chain of pointwise ops
  that keeps 4 tensors of the MLP width instead of 1; eager SiLU-gating keeps silu(gate) too; the
  eager RMSNorm keeps its input upcast to fp32 and the normalised tensor before the weight; the
  eager softmax of unfused attention in OPT and the Llama family is fp32 plus a copy in the
  activation dtype (BERT and GPT-2 keep it in the activation dtype); eager unfused
  attention keeps K and V repeated to every query head (grouped-query attention); the loss is
  computed on fp32 logits.

Checked against `saved_tensors_hooks` on transformers' BERT, GPT-2, Llama and OPT (fp32 and
bf16, SDPA and eager attention, with and without dropout): within 0.6%. Not modelled: a KV cache
kept during training (transformers' GPT-2 keeps one unless `use_cache=False`), the attention
mask (B*L*L, once per model), position ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from memwall.count import op_table
from memwall.errors import MemwallError
from memwall.families import eager_chain_activations, get_family
from memwall.precision import DTYPE_BYTES
from memwall.spec import ModelSpec, Precision, Workload, check_workload_fits

IMPLS = ("eager", "fused")
FP32 = float(DTYPE_BYTES["fp32"])
MASK_BYTES = 1.0  # CUDA native_dropout keeps a bool mask
LABELS = (
    2  # the encoder's training head: pooler + a 2-way classifier (BertForSequenceClassification)
)
MLP_TENSORS = frozenset(
    "router_probs expert_inputs expert_gate expert_up expert_silu expert_act expert_out gate up "
    "act_gate act_mul_out fc1_out gelu_chain act_out mlp_dropout_mask shared_gate shared_up "
    "shared_act dense_gate dense_up dense_act".split()
)


@dataclass(frozen=True)
class Saved:
    """One tensor kept for backward. `part`: embed | layer | final | head (layer = per layer)."""

    part: str
    name: str
    nbytes: float
    kept_for: str
    attn_core: bool = False  # recomputed (not kept) under selective checkpointing

    @property
    def mlp(self) -> bool:
        """Kept for the MLP's backward, which runs (and frees it) before the attention's."""
        return self.name in MLP_TENSORS


@dataclass(frozen=True)
class LayerOps:
    """Per-layer output sizes and forward FLOPs of one training forward, from the op table."""

    table: pd.DataFrame
    out: dict[str, float]  # bytes written by each op, per layer
    inp: dict[str, float]  # activation bytes read by each op, per layer
    flops: dict[str, float]  # forward FLOPs of each op, per layer (non-layer ops: total)
    tokens: int
    batch: int
    seq_len: int
    act_bytes: float
    layer_names: frozenset[str] = frozenset()  # per-layer ops (read once: searches ask often)
    layer_flops: float = 0.0  # forward FLOPs of one layer, and of the whole pass:
    total_flops: float = 0.0


def training_workload(spec: ModelSpec, batch: int, seq_len: int) -> Workload:
    """A training forward is one pass over the whole sequence: encode or prefill."""
    wl = Workload("prefill" if spec.is_decoder else "encode", batch, seq_len)
    check_workload_fits(spec, wl)
    return wl


def layer_ops(
    spec: ModelSpec, batch: int, seq_len: int, precision: Precision, fused_attention: bool = True
) -> LayerOps:
    wl = training_workload(spec, batch, seq_len)
    df = op_table(spec, wl, precision, convention="full", fused_attention=fused_attention)
    out, inp, flops, names, per_layer = {}, {}, {}, set(), 0.0
    for r in df.itertuples(index=False):
        out[r.name] = r.bytes_written / r.count
        inp[r.name] = r.bytes_act / r.count
        flops[r.name] = r.flops / r.count
        if r.layer == "all":
            names.add(r.name)
            per_layer += r.flops / r.count
    a = (batch * seq_len, batch, seq_len, precision.act_bytes, frozenset(names), per_layer)
    return LayerOps(df, out, inp, flops, *a, float(df["flops"].sum()))


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise MemwallError(f"unknown implementation {impl!r}; accepted: {', '.join(IMPLS)}")


@dataclass(frozen=True)
class _Step:
    """What every saved-tensor rule of one training step reads."""

    spec: ModelSpec
    o: LayerOps
    eager: bool
    fused_attention: bool
    dropout: float
    mask_bytes: float

    @property
    def a(self) -> float:
        return self.o.act_bytes

    @property
    def td(self) -> float:
        return self.o.out["o_proj"]  # one T x d_model activation

    @property
    def mask_td(self) -> float:
        return self.o.tokens * self.spec.d_model * self.mask_bytes

    @property
    def hidden_drop(self) -> bool:
        return self.dropout > 0 and get_family(self.spec.family).hidden_dropout

    @property
    def scores(self) -> float:
        return self.o.batch * self.spec.n_heads * self.o.seq_len**2  # attention scores

    @property
    def stats(self) -> float:
        return self.o.tokens * FP32 * (2 if self.spec.norm == "layernorm" else 1)

    def norm(self, prefix: str, where: str) -> list[Saved]:
        eager_rms = self.eager and self.spec.norm == "rmsnorm"
        norm_in = self.td * (FP32 / self.a if eager_rms and self.a < FP32 else 1.0)
        s = [
            Saved("layer", f"{prefix}_input", norm_in, f"{where} norm backward"),
            Saved("layer", f"{prefix}_stats", self.stats, f"{where} norm backward (fp32)"),
            Saved("layer", f"{prefix}_output", self.td, "input of the next matmul"),
        ]
        if eager_rms:
            s.append(
                Saved("layer", f"{prefix}_normalized", self.td, "eager RMSNorm: x/rms before *w")
            )
        return s


def saved_tensors(
    spec: ModelSpec,
    batch: int,
    seq_len: int,
    precision: Precision,
    impl: str = "eager",
    fused_attention: bool = True,
    dropout: float = 0.0,
    ops: LayerOps | None = None,
    mask_bytes: float = MASK_BYTES,
) -> list[Saved]:
    """Every tensor a training step keeps for backward (see the module docstring for the rules)."""
    _check_impl(impl)
    if not 0.0 <= dropout < 1.0:
        raise MemwallError(f"dropout must be in [0, 1), got {dropout}")
    o = ops or layer_ops(spec, batch, seq_len, precision, fused_attention)
    st = _Step(spec, o, impl == "eager", fused_attention, dropout, mask_bytes)
    out: list[Saved] = []
    # ---- outside the layers: token ids, embedding norm of post-norm models
    out.append(Saved("embed", "token_ids", o.inp["embed"], "embedding backward (int64 ids)"))
    if st.hidden_drop and get_family(spec.family).embed_dropout:
        out.append(Saved("embed", "embed_dropout_mask", st.mask_td, "dropout backward"))
    if not spec.pre_norm:
        out.append(Saved("embed", "embed_norm_input", st.td, "embedding norm backward"))
        out.append(Saved("embed", "embed_norm_stats", st.stats, "embedding norm backward"))
    # ---- one layer
    out += _attention_saved(st)
    if st.hidden_drop:
        out.append(Saved("layer", "attn_dropout_mask_resid", st.mask_td, "dropout backward"))
    if spec.sandwich_norm:  # Gemma normalises each branch's output before the residual add
        out += st.norm("attn_out_norm", "attention-output")
    out += st.norm("attn_norm", "post-attention")
    out += _mlp_saved(st)
    if st.hidden_drop:
        out.append(Saved("layer", "mlp_dropout_mask", st.mask_td, "dropout backward"))
    if spec.sandwich_norm:
        out += st.norm("mlp_out_norm", "MLP-output")
    out += st.norm("mlp_norm", "post-MLP")
    # ---- after the layers: the final norm (pre-norm) or the last hidden state (post-norm)
    if spec.pre_norm and spec.final_norm:
        out += [
            Saved("final", s.name.replace("mlp_norm", "final_norm"), s.nbytes, s.kept_for)
            for s in st.norm("mlp_norm", "final")
        ]
    else:
        out.append(Saved("final", "last_hidden", st.td, "head backward"))
    return out + _head_saved(st)


def _mla_saved(st: _Step) -> list[Saved]:
    """Multi-head latent attention (DeepSeek; expanded form, fused attention, as training runs
    it): the query latent and its normalised form (q_lora_rank), the compressed KV latent before
    and after its norm and rope (kept whole with the assembled query), the up-projected keys and
    values (V is a view of it, so it is kept whole), the assembled keys, then the fused
    attention's output and log-sum-exp."""
    spec, o = st.spec, st.o
    out: list[Saved] = []
    if "q_a_proj" in o.out:
        out.append(Saved("layer", "q_latent", o.out["q_a_proj"], "query latent norm backward"))
        out.append(Saved("layer", "q_latent_stats", o.tokens * FP32, "query latent norm (fp32)"))
        out.append(Saved("layer", "q_latent_normed", o.out["q_a_norm"], "q_b_proj backward"))
    out.append(Saved("layer", "kv_latent", o.out["kv_a_proj"], "latent norm and rope backward"))
    out.append(Saved("layer", "kv_latent_stats", o.tokens * FP32, "latent norm (fp32)"))
    out.append(Saved("layer", "q_and_latent", o.out["rope"], "attention, kv_b_proj backward"))
    out.append(Saved("layer", "kv_up", o.out["kv_b_proj"], "attention backward (V), assembly"))
    out.append(Saved("layer", "k", o.out["k_assemble"], "attention backward"))
    lse = o.batch * spec.n_heads * o.seq_len * FP32
    out.append(Saved("layer", "attn_out", o.out["attention"], "attention and o_proj backward"))
    out.append(Saved("layer", "attn_logsumexp", lse, "fused attention backward", True))
    return out


def _attention_saved(st: _Step) -> list[Saved]:
    spec, o, a, S = st.spec, st.o, st.a, st.scores
    if spec.is_mla:
        return _mla_saved(st)
    out: list[Saved] = []
    if spec.fused_qkv:
        out.append(Saved("layer", "qkv", o.out["qkv_proj"], "attention backward"))
    else:
        rep = spec.n_heads / spec.n_kv_heads if (st.eager and not st.fused_attention) else 1.0
        out.append(Saved("layer", "q", o.out["q_proj"], "attention backward"))
        kv_note = " (repeated to every head)" if rep > 1 else ""
        out.append(Saved("layer", "k", o.out["k_proj"] * rep, "attention backward" + kv_note))
        out.append(Saved("layer", "v", o.out["v_proj"] * rep, "attention backward" + kv_note))
    if st.fused_attention:
        lse = o.batch * spec.n_heads * o.seq_len * FP32
        out.append(Saved("layer", "attn_out", o.out["attention"], "attention and o_proj backward"))
        out.append(Saved("layer", "attn_logsumexp", lse, "fused attention backward", True))
        return out
    probs = o.out["softmax"]
    if st.eager and a < FP32 and get_family(spec.family).fp32_softmax:
        out.append(Saved("layer", "attn_probs_fp32", S * FP32, "eager softmax backward", True))
        out.append(Saved("layer", "attn_probs", probs, "attention @ V backward", True))
    else:
        out.append(Saved("layer", "attn_probs", probs, "softmax and @V backward", True))
    if st.dropout > 0:
        out.append(Saved("layer", "attn_dropout_mask", S * st.mask_bytes, "dropout backward", True))
        out.append(Saved("layer", "attn_probs_dropped", S * a, "attention @ V backward", True))
    out.append(Saved("layer", "attn_out", o.out["attn_value"], "o_proj backward"))
    return out


def _mlp_saved(st: _Step) -> list[Saved]:
    spec, o = st.spec, st.o
    if spec.is_moe and not spec.moe_layers:  # a pipeline stage of dense layers (DeepSeek)
        return _deepseek_mlp_saved(st)
    if spec.is_moe:
        k = spec.experts_per_token
        inputs = o.tokens * k * spec.d_model * st.a
        out = [
            Saved("layer", "router_probs", o.out["router"], "router backward"),
            Saved("layer", "expert_inputs", inputs, "expert matmuls"),
            Saved("layer", "expert_gate", o.out["expert_gate"], "SiLU backward"),
            Saved("layer", "expert_up", o.out["expert_up"], "gating backward"),
        ]
        if st.eager:
            out.append(Saved("layer", "expert_silu", o.out["expert_gate"], "eager gating mul"))
        out.append(Saved("layer", "expert_act", o.out["expert_act_mul"], "down matmul backward"))
        out.append(Saved("layer", "expert_out", o.out["expert_down"], "routing-weight backward"))
        return out + _deepseek_mlp_saved(st)
    if spec.gated_mlp:
        gate = _gate_bytes(o)
        out = [
            Saved("layer", "gate", gate, "activation backward"),
            Saved("layer", "up", gate, "gating backward"),
        ]
        if st.eager:
            out.append(Saved("layer", "act_gate", gate, "eager gating mul backward"))
        out.append(Saved("layer", "act_mul_out", o.out["act_mul"], "down_proj backward"))
        return out
    out = []
    if spec.activation != "relu":
        out.append(Saved("layer", "fc1_out", o.out["fc1"], "activation backward"))
    if st.eager and spec.raw_activation in eager_chain_activations():
        chain = 3 * o.out["fc1"]
        out.append(Saved("layer", "gelu_chain", chain, "eager tanh-GELU op chain (3 more)"))
    out.append(Saved("layer", "act_out", o.out["act"], "fc2 backward"))
    return out


def _deepseek_mlp_saved(st: _Step) -> list[Saved]:
    """DeepSeek's shared experts (every MoE layer) and dense first layers: a gated MLP each;
    their rows are per-layer averages over the layers that run them."""
    o, out = st.o, []
    for prefix, names in (("shared", ("shared_gate", "shared_up", "shared_act_mul")),
                          ("dense", ("gate_proj", "up_proj", "act_mul"))):  # fmt: skip
        if names[0] not in o.out:
            continue
        gate, up, act = (o.out[n] for n in names)
        out.append(Saved("layer", f"{prefix}_gate", gate, f"{prefix} MLP activation backward"))
        out.append(Saved("layer", f"{prefix}_up", up, f"{prefix} MLP gating backward"))
        out.append(Saved("layer", f"{prefix}_act", act, f"{prefix} MLP down_proj backward"))
    return out


def _head_saved(st: _Step) -> list[Saved]:
    spec, o, a = st.spec, st.o, st.a
    if spec.has_lm_head:
        lm_tokens = o.out["lm_head"] / (spec.vocab_size * a)
        logp = lm_tokens * spec.vocab_size * (FP32 if st.eager else a)
        return [Saved("head", "log_softmax", logp, "cross-entropy backward")]
    pooled = o.batch * spec.d_model * a
    return [
        Saved("head", "pooler_out", pooled, "tanh backward"),
        Saved("head", "classifier_in", pooled, "classifier backward"),
    ]


def frame(saved: list[Saved]) -> pd.DataFrame:
    return pd.DataFrame([s.__dict__ for s in saved])


def part_bytes(
    saved: list[Saved], part: str, attn_core: bool | None = None, mlp: bool | None = None
) -> float:
    """Sum of one part (per layer for `layer`); attn_core / mlp select a subset."""
    return float(
        sum(
            s.nbytes
            for s in saved
            if s.part == part
            and (attn_core is None or s.attn_core == attn_core)
            and (mlp is None or s.mlp == mlp)
        )
    )


def backward_transients(
    spec: ModelSpec,
    ops: LayerOps,
    saved: list[Saved],
    impl: str,
    fused_attention: bool,
) -> dict[str, float]:
    """Temporaries alive on top of the saved tensors while backward runs (gradients of activations).

    layer: backward frees each saved tensor once its op is done, so on top of what is still
    saved there is about one gradient of the widest tensor (the MLP's T*d_ff; two with gating or
    an eager GELU chain; Q/K/V and output gradients for fused attention; the score gradient and
    its softmax input, 2*S, for unfused attention; the attention's runs after the MLP's tensors
    are freed) plus the residual-stream gradient (T*d_model).
    head: the gradients of the log-softmax and of the logits (fp32 in eager: 2 x T*V*4).
    forward_head: the logits and their log-softmax while the loss runs.
    forward_layer: a checkpointed layer's forward keeps nothing: one op's inputs and outputs.
    """
    eager = impl == "eager"
    a = ops.act_bytes
    td = ops.out["o_proj"]
    if spec.is_moe and spec.moe_layers:
        mlp = 2 * ops.out["expert_gate"]
    elif spec.gated_mlp:
        mlp = 2 * _gate_bytes(ops)
    else:
        chain = eager and spec.raw_activation in eager_chain_activations()
        mlp = (2 if chain else 1) * ops.out["fc1"]
    if spec.is_mla:  # gradients of the query, the up-projected K/V and the assembled keys
        q = ops.out["q_b_proj"] if "q_b_proj" in ops.out else ops.out["q_proj"]
        attn = ops.out["attention"] + q + ops.out["kv_b_proj"] + ops.out["k_assemble"]
    elif fused_attention:
        attn = ops.out["attention"] + (ops.out.get("qkv_proj") or 3 * ops.out["q_proj"])
    else:
        s = ops.out["softmax"]
        upcast = eager and a < FP32 and get_family(spec.family).fp32_softmax
        attn = 2 * s * (FP32 / a if upcast else 1.0)
    # the attention's backward runs after the MLP's has freed the MLP tensors
    mlp_saved = part_bytes(saved, "layer", mlp=True)
    layer = max(mlp, attn - mlp_saved) + td
    if spec.has_lm_head:
        logits = ops.out["lm_head"]
        fp32_logits = logits * FP32 / a
        head = (2 * fp32_logits + (logits if a < FP32 else 0)) if eager else 2 * logits
        fwd = (logits + fp32_logits + (fp32_logits if a < FP32 else 0)) if eager else 2 * logits
    else:
        head = fwd = 2 * ops.batch * spec.d_model * a
    per_op = [ops.inp[k] + ops.out[k] for k in ops.out if k in ops.layer_names]
    fwd_layer = max(per_op) + td  # a no-grad layer forward: one op's tensors + the residual
    return {"layer": layer, "head": head, "forward_head": fwd, "forward_layer": fwd_layer}


def _gate_bytes(ops: LayerOps) -> float:
    """One layer's gate projection output (half of a fused gate_up projection's)."""
    if "gate_proj" in ops.out:
        return ops.out["gate_proj"]
    return ops.out["gate_up_proj"] / 2


# Ops that read the block's normalised input themselves (it is already among their inputs).
_READS_BLOCK_INPUT = frozenset(
    "qkv_proj q_proj k_proj v_proj gate_proj up_proj gate_up_proj fc1 router expert_gate "
    "expert_up".split()
)


def inference_activation_peak(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision,
    fused_attention: bool | None = None,
    last_logits_only: bool = False,
) -> tuple[float, str]:
    """Largest live activation bytes in an inference step: one kernel's inputs and outputs plus
    what the model still holds beside them (no_grad: nothing is kept across kernels).

    Beside a kernel inside a layer live, as transformers' eager code holds them (each a
    tokens x width tensor): the layer's input (the residual stream, held by the caller); the
    block's normalised input, unless the kernel reads it itself; in the MLP block of a
    sequential layer, the sum after attention too; from the second layer on, the embedding
    output the model's forward still holds; and the rotary cos / sin tables. Checked against
    torch.profiler's memory events on a 2-layer fp32 Llama (prefill 2 x 2048): within 1%.
    Returns the bytes and the name of the op where the peak is. `last_logits_only`: the LM head
    runs on the last position of each sequence only (what generation does during prefill)."""
    df = op_table(spec, workload, precision, convention="full", fused_attention=fused_attention)
    steps = max(int(df["steps"].iloc[0]), 1)
    per = (df["bytes_act"] + df["bytes_written"]) / df["count"] / steps
    if last_logits_only and spec.has_lm_head and workload.phase in ("prefill", "encode"):
        is_head = df["name"] == "lm_head"
        per = per.where(~is_head, per / workload.seq_len)
    if spec.is_encoder_decoder:
        held = _held_encdec(spec, df, workload, precision.act_bytes)
    else:
        td = float(df.loc[df["name"] == "o_proj", "bytes_written"].iloc[0]) / spec.n_layers
        held = td / steps + _held_in_layers(spec, df, td / steps, precision.act_bytes)
    per = per + held.values
    i = int(per.values.argmax())
    return float(per.iloc[i]), str(df["name"].iloc[i])


def _held_encdec(spec: ModelSpec, df: pd.DataFrame, wl: Workload, a: float) -> pd.Series:
    """T5: beside each kernel live its stack's residual stream and normalised input (tokens x
    width each); beside the decoder's, the encoder's output too (cross-attention reads it)."""
    B, L, d = wl.batch, wl.seq_len, spec.d_model
    enc = df["name"].str.startswith("encoder.")
    stream = enc.map({True: B * L * d * a, False: B * d * a})
    return 2 * stream + (~enc).astype(float) * B * L * d * a


def _held_in_layers(spec: ModelSpec, df: pd.DataFrame, td: float, a: float) -> pd.Series:
    """Bytes held beside each layer kernel besides the residual stream (0 outside layers)."""
    in_layer = df["layer"] == "all"
    in_block = in_layer & (df["kind"] != "norm")
    normed = in_block & ~df["name"].isin(_READS_BLOCK_INPUT)
    names = list(df["name"])
    after_attn = names.index("attn_add_norm") if "attn_add_norm" in names else len(names)
    in_mlp = pd.Series([i > after_attn for i in range(len(names))], index=df.index) & in_block
    embeds = td if spec.n_layers > 1 else 0.0
    tokens = td / (spec.d_model * a)
    tables = (
        2 * tokens * spec.head_dim * spec.rotary_fraction * a if spec.position == "rotary" else 0
    )
    return (
        normed.astype(float) * td
        + in_mlp.astype(float) * td
        + in_layer.astype(float) * (embeds + tables)
    )
