"""Build the module a `torchvision:NAME` or `module:function` source names, with its inputs.

torchvision models are built with `weights=None` (random, nothing downloaded) on the meta
device, so even the largest traces in a second without allocating its weights. A
`module:function` entry point is the user's code: memwall calls it with the keyword arguments
it declares among `batch`, `image_size`, `seq_len`, `device` and `dtype`, and it returns
`(module, inputs)` where inputs is a tensor, a tuple of positional inputs, or a dict of keyword
inputs.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch

from memwall.errors import MemwallError, suggest
from memwall.sources import (
    DEFAULT_IMAGE_SIZE,
    ModuleSource,
    check_image_size,
    install_torchvision_fallback,
)

# torchvision model groups memwall can feed: one image batch (B, 3, H, W) in, tensors out.
IMAGE_GROUPS = ("classification", "segmentation")


@dataclass
class ModuleRun:
    """A module and the inputs of one forward call."""

    name: str
    module: torch.nn.Module
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    inputs: str = ""  # what the inputs are, for the output

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())


def torchvision_ops_available() -> bool:
    """Whether torchvision's compiled ops loaded (memwall only needs its Python models; a
    torchvision built for another torch imports without them, see `memwall.sources`)."""
    install_torchvision_fallback()
    import torchvision

    return not hasattr(torchvision, "compiled_ops_error")


def torchvision_models():
    """`torchvision.models` (importable even when its compiled ops are not)."""
    install_torchvision_fallback()
    try:
        return importlib.import_module("torchvision.models")
    except ImportError as e:
        raise MemwallError(
            "torchvision models need torchvision: pip install 'memory-wall[torch]'"
        ) from e


def _group_of(tvm, name: str) -> str | None:
    groups = {
        "classification": tvm,
        "segmentation": tvm.segmentation,
        "detection": tvm.detection,
        "video": tvm.video,
        "optical_flow": tvm.optical_flow,
        "quantization": tvm.quantization,
    }
    for group, mod in groups.items():
        if name in tvm.list_models(module=mod):
            return group
    return None


def torchvision_run(
    name: str,
    batch: int = 1,
    image_size: int = DEFAULT_IMAGE_SIZE,
    dtype: torch.dtype = torch.float32,
    device: str = "meta",
) -> ModuleRun:
    """torchvision's `name` (weights=None) and a (batch, 3, size, size) image batch."""
    tvm = torchvision_models()
    check_image_size(image_size)
    names = tvm.list_models()
    if name not in names:
        raise MemwallError(
            f"torchvision has no model {name!r}{suggest(name, names)}; "
            f"{len(names)} models, e.g. resnet50, vgg19, vit_b_16 (torchvision.models.list_models)"
        )
    group = _group_of(tvm, name)
    if group not in IMAGE_GROUPS:
        raise MemwallError(
            f"torchvision:{name} is a {group} model, which takes more than an image batch; "
            f"memwall builds {' and '.join(IMAGE_GROUPS)} models: use a module:function "
            "entry point that returns the model and its inputs"
        )
    kwargs: dict[str, Any] = {"weights": None}
    if name.startswith("vit_"):
        kwargs["image_size"] = image_size  # ViT's position table is sized by the image
    if group == "segmentation":
        kwargs["weights_backbone"] = None
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = False  # scipy-based init; values do not matter here
    with torch.device(device):
        try:
            model = tvm.get_model(name, **kwargs)
        except (ValueError, TypeError) as e:
            raise MemwallError(f"torchvision cannot build {name!r}: {e}") from None
        x = torch.zeros(batch, 3, image_size, image_size, dtype=dtype)
    model = model.to(dtype).eval()
    return ModuleRun(
        f"torchvision:{name}", model, (x,), {}, f"images {batch}x3x{image_size}x{image_size}"
    )


def entry_point_run(
    target: str,
    batch: int = 1,
    image_size: int | None = None,
    seq_len: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str = "meta",
) -> ModuleRun:
    """Import `module`, call `function` with the arguments it declares, check what it returns."""
    mod_name, fn_name = target.split(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise MemwallError(f"cannot import {mod_name!r} for entry point {target}: {e}") from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        names = [n for n in dir(mod) if not n.startswith("_") and callable(getattr(mod, n))]
        raise MemwallError(
            f"{mod_name} has no function {fn_name!r}{suggest(fn_name, names)} (entry point "
            f"{target})"
        )
    offered = {
        "batch": batch,
        "image_size": image_size,
        "seq_len": seq_len,
        "device": device,
        "dtype": dtype,
    }
    params = inspect.signature(fn).parameters
    call = {k: v for k, v in offered.items() if k in params and v is not None}
    out = fn(**call)
    if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.nn.Module)):
        raise MemwallError(
            f"entry point {target} must return (torch.nn.Module, inputs), got {type(out).__name__}"
        )
    module, inputs = out
    if isinstance(inputs, torch.Tensor):
        args, kwargs = (inputs,), {}
    elif isinstance(inputs, dict):
        args, kwargs = (), dict(inputs)
    elif isinstance(inputs, tuple | list):
        args, kwargs = tuple(inputs), {}
    else:
        raise MemwallError(
            f"entry point {target} returned inputs of type {type(inputs).__name__}: "
            "give a tensor, a tuple of inputs or a dict of keyword inputs"
        )
    shapes = [tuple(t.shape) for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
    return ModuleRun(target, module.eval(), args, kwargs, f"inputs {shapes}")


def build_run(
    source: ModuleSource,
    batch: int = 1,
    image_size: int | None = None,
    seq_len: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str = "meta",
) -> ModuleRun:
    """The module and inputs a module source names."""
    if source.kind == "torchvision":
        size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
        return torchvision_run(source.target, batch, size, dtype, device)
    if image_size is not None:
        check_image_size(image_size)
    return entry_point_run(source.target, batch, image_size, seq_len, dtype, device)
