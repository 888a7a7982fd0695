"""Which operations a model runs, in order: names picked from the formula registry."""

from __future__ import annotations

from memwall.count.encdec import encdec_names
from memwall.count.formulas import REGISTRY, Dims, OpDef, repeats_kv
from memwall.count.irope import irope_names, is_irope
from memwall.count.mla import MLA_FORMS, deepseek_mlp_names, mla_layer_names
from memwall.count.moe import shared_moe_names
from memwall.count.paper import PAPER_DEFS
from memwall.count.vision import VISION_OPS
from memwall.errors import MemwallError
from memwall.spec import ModelSpec

CONVENTIONS = ("full", "paper")

PAPER_OPS = (
    "q_proj k_proj v_proj attn_score softmax attn_value o_proj attn_residual attn_norm "
    "fc1 act fc2 mlp_residual mlp_norm"
).split()


def _layer_names(s: ModelSpec, fused: bool, writes_cache: bool, mla: str) -> list[str]:
    """One Transformer block as the kernels it runs: matmuls, attention, fused pointwise chains.

    A pointwise chain between two matmuls is one kernel: the residual add and the next norm are
    counted together (`attn_add_norm`, `mlp_add_norm`); the norm before the first block is
    part of `embed_norm`, and each block's closing `mlp_add_norm` holds the next block's (or
    the final) norm. A parallel block (GPT-NeoX) has no `attn_add_norm`: its `mlp_add_norm`
    adds both branches to the input and holds the next block's two norms.
    """
    if s.is_mla:  # DeepSeek: latent attention, dense first layers, shared experts
        return [*mla_layer_names(s, mla), *deepseek_mlp_names(s), "mlp_add_norm"]
    names = ["qkv_proj"] if s.fused_qkv else ["q_proj", "k_proj", "v_proj"]
    if s.q_scale_kernel:  # OPT scales the queries in a kernel of their own after q_proj
        names.append("q_scale")
    if is_irope(s):  # Llama 4: rotary layers (q/k norms) and NoPE layers (query temperature)
        names += irope_names(s, writes_cache)
    elif s.position == "rotary":
        names.append("rope@cached" if writes_cache else "rope")
    if writes_cache and not is_irope(s):
        names.append("kv_cache_write@after_rope" if s.position == "rotary" else "kv_cache_write")
    if repeats_kv(s) and not fused:
        names.append("kv_repeat")  # eager GQA: K and V copied to every query head
    names += ["attention"] if fused else ["attn_score", "softmax", "attn_value"]
    names.append("o_proj")
    if not s.parallel_block:  # a parallel block adds both branches at its end
        names.append("attn_add_norm")
    if s.is_moe and (s.shared_width or s.dense_layers):  # Qwen2-MoE, Llama 4
        names += shared_moe_names(s)
    elif s.is_moe:
        names += "router expert_gate expert_up expert_act_mul expert_down expert_combine".split()
    elif s.gated_mlp:
        names += ["gate_up_proj"] if s.fused_gate_up else ["gate_proj", "up_proj"]
        names += ["act_mul", "down_proj"]
    else:
        names += ["fc1", "act", "fc2"]
    names.append("mlp_add_norm@parallel" if s.parallel_block else "mlp_add_norm")
    return names


def op_names(
    s: ModelSpec, convention: str, fused: bool, writes_cache: bool, mla: str = "expanded"
) -> list[str]:
    """Registry keys of the rows of a model's table, in order (`mla`: the MLA form)."""
    if convention == "paper":
        return [f"paper:{n}" if f"paper:{n}" in PAPER_DEFS else n for n in PAPER_OPS]
    first = "embed_norm@parallel" if s.parallel_block else "embed_norm"
    embed = [*VISION_OPS] if s.patch_size else ["embed", first]  # ViT: patches, class token
    names = [*embed, *_layer_names(s, fused, writes_cache, mla)]
    if s.has_lm_head:
        names.append("lm_head")
        if s.logit_softcap:
            names.append("logit_softcap")
    if s.pooler:
        names.append("pooler")
    return names


