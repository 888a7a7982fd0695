"""What the api functions share: workload defaults, refusals, a ViT's tokens, module sources.

Policy that used to live in the CLI (which flags apply, what an absent flag means) is written
here once, without click: a keyword left as None means "not given", the way the CLI passes a
flag the user did not type, so `memwall.api` and `memwall CMD` refuse exactly the same input.
Nothing heavy is imported at module level (`import memwall.api` stays light).
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Sequence
from typing import Any

from memwall.errors import MemwallError

BATCH_DEFAULT = 1
SEQ_LEN_DEFAULT = 128
GEN_LEN_DEFAULT = 128
PHASES = ("encode", "prefill", "decode", "generate")


def default_phase(is_decoder: bool) -> str:
    """A decoder's default phase is prefill, an encoder's encode."""
    return "prefill" if is_decoder else "encode"


def choice(flag: str, value: Any, allowed: Sequence[str]) -> str:
    """`value` (a str or a str Enum member) if it is one of `allowed`, else one line."""
    v = getattr(value, "value", value)
    if v not in allowed:
        raise MemwallError(f"{flag} must be one of {', '.join(allowed)}; got {v!r}")
    return v


def model_text(model: Any) -> str:
    """The MODEL argument as text (a path object is its path)."""
    if isinstance(model, os.PathLike):
        return os.fspath(model)  # type: ignore[return-value]
    if not isinstance(model, str):
        raise MemwallError(
            "the model must be text: a preset name (e.g. gpt2), a config.json path, "
            f"torchvision:NAME or module:function; got {type(model).__name__}"
        )
    return model


def config_model(model: Any, command: str) -> str:
    """The MODEL of a command that prices an architecture (a preset or a config.json): one line
    naming the commands that take Python code when `model` is torchvision:NAME or
    module:function."""
    from memwall.sources import module_source

    text = model_text(model)
    src = module_source(text)
    if src is not None:
        raise MemwallError(
            f"memwall {command} prices a model from its architecture (a preset name or a "
            f"config.json path); {src.label} is Python code: analyze, memory and profile take it"
        )
    return text


def not_applicable(given: Sequence[str], why: str) -> None:
    """One line naming every flag of `given` (the ones the caller set), and why they do not
    apply; nothing when `given` is empty (the same words the CLI always printed)."""
    if given:
        verb = "does" if len(given) == 1 else "do"
        raise MemwallError(f"{', '.join(given)} {verb} not apply here: {why}")


def image_tokens(
    spec: Any, seq_len: int | None, image_size: int | None, default: int = SEQ_LEN_DEFAULT
) -> int:
    """The tokens a model encodes. A vision Transformer (ViT config) encodes an image:
    (side / patch)^2 patches and a class token, the side from `image_size` or its config;
    `seq_len` given for it is refused, never ignored. `seq_len` None: not given (`default`)."""
    if not spec.patch_size:
        if image_size is not None:
            raise MemwallError(
                "--image-size is for vision models (ViT configs), torchvision:NAME and "
                "module:function models"
            )
        return default if seq_len is None else seq_len
    not_applicable(
        ["--seq-len"] if seq_len is not None else [],
        f"{spec.name} encodes images: its tokens are the patches and a class token "
        f"({spec.image_tokens()} at its {spec.image_size} x {spec.image_size} pixels); "
        "use --image-size",
    )
    if image_size is not None and not spec.patch_size <= image_size <= 100_000:
        raise MemwallError(
            f"--image-size must be between the patch size ({spec.patch_size}) and 100,000 "
            f"pixels, got {image_size}"
        )
    return spec.image_tokens(image_size)


def module_run(
    source: Any,
    batch: int,
    image_size: int | None,
    seq_len: int | None,
    precision: Any,
    asked: Collection[str] = (),
) -> Any:
    """Build the module a `torchvision:NAME` or `module:function` MODEL names, on the meta
    device, with its inputs. `asked`: the arguments among batch, seq_len and image_size the
    caller was given (not defaulted): an entry point that declares no such argument is
    refused instead of silently ignoring it."""
    from memwall.spec import Workload
    from memwall.trace.models import resolve_dtype
    from memwall.trace.sources import build_run

    Workload("encode", batch, max(seq_len or 1, 1))  # validates batch
    return build_run(source, batch, image_size, seq_len, resolve_dtype(precision), "meta", asked)


def plain(x: Any) -> Any:
    """JSON-native values: numpy scalars become Python numbers, NaN and inf become None, so a
    payload equals what `--format json` prints and `json.dumps` takes it as it is."""
    if hasattr(x, "item") and not isinstance(x, list | dict | str):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    return x


def si(x: float | None, unit: str = "", digits: int = 3) -> str:
    """Engineering notation: 1.23 G<unit> (tables and notes everywhere use the same)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x == 0:
        return f"0 {unit}".strip()
    prefixes = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
    for scale, p in prefixes:
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g} {p}{unit}"
    if abs(x) < 1e-3 and unit == "s":
        return f"{x * 1e6:.{digits}g} us"
    if abs(x) < 1 and unit == "s":
        return f"{x * 1e3:.{digits}g} ms"
    return f"{x:.{digits}g} {unit}".strip()


def binary(x: float | None, digits: int = 3) -> str:
    """Bytes in binary units: 1.5 GiB."""
    if x is None:
        return "-"
    for scale, p in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g} {p}"
    return f"{x:.0f} B"
