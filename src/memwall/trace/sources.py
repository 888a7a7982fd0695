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
from collections.abc import Collection, Iterator
from contextlib import contextmanager
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
from memwall.trace.foreign import foreign_code

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
    foreign: str = ""  # who wrote the module when not memwall (errors name it), e.g. "m:build"
    hint: str = ""  # what the module accepts, added to the line a forward error becomes

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def forward(self) -> Any:
        """One forward call; a foreign module's error becomes one MemwallError line."""
        if not self.foreign:
            return self.module(*self.args, **self.kwargs)
        with foreign_code(self.foreign, self.hint):
            return self.module(*self.args, **self.kwargs)


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


def _patch_size(name: str) -> int | None:
    """The patch side of a torchvision ViT from its name (vit_b_16 -> 16), else None."""
    tail = name.rsplit("_", 1)[-1]
    return int(tail) if name.startswith("vit_") and tail.isdigit() else None


def _min_size(tvm, name: str) -> int | None:
    """The smallest image side torchvision states for `name` (its weights' `min_size`)."""
    try:
        sizes = [w.meta.get("min_size") for w in tvm.get_model_weights(name)]
    except (ValueError, KeyError, AttributeError):
        return None
    sides = [s[0] for s in sizes if isinstance(s, tuple) and s and isinstance(s[0], int)]
    return min(sides) if sides else None


def _size_hint(tvm, name: str, size: int) -> str:
    """What `name` accepts, for the line an error at `size` becomes ('' when nothing known)."""
    low = _min_size(tvm, name)
    if low is not None and size < low:
        return (
            f"; torchvision states a minimum of {low}x{low} for {name}: --image-size {low} or more"
        )
    if size != DEFAULT_IMAGE_SIZE:
        return f" (its default --image-size is {DEFAULT_IMAGE_SIZE})"
    return ""


def _check_vit_size(name: str, size: int) -> None:
    """ViT cuts the image into patches: torchvision asserts the side is a multiple of them."""
    patch = _patch_size(name)
    if patch is not None and size % patch:
        near = max(patch, round(size / patch) * patch)
        raise MemwallError(
            f"torchvision:{name} takes images whose side is a multiple of its patch size "
            f"{patch} (e.g. {near} or {DEFAULT_IMAGE_SIZE}), got --image-size {size}"
        )


@contextmanager
def _weights_on_meta() -> Iterator[None]:
    """Every parameter and buffer a module registers goes to the meta device, other tensors
    stay on the CPU: for builders that compute sizes with torch (RegNet's block widths), which
    a meta default device breaks ("Cannot copy out of meta tensor")."""
    reg_p, reg_b = torch.nn.Module.register_parameter, torch.nn.Module.register_buffer

    def param(self, name: str, p: Any) -> None:
        if p is not None:
            p = torch.nn.Parameter(p.to("meta"), requires_grad=p.requires_grad)
        reg_p(self, name, p)

    def buffer(self, name: str, t: Any, persistent: bool = True) -> None:
        reg_b(self, name, None if t is None else t.to("meta"), persistent)

    torch.nn.Module.register_parameter, torch.nn.Module.register_buffer = param, buffer
    try:
        yield
    finally:
        torch.nn.Module.register_parameter, torch.nn.Module.register_buffer = reg_p, reg_b


def _build(tvm, name: str, kwargs: dict[str, Any], device: str) -> torch.nn.Module:
    with torch.device(device):
        try:
            return tvm.get_model(name, **kwargs)
        except NotImplementedError:
            if device != "meta":
                raise
    with _weights_on_meta():
        return tvm.get_model(name, **kwargs)


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
    _check_vit_size(name, image_size)
    kwargs: dict[str, Any] = {"weights": None}
    if name.startswith("vit_"):
        kwargs["image_size"] = image_size  # ViT's position table is sized by the image
    if name.startswith("maxvit_"):
        kwargs["input_size"] = (image_size, image_size)  # so is MaxViT's attention grid
    if group == "segmentation":
        kwargs["weights_backbone"] = None
    if name in ("googlenet", "inception_v3"):
        kwargs["init_weights"] = False  # scipy-based init; values do not matter here
    who = f"torchvision:{name} at {image_size}x{image_size} images"
    hint = _size_hint(tvm, name, image_size)
    with foreign_code(who, hint):
        model = _build(tvm, name, kwargs, device)
    x = torch.zeros(batch, 3, image_size, image_size, dtype=dtype, device=device)
    model = model.to(dtype).eval()
    return ModuleRun(
        f"torchvision:{name}",
        model,
        (x,),
        {},
        f"images {batch}x3x{image_size}x{image_size}",
        foreign=who,
        hint=hint,
    )


def entry_point_run(
    target: str,
    batch: int = 1,
    image_size: int | None = None,
    seq_len: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str = "meta",
    asked: Collection[str] = (),
) -> ModuleRun:
    """Import `module`, call `function` with the arguments it declares, check what it returns.
    `asked` names the arguments the user gave explicitly: one the function does not declare is
    refused (it would be silently ignored).

    Whatever the user's code raises, at import, at the call or later in forward, is one line
    naming it (`memwall.trace.foreign`)."""
    mod_name, fn_name = target.split(":")
    with foreign_code(f"{target} (importing {mod_name})"):
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            raise MemwallError(
                f"cannot import {mod_name!r} for entry point {target}: {e}"
            ) from None
    with foreign_code(target):
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
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: offer it nothing
        params = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    ignored = [a for a in asked if a not in params and not takes_any]
    if ignored:
        flags = ", ".join("--" + a.replace("_", "-") for a in ignored)
        raise MemwallError(
            f"{flags} does not apply here: entry point {target} declares no "
            f"{' or '.join(ignored)} argument (it takes: {', '.join(params) or 'nothing'})"
        )
    call = {k: v for k, v in offered.items() if k in params and v is not None}
    with foreign_code(target):
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
    with foreign_code(f"{target}'s module"):
        module.eval()
    return ModuleRun(
        target, module, args, kwargs, f"inputs {shapes}", foreign=f"{target}'s module forward"
    )


def build_run(
    source: ModuleSource,
    batch: int = 1,
    image_size: int | None = None,
    seq_len: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str = "meta",
    asked: Collection[str] = (),
) -> ModuleRun:
    """The module and inputs a module source names (`asked`: see `entry_point_run`)."""
    if source.kind == "torchvision":
        size = DEFAULT_IMAGE_SIZE if image_size is None else image_size
        return torchvision_run(source.target, batch, size, dtype, device)
    if image_size is not None:
        check_image_size(image_size)
    return entry_point_run(source.target, batch, image_size, seq_len, dtype, device, asked)
