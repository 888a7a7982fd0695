"""Trace a deep model through a few of its layers, weighting each by the layers it stands for.

On the meta device every layer of one kind runs the same aten calls on the same shapes, so
tracing all 61 layers of DeepSeek-V3 (or 80 of Llama-2-70B) repeats identical work. memwall
keeps the layers whose context is new and weights each kept layer by how many layers share its
context. A layer's context is its own kind and its neighbours' kinds (a fused kernel spans the
end of one layer and the next layer's norm) and whether it is the first layer of its kind (a
value computed once before the layers, such as a rotary table or a mask, fuses with the first
layer that uses it). A layer's kind is its structure: module classes, parameter shapes and
dtypes, scalar attributes other than its index, and its entry in `config.layer_types`.

The kept layers stay in their order and each keeps the neighbours' kinds it had, so every
kernel the trace finds in a kept layer is one the full trace finds in each layer it stands for.
A kernel that starts before the layers and reaches into several of them (a mask built once and
converted in every layer) is weighted part by part instead (`memwall.trace.fusion.kernels`).
Only meta traces are sampled (on real values, routing differs from layer to layer), and only
decoder-only or encoder-only models; `tests/test_agreement_presets.py` checks the totals equal
the full trace's exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

_INDEX_ATTRS = frozenset({"layer_idx", "layer_id", "layer_index", "block_idx", "idx"})
_SCALARS = (bool, int, float, str, type(None))


@dataclass(frozen=True)
class LayerPlan:
    """Which layers of the ModuleList at `path` were traced, and the weight of each."""

    path: str  # e.g. "model.layers"
    total: int  # layers in the model
    kept: tuple[int, ...]  # original indices, in order
    weights: tuple[int, ...]  # layers each kept one stands for (they sum to `total`)

    def layer_of(self, module: str) -> int | None:
        """Index (in the traced model) of the layer `module` belongs to; None outside them."""
        if not module.startswith(self.path + "."):
            return None
        head = module[len(self.path) + 1 :].split(".", 1)[0]
        return int(head) if head.isdigit() else None

    def weight_of(self, module: str) -> int:
        """Layers an op run in `module` stands for: its layer's weight, 1 outside the layers."""
        i = self.layer_of(module)
        return 1 if i is None else self.weights[i]

    def note(self) -> str:
        return (
            f"{len(self.kept)} of {self.total} layers traced (layers {list(self.kept)}), each "
            f"weighted by the layers of the same kind and neighbours it stands for "
            f"({list(self.weights)}): exact on the meta device"
        )


def _scalar_attrs(m: nn.Module) -> tuple:
    return tuple(
        sorted(
            (k, v)
            for k, v in vars(m).items()
            if not k.startswith("_") and k not in _INDEX_ATTRS and isinstance(v, _SCALARS)
        )
    )


def layer_kind(layer: nn.Module, layer_type: Any = None) -> tuple:
    """Everything that decides which aten calls a layer runs on given shapes (not its index)."""
    parts: list[Any] = [layer_type]
    for name, m in layer.named_modules():
        params = tuple((n, tuple(p.shape), p.dtype) for n, p in m.named_parameters(recurse=False))
        bufs = tuple((n, tuple(b.shape), b.dtype) for n, b in m.named_buffers(recurse=False))
        parts.append((name, type(m).__name__, _scalar_attrs(m), params, bufs))
    return tuple(parts)


def plan_layers(kinds: list[Any]) -> tuple[list[int], list[int]]:
    """(kept indices, their weights) for a sequence of layer kinds (see the module docstring).

    A layer is skipped when a kept layer has its context; where skipping breaks a kept layer's
    neighbours, the skipped layers from the last point with matching neighbours are kept."""
    n = len(kinds)
    seen: set[Any] = set()
    sigs = []
    for j, k in enumerate(kinds):
        prev = kinds[j - 1] if j else "<start>"
        nxt = kinds[j + 1] if j + 1 < n else "<end>"
        sigs.append((prev, k, nxt, k not in seen))
        seen.add(k)
    kept: list[int] = []
    rep: dict[Any, int] = {}
    for j in range(n):
        if sigs[j] in rep:
            continue
        if kept and kept[-1] != j - 1:
            a = kept[-1]
            t = max(
                t
                for t in range(a + 1, j + 1)
                if kinds[t] == kinds[a + 1] and kinds[t - 1] == kinds[a]
            )
            kept.extend(range(t, j))
        kept.append(j)
        rep[sigs[j]] = j
    weight = dict.fromkeys(kept, 1)
    kept_set = set(kept)
    for j in range(n):
        if j not in kept_set:
            weight[rep[sigs[j]]] += 1
    return kept, [weight[j] for j in kept]


def _layer_list(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The ModuleList holding the model's `num_hidden_layers` blocks."""
    config = getattr(model, "config", None)
    if config is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n = getattr(text, "num_hidden_layers", None)
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList) and len(m) == n and n and n > 1
    ]
    return found[0] if len(found) == 1 else None


def _renumber(layer: nn.Module, old: int, new: int) -> None:
    for m in layer.modules():
        for attr in _INDEX_ATTRS:
            if vars(m).get(attr) == old and isinstance(vars(m)[attr], int):
                setattr(m, attr, new)


def sample_layers(model: nn.Module) -> LayerPlan | None:
    """Cut `model` (built on meta) down to the layers `plan_layers` keeps, in place; None when
    every layer is needed or the layer list is not found (then the whole model is traced)."""
    found = _layer_list(model)
    if found is None:
        return None
    path, layers = found
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    config = config or model.config
    types = getattr(config, "layer_types", None)
    if types is not None and len(types) != len(layers):
        return None
    kinds = [layer_kind(m, types[i] if types else None) for i, m in enumerate(layers)]
    kept, weights = plan_layers(kinds)
    if len(kept) == len(layers):
        return None
    new = nn.ModuleList([layers[i] for i in kept])
    for j, i in enumerate(kept):
        _renumber(new[j], i, j)
    parent_path, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_path) if parent_path else model, attr, new)
    config.num_hidden_layers = len(kept)
    if types is not None:
        config.layer_types = [types[i] for i in kept]
    return LayerPlan(path, len(layers), tuple(kept), tuple(weights))