def attention_note(s: ModelSpec, fused: bool, convention: str) -> str | None:
    """What a table's note says when attention is counted as transformers' eager code runs it
    (the default for families with no fused path there), so the larger count is never silent."""
    if convention == "paper" or fused or not s.eager_attention:
        return None
    copies = ", K/V copied to every query head" if repeats_kv(s) else ""
    return (
        f"attention counted unfused, as transformers runs {s.name} (eager: scores "
        f"materialised{copies}); --fused-attention counts one fused kernel that reads the "
        "cache once, as serving kernels run it"
    )


def fused_default(s: ModelSpec, convention: str, fused_attention: bool | None) -> bool:
    """Whether attention is counted as one fused kernel: the one place its default is decided
    (the CLI and memory pass None unless the user asked; parallel passes True, as training
    frameworks and serving engines run it). Default: fused, except where transformers has no
    fused path (Gemma 2's soft-capping, GPT-OSS's sinks: scores materialised, K/V copied per
    query head); T5 runs SDPA; the paper counts the matmuls apart.
    """
    if convention == "paper":
        return False
    if s.is_encoder_decoder:
        return True
    return (not s.eager_attention) if fused_attention is None else fused_attention


def mla_form(s: ModelSpec, phase: str, mla: str | None) -> str | None:
    """How multi-head latent attention is counted (None: not an MLA model). Default: absorbed
    for decode and generate (vLLM, SGLang, FlashMLA attend over the cached latents), expanded
    for prefill and encode (engines up-project the latents there: fewer FLOPs at long inputs)."""
    if mla is not None and mla not in MLA_FORMS:
        raise MemwallError(f"unknown MLA form {mla!r}; accepted: {', '.join(MLA_FORMS)}")
    if not s.is_mla:
        return None
    if mla is not None:
        return mla
    return "absorbed" if phase in ("decode", "generate") else "expanded"


def op_defs(
    s: ModelSpec,
    convention: str = "full",
    fused_attention: bool | None = None,
    phase: str = "prefill",
    mla: str | None = None,
) -> list[OpDef]:
    """The operations counted for a model under a convention (the table's rows, in order).
    `mla`: "absorbed" or "expanded" for MLA models (None: `mla_form`'s default; ignored for
    other models)."""
    if convention not in CONVENTIONS:
        raise MemwallError(f"unknown convention {convention!r}; accepted: {', '.join(CONVENTIONS)}")
    if convention == "paper" and (s.gated_mlp or s.is_moe):
        raise MemwallError(
            f"the paper convention covers BERT/GPT-style models with a plain MLP; "
            f"{s.name} has a gated MLP: use --convention full"
        )
    if s.is_encoder_decoder:  # T5: encoder and decoder stacks (count.encdec)
        if convention == "paper":
            raise MemwallError(
                f"the paper convention covers BERT/GPT-style models; {s.name} is an "
                "encoder-decoder model: use --convention full"
            )
        if fused_attention is False:
            raise MemwallError(
                f"{s.name}: unfused attention is not modelled for encoder-decoder models "
                "(counted as transformers' SDPA kernel); drop --unfused-attention"
            )
        return [REGISTRY[n] for n in encdec_names(s, phase)]
    fused = fused_default(s, convention, fused_attention)
    writes_cache = s.is_decoder and phase != "encode"
    form = mla_form(s, phase, mla) or "expanded"
    return [REGISTRY[n] for n in op_names(s, convention, fused, writes_cache, form)]


# Facts about ops, read from the registry (every module that adds rows is imported above).
MODEL_LEVEL_OPS = frozenset(op.name for op in REGISTRY.values() if op.model_level)
HEAD_OPS = frozenset(op.name for op in REGISTRY.values() if op.role == "head")
_ONE = Dims(1, 1, 1, 1, False, False, 1)


def linear_ops() -> frozenset[str]:
    """Names of the Linear layers (rows with a matmul shape) of the plain registry rows."""
    return frozenset(k for k, op in REGISTRY.items() if op.shape and not set("@:") & set(k))


def linear_dims(spec: ModelSpec, name: str) -> tuple[int, int]:
    """(in, out) features of a Linear row of `spec` (its plain registry row's shape)."""
    shape = REGISTRY[name].shape
    if shape is None:
        raise MemwallError(f"{name!r} is not a Linear layer")
    _, k, n = shape(spec, _ONE)
    return int(k), int(n)
