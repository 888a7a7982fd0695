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
- the loss keeps the log-softmax of the logits; the embedding lookup keeps the token ids.

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
from memwall.spec import ModelSpec, Precision, Workload, check_workload_fits

IMPLS = ("eager", "fused")
FP32 = 4.0
MASK_BYTES = 1.0  # CUDA native_dropout keeps a bool mask
LABELS = (
    2  # the encoder's training head: pooler + a 2-way classifier (BertForSequenceClassification)
)
_GELU_CHAINS = ("gelu_new", "gelu_fast")  # transformers implements these as eager op chains
_HIDDEN_DROPOUT = ("bert", "gpt2", "opt")  # families with dropout on the residual branches
_EMBED_DROPOUT = ("bert", "gpt2")  # ... and on the embeddings
_FP32_SOFTMAX = ("opt", "llama", "mistral", "qwen2", "mixtral")  # eager softmax(dtype=float32)
MLP_TENSORS = frozenset(
    "router_probs expert_inputs expert_gate expert_up expert_silu expert_act expert_out gate up "
    "act_gate act_mul_out fc1_out gelu_chain act_out mlp_dropout_mask".split()
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


def training_workload(spec: ModelSpec, batch: int, seq_len: int) -> Workload:
    """A training forward is one pass over the whole sequence: encode or prefill."""
    wl = Workload("prefill" if spec.is_decoder else "encode", batch, seq_len)
    check_workload_fits(spec, wl)
    return wl


def layer_ops(
    spec: ModelSpec,
    batch: int,
    seq_len: int,
    precision: Precision,
    fused_attention: bool = True,
) -> LayerOps:
    df = op_table(
        spec,
        training_workload(spec, batch, seq_len),
        precision,
        convention="full",
        fused_attention=fused_attention,
    )
    out, inp, flops = {}, {}, {}
    for r in df.itertuples(index=False):
        out[r.name] = r.bytes_written / r.count
        inp[r.name] = r.bytes_act / r.count
        flops[r.name] = r.flops / r.count
    return LayerOps(df, out, inp, flops, batch * seq_len, batch, seq_len, precision.act_bytes)


def _check_impl(impl: str) -> None:
    if impl not in IMPLS:
        raise MemwallError(f"unknown implementation {impl!r}; accepted: {', '.join(IMPLS)}")


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
    eager = impl == "eager"
    a = precision.act_bytes
    T = o.tokens
    td = o.out["o_proj"]  # one T x d_model activation
    mask_td = T * spec.d_model * mask_bytes
    hidden_drop = dropout > 0 and spec.family in _HIDDEN_DROPOUT
    S = batch * spec.n_heads * seq_len * seq_len  # attention scores per layer
    stats = T * FP32 * (2 if spec.norm == "layernorm" else 1)
    eager_rms = eager and spec.norm == "rmsnorm"
    norm_in = td * (FP32 / a if eager_rms and a < FP32 else 1.0)

    def norm(prefix: str, where: str) -> list[Saved]:
        s = [
            Saved("layer", f"{prefix}_input", norm_in, f"{where} norm backward"),
            Saved("layer", f"{prefix}_stats", stats, f"{where} norm backward (fp32)"),
            Saved("layer", f"{prefix}_output", td, "input of the next matmul"),
        ]
        if eager_rms:
            s.append(Saved("layer", f"{prefix}_normalized", td, "eager RMSNorm: x/rms before *w"))
        return s

    out: list[Saved] = []
    # ---- outside the layers: token ids, embedding norm of post-norm models
    out.append(Saved("embed", "token_ids", o.inp["embed"], "embedding backward (int64 ids)"))
    if hidden_drop and spec.family in _EMBED_DROPOUT:
        out.append(Saved("embed", "embed_dropout_mask", mask_td, "dropout backward"))
    if not spec.pre_norm:
        out.append(Saved("embed", "embed_norm_input", td, "embedding norm backward"))
        out.append(Saved("embed", "embed_norm_stats", stats, "embedding norm backward"))

    # ---- one layer
    if spec.fused_qkv:
        out.append(Saved("layer", "qkv", o.out["qkv_proj"], "attention backward"))
    else:
        rep = spec.n_heads / spec.n_kv_heads if (eager and not fused_attention) else 1.0
        out.append(Saved("layer", "q", o.out["q_proj"], "attention backward"))
        kv_note = " (repeated to every head)" if rep > 1 else ""
        out.append(Saved("layer", "k", o.out["k_proj"] * rep, "attention backward" + kv_note))
        out.append(Saved("layer", "v", o.out["v_proj"] * rep, "attention backward" + kv_note))
    if fused_attention:
        lse = batch * spec.n_heads * seq_len * FP32
        out.append(Saved("layer", "attn_out", o.out["attention"], "attention and o_proj backward"))
        out.append(Saved("layer", "attn_logsumexp", lse, "fused attention backward", True))
    else:
        probs = o.out["softmax"]
        if eager and a < FP32 and spec.family in _FP32_SOFTMAX:
            out.append(Saved("layer", "attn_probs_fp32", S * FP32, "eager softmax backward", True))
            out.append(Saved("layer", "attn_probs", probs, "attention @ V backward", True))
        else:
            out.append(Saved("layer", "attn_probs", probs, "softmax and @V backward", True))
        if dropout > 0:
            out.append(
                Saved("layer", "attn_dropout_mask", S * mask_bytes, "dropout backward", True)
            )
            out.append(Saved("layer", "attn_probs_dropped", S * a, "attention @ V backward", True))
        out.append(Saved("layer", "attn_out", o.out["attn_value"], "o_proj backward"))
    if hidden_drop:
        out.append(Saved("layer", "attn_dropout_mask_resid", mask_td, "dropout backward"))
    out += norm("attn_norm", "post-attention")
    if spec.is_moe:
        k = spec.experts_per_token
        out.append(Saved("layer", "router_probs", o.out["router"], "router backward"))
        out.append(Saved("layer", "expert_inputs", T * k * spec.d_model * a, "expert matmuls"))
        out.append(Saved("layer", "expert_gate", o.out["expert_gate"], "SiLU backward"))
        out.append(Saved("layer", "expert_up", o.out["expert_up"], "gating backward"))
        if eager:
            out.append(Saved("layer", "expert_silu", o.out["expert_gate"], "eager gating mul"))
        out.append(Saved("layer", "expert_act", o.out["expert_act_mul"], "down matmul backward"))
        out.append(Saved("layer", "expert_out", o.out["expert_down"], "routing-weight backward"))
    elif spec.gated_mlp:
        out.append(Saved("layer", "gate", o.out["gate_proj"], "activation backward"))
        out.append(Saved("layer", "up", o.out["up_proj"], "gating backward"))
        if eager:
            out.append(Saved("layer", "act_gate", o.out["gate_proj"], "eager gating mul backward"))
        out.append(Saved("layer", "act_mul_out", o.out["act_mul"], "down_proj backward"))
    else:
        if spec.activation != "relu":
            out.append(Saved("layer", "fc1_out", o.out["fc1"], "activation backward"))
        if eager and spec.raw_activation in _GELU_CHAINS:
            out.append(
                Saved("layer", "gelu_chain", 3 * o.out["fc1"], "eager tanh-GELU op chain (3 more)")
            )
        out.append(Saved("layer", "act_out", o.out["act"], "fc2 backward"))
    if hidden_drop:
        out.append(Saved("layer", "mlp_dropout_mask", mask_td, "dropout backward"))
    out += norm("mlp_norm", "post-MLP")

    # ---- after the layers: the final norm (pre-norm) or the last hidden state (post-norm)
    if spec.pre_norm and spec.final_norm:
        out += [
            Saved("final", s.name.replace("mlp_norm", "final_norm"), s.nbytes, s.kept_for)
            for s in norm("mlp_norm", "final")
        ]
    else:
        out.append(Saved("final", "last_hidden", td, "head backward"))

    # ---- head and loss
    if spec.has_lm_head:
        lm_tokens = o.out["lm_head"] / (spec.vocab_size * a)
        logp = lm_tokens * spec.vocab_size * (FP32 if eager else a)
        out.append(Saved("head", "log_softmax", logp, "cross-entropy backward"))
    else:
        pooled = batch * spec.d_model * a
        out.append(Saved("head", "pooler_out", pooled, "tanh backward"))
        out.append(Saved("head", "classifier_in", pooled, "classifier backward"))
    return out


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
    if spec.is_moe:
        mlp = 2 * ops.out["expert_gate"]
    elif spec.gated_mlp:
        mlp = 2 * ops.out["gate_proj"]
    else:
        mlp = (2 if eager and spec.raw_activation in _GELU_CHAINS else 1) * ops.out["fc1"]
    if fused_attention:
        attn = ops.out["attention"] + (ops.out.get("qkv_proj") or 3 * ops.out["q_proj"])
    else:
        s = ops.out["softmax"]
        upcast = eager and a < FP32 and spec.family in _FP32_SOFTMAX
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
    per_op = [ops.inp[k] + ops.out[k] for k in ops.out if _is_layer_op(ops, k)]
    fwd_layer = max(per_op) + td  # a no-grad layer forward: one op's tensors + the residual
    return {"layer": layer, "head": head, "forward_head": fwd, "forward_layer": fwd_layer}


def _is_layer_op(ops: LayerOps, name: str) -> bool:
    return bool((ops.table.loc[ops.table["name"] == name, "layer"] == "all").any())


def inference_activation_peak(
    spec: ModelSpec,
    workload: Workload,
    precision: Precision,
    fused_attention: bool = True,
    last_logits_only: bool = False,
) -> tuple[float, str]:
    """Largest live activation bytes in an inference step: one kernel's inputs and outputs plus
    the residual stream beside them (no_grad: nothing is kept across kernels). Returns the bytes
    and the name of the op where the peak is. `last_logits_only`: the LM head runs on the last
    position of each sequence only (what generation does during prefill)."""
    df = op_table(spec, workload, precision, convention="full", fused_attention=fused_attention)
    steps = max(int(df["steps"].iloc[0]), 1)
    per = (df["bytes_act"] + df["bytes_written"]) / df["count"] / steps
    if last_logits_only and spec.has_lm_head and workload.phase in ("prefill", "encode"):
        is_head = df["name"] == "lm_head"
        per = per.where(~is_head, per / workload.seq_len)
    resid = float(df.loc[df["name"] == "o_proj", "bytes_written"].iloc[0]) / spec.n_layers / steps
    i = int(per.values.argmax())
    return float(per.iloc[i]) + resid, str(df["name"].iloc[i])
