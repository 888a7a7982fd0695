"""Formulas of a Vision Transformer's input (HF ViT): the patch embedding and the class token.
Added to `formulas.REGISTRY` on import.

The image is cut into (image / patch)^2 patches of patch x patch pixels; a Conv2d of kernel and
stride `patch_size` projects each to `d_model`: a matmul of (patch^2 x channels) -> d_model per
patch, with a bias (a ViT's `embed` row: a matmul, where a text model's is a gather). The
learned class token is put before the patches, the learned position table added and layer 0's
LayerNorm applied: one pointwise kernel (`embed_norm`), which keeps the sum (the residual
stream) and the normalised copy. A workload's
sequence length is the token count, patches + 1 (`ModelSpec.image_tokens`). The projection,
class token and position table are embedding weights (read at the embedding width under integer
formats, as `count.weights` stores them).
"""

from __future__ import annotations

from typing import Any

from memwall.count.formulas import POINTWISE_FLOPS, REGISTRY, Bytes, Cost, Dims, OpDef
from memwall.spec import ModelSpec


def _patches(d: Dims) -> Any:
    """Patches in the step (every token but each image's class token)."""
    return d.B * (d.Lq - 1)


def _patch_embed(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    k = s.patch_size**2 * s.num_channels  # pixels of one patch
    n = _patches(d)
    mm = 2 * n * k * s.d_model
    return Cost(
        flops=mm + n * s.d_model,  # + the bias
        w=(k + 1) * s.d_model * p.head,
        a=n * k * p.a,  # each pixel is read once (stride = kernel)
        out=n * s.d_model * p.a,
        mm=mm,
    )


def _embed_norm_patch(s: ModelSpec, d: Dims, p: Bytes) -> Cost:
    n = d.T * s.d_model
    table = (d.Lq + 1) * s.d_model  # position rows and the class token, read once per step
    return Cost(
        flops=(1 + POINTWISE_FLOPS[s.norm]) * n,  # + positions, LayerNorm
        w=table * p.head + (s.norm_params() * p.small),
        a=_patches(d) * s.d_model * p.a,
        out=2 * n * p.a,
    )


VISION_OPS: dict[str, OpDef] = {
    "embed@patch": OpDef("embed", "matmul", False, _patch_embed, role="head"),
    "embed_norm@patch": OpDef("embed_norm", "norm", False, _embed_norm_patch, "act"),
}
REGISTRY.update(VISION_OPS)
