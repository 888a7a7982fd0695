"""Pruning that changes what runs: smaller dense matrices (structured) or CSR (unstructured).

Criteria (stated in every output):
- structured, fraction f: in every block, the f of FFN neurons with the smallest
  |fc row|_2 * |proj column|_2 (the neuron's weight in and out), and round(f * heads) heads
  with the smallest |Q,K,V rows|_2 * |output columns|_2, are removed (at least one of each kept);
  the remaining matrices are smaller and dense.
- unstructured, fraction f: in every block matrix, the f of weights with the smallest |w| are
  zeroed; after recovery the matrices are stored and run as CSR (fp32 values, int32 indices;
  torch's CPU CSR x dense kernel). BSR had no faster CPU kernel here.
Recovery: `recovery_steps` of the recipe's own training at a tenth of its learning rate (masks
re-applied after every step), deterministic like the training itself; its result is cached
(`variants`), so each variant is fine-tuned once per base model, recipe and torch version.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from memwall.compress.gpt import GPT, Attention
from memwall.compress.train import Recipe, Trained, deterministic, train_steps

RECOVERY_LR_SCALE = 0.1
RECOVERY_SEED_OFFSET = 1  # the recovery's batches and RNG: the recipe's seed + 1


def _keep(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    return scores.topk(max(1, n_keep)).indices.sort().values


def _sub_linear(lin: nn.Linear, rows: torch.Tensor | None, cols: torch.Tensor | None) -> nn.Linear:
    w = lin.weight.detach()
    b = lin.bias.detach()
    if rows is not None:
        w, b = w[rows], b[rows]
    if cols is not None:
        w = w[:, cols]
    out = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        out.weight.copy_(w)
        out.bias.copy_(b)
    return out


def _prune_heads(attn: Attention, fraction: float) -> None:
    H, hd = attn.n_heads, attn.head_dim
    wq = attn.qkv.weight.detach().view(3, H, hd, -1)
    wo = attn.out.weight.detach().view(-1, H, hd)
    score = wq.pow(2).sum((0, 2, 3)).sqrt() * wo.pow(2).sum((0, 2)).sqrt()
    heads = _keep(score, H - round(fraction * H))
    per_head = torch.arange(hd)
    qkv_rows = torch.cat([s * H * hd + h * hd + per_head for s in range(3) for h in heads.tolist()])
    out_cols = torch.cat([h * hd + per_head for h in heads.tolist()])
    attn.qkv = _sub_linear(attn.qkv, qkv_rows, None)
    attn.out = _sub_linear(attn.out, None, out_cols)
    attn.n_heads = len(heads)


def prune_structured(model: GPT, fraction: float) -> GPT:
    """A copy with a fraction of FFN neurons and heads removed in every block (see module doc)."""
    m = copy.deepcopy(model)
    for b in m.blocks:
        score = b.fc.weight.detach().norm(dim=1) * b.proj.weight.detach().norm(dim=0)
        keep = _keep(score, round((1 - fraction) * score.numel()))
        b.fc = _sub_linear(b.fc, keep, None)
        b.proj = _sub_linear(b.proj, None, keep)
        _prune_heads(b.attn, fraction)
    return m


def block_linears(model: GPT) -> list[nn.Linear]:
    return [lin for b in model.blocks for lin in (b.attn.qkv, b.attn.out, b.fc, b.proj)]


def magnitude_masks(model: GPT, fraction: float) -> list[torch.Tensor]:
    """Per matrix: True where the weight survives (the 1 - f largest magnitudes)."""
    masks = []
    for lin in block_linears(model):
        w = lin.weight.detach().abs().flatten()
        n_drop = int(round(fraction * w.numel()))
        mask = torch.ones_like(w, dtype=torch.bool)
        if n_drop:
            mask[w.argsort()[:n_drop]] = False
        masks.append(mask.view_as(lin.weight))
    return masks


def apply_masks(model: GPT, masks: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for lin, mask in zip(block_linears(model), masks, strict=True):
            lin.weight.mul_(mask)


def prune_unstructured_dense(model: GPT, fraction: float) -> tuple[GPT, list[torch.Tensor]]:
    """A copy with the smallest weights zeroed (still dense), and the masks."""
    m = copy.deepcopy(model)
    masks = magnitude_masks(m, fraction)
    apply_masks(m, masks)
    return m, masks


class CSRLinear(nn.Module):
    """y = x W^T + b with W in CSR (fp32 values, int32 indices)."""

    def __init__(self, lin: nn.Linear) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "CSR support is in beta"
            c = lin.weight.detach().to_sparse_csr()
            self.weight = torch.sparse_csr_tensor(
                c.crow_indices().int(), c.col_indices().int(), c.values(), c.shape
            )
        self.register_buffer("bias", lin.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return F.linear(x.reshape(-1, shape[-1]), self.weight, self.bias).reshape(*shape[:-1], -1)

    def stored_bytes(self) -> int:
        w = self.weight
        return sum(
            t.numel() * t.element_size() for t in (w.values(), w.col_indices(), w.crow_indices())
        )


def to_csr(model: GPT) -> GPT:
    """A copy whose block matrices are CSRLinear (run by torch's sparse CPU kernel)."""
    m = copy.deepcopy(model)
    for b in m.blocks:
        for parent, name in ((b.attn, "qkv"), (b.attn, "out"), (b, "fc"), (b, "proj")):
            setattr(parent, name, CSRLinear(getattr(parent, name)))
    return m


def recovery_settings(r: Recipe) -> dict[str, float | int]:
    """What the recovery fine-tune runs with beyond the recipe (part of a variant's cache key)."""
    return {
        "steps": r.recovery_steps,
        "lr_scale": RECOVERY_LR_SCALE,
        "seed": r.seed + RECOVERY_SEED_OFFSET,
    }


def recover(
    trained: Trained, model: GPT, masks: list[torch.Tensor] | None = None, progress: bool = False
) -> GPT:
    """A short fine-tune of a pruned model on the training split (masks kept), in place."""
    r = trained.recipe
    if r.recovery_steps == 0:
        return model
    seed = r.seed + RECOVERY_SEED_OFFSET
    after = (lambda: apply_masks(model, masks)) if masks is not None else None
    with deterministic(seed):
        train_steps(
            model,
            trained.corpus.train,
            r,
            r.recovery_steps,
            seed,
            lr_scale=RECOVERY_LR_SCALE,
            after_step=after,
            label="recovery fine-tune",
            progress=progress,
        )
    return model
