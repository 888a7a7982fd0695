"""Real models to time: random-weight transformers models at a runnable precision.

The model is built by `memwall.trace.models.build_model` from the raw config (a bundled preset
or a config.json read as data; nothing is downloaded, no remote code). This module adds what
timing needs on top: learned position tables extended on request, the precision applied the
way it really runs on this machine, and a memory check before anything is allocated.

Precisions that run here (CPU):
- fp32, bf16: the whole model in that dtype.
- int8-dynamic (`int8` accepted): the paper's setting: dynamic int8 quantisation of every
  `nn.Linear` (`torch.ao.quantization.quantize_dynamic`): int8 weights, activations quantised
  per tensor on the fly, everything else (embeddings, norms, attention, KV cache) in fp32.
  GPT-2's `Conv1D` layers are not `nn.Linear`, so they are first converted to `nn.Linear`
  (weights transposed) so that they are quantised too.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psutil
import torch
from torch.ao.quantization import quantize_dynamic
from transformers.pytorch_utils import Conv1D
from transformers.utils import logging as hf_logging

from memwall.errors import MemwallError
from memwall.families import get_family
from memwall.precision import DTYPE_BYTES, act_dtype
from memwall.spec import (
    RUNNABLE_PRECISIONS,
    ModelSpec,
    Workload,
    check_workload_fits,
    load_model,
    preset_config,
    preset_names,
    read_config_file,
    runnable_precision,
    spec_from_config,
)
from memwall.trace.models import build_model

PRECISIONS = tuple(RUNNABLE_PRECISIONS)  # fp32, bf16, int8-dynamic
PRECISION_NOTES = {
    "fp32": "fp32 weights and activations",
    "bf16": "bf16 weights and activations",
    "int8-dynamic": (
        "dynamic int8 quantisation of the Linear layers (torch.ao quantize_dynamic: int8 "
        "weights, activations quantised per tensor on the fly; embeddings, norms, attention "
        "and KV cache in fp32), the paper's setting"
    ),
}
MEMORY_FRACTION = 0.8  # of the memory available now that one model may take


@dataclass
class LoadedModel:
    """A model ready to run, with what was done to it (said in every output)."""

    module: Any  # torch.nn.Module
    spec: ModelSpec
    config: dict
    precision: str
    notes: list[str] = field(default_factory=list)
    positions: int | None = None  # learned position table size used (None: rotary)

    @property
    def family(self) -> str:
        return self.spec.family


def resolve(model: str | ModelSpec, config: dict | None = None) -> tuple[ModelSpec, dict]:
    """(spec, raw config dict) from a preset name, a config.json path or a spec + its config."""
    spec, cfg = _resolve(model, config)
    if spec.is_encoder_decoder:
        raise MemwallError(
            f"measuring encoder-decoder models ({spec.name}) is not supported; "
            "memwall analyze counts them (closed form or --engine trace)"
        )
    return spec, cfg


def _resolve(model: str | ModelSpec, config: dict | None) -> tuple[ModelSpec, dict]:
    if isinstance(model, ModelSpec):
        if config is not None:
            return model, dict(config)
        if model.name in preset_names():
            return model, preset_config(model.name)
        raise MemwallError(
            f"profiling {model.name!r} needs its config dict: it is not a bundled preset"
        )
    if config is not None:
        return spec_from_config(config, name=model), dict(config)
    spec = load_model(model)
    if model in preset_names():
        return spec, preset_config(model)
    return spec, read_config_file(model)


def check_precision(precision: str, spec: ModelSpec) -> str:
    """The precisions this machine can run for real; MemwallError otherwise (one line)."""
    p = runnable_precision(precision)
    if p == "int8-dynamic":
        engines = torch.backends.quantized.supported_engines
        if not any(e in engines for e in ("x86", "fbgemm", "qnnpack", "onednn")):
            raise MemwallError(
                "int8 needs a quantised CPU engine (fbgemm/x86/qnnpack); this torch has "
                f"{', '.join(engines) or 'none'}: use fp32 or bf16"
            )
        if spec.is_moe:
            raise MemwallError(
                f"{spec.name}: int8 dynamic quantisation covers nn.Linear layers, and "
                "transformers stores Mixtral's experts as fused tensors it cannot quantise; "
                "use fp32 or bf16"
            )
    return p


def positions_needed(spec: ModelSpec, workload: Workload) -> int:
    """Positions the workload uses (the longest sequence the model holds)."""
    return max(1, workload.total_context)


def check_positions(spec: ModelSpec, workload: Workload, extend: bool) -> tuple[int | None, str]:
    """(learned table size to build, note). Refuses lengths beyond the table unless `extend`."""
    need = positions_needed(spec, workload)
    if spec.position != "learned":
        note = ""
        if need > spec.max_positions:
            note = (
                f"{need} positions exceed the config's max_position_embeddings "
                f"({spec.max_positions}); rotary positions run at any length"
            )
        return None, note
    have = spec.max_positions
    if need <= have:
        return have, ""
    if not extend:
        raise MemwallError(
            f"{spec.name} has {have} learned positions but this workload needs {need} "
            "(seq-len + generated tokens); pass --extend-positions to enlarge the position "
            "table (random weights; timing is unaffected)"
        )
    return need, (
        f"position table extended from {have} to {need} learned positions "
        "(random weights) to run beyond the model's length"
    )


def _with_positions(spec: ModelSpec, cfg: dict, positions: int | None) -> dict:
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    keys = get_family(spec.family).keys("max_positions")
    if positions is None or spec.position != "learned" or not keys:
        return cfg
    for k in keys:
        if k in cfg or k == keys[0]:
            cfg[k] = int(positions)
    return cfg


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers logs config remarks (e.g. token ids outside a tiny vocabulary) on stderr;
    memwall reports problems as one line of its own."""
    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(before)


def available_bytes() -> float:
    """Host memory free now (bytes)."""
    return float(psutil.virtual_memory().available)


def estimate_bytes(spec: ModelSpec, precision: str, workload: Workload | None = None) -> float:
    """Peak host memory to build and run: weights (int8 is built in fp32 first) + activations."""
    n = spec.n_params()
    kernel = RUNNABLE_PRECISIONS[runnable_precision(precision)]
    per = DTYPE_BYTES[kernel] + (DTYPE_BYTES["fp32"] if kernel == "int8" else 0)
    total = float(n * per)
    if workload is not None:
        act = DTYPE_BYTES[act_dtype(kernel)]
        T = workload.batch * max(
            1, workload.seq_len if workload.phase in ("encode", "prefill") else 1
        )
        ctx = workload.total_context
        kv = 2 * spec.n_layers * workload.batch * ctx * spec.kv_dim * act * 2  # + one concat copy
        acts = 8 * T * (spec.d_ff * max(1, spec.experts_per_token) + 4 * spec.d_model) * act
        logits = T * spec.vocab_size * act if spec.is_decoder else 0
        total += kv + acts + logits
    return total


def check_memory(spec: ModelSpec, precision: str, workload: Workload | None = None) -> None:
    need = estimate_bytes(spec, precision, workload)
    have = available_bytes()
    if need > MEMORY_FRACTION * have:
        raise MemwallError(
            f"{spec.name} at {precision} needs about {need / 2**30:.1f} GiB to build and run "
            f"({spec.n_params() / 1e9:.2f} G parameters); this machine has "
            f"{have / 2**30:.1f} GiB available: use a smaller config (fewer layers or width)"
        )


def conv1d_to_linear(module: Any) -> int:
    """Replace transformers' `Conv1D` (GPT-2: y = x W + b, W is in x out) by `nn.Linear`
    (W transposed) in place, so dynamic quantisation sees them. Returns how many."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Conv1D):
                w = child.weight  # (in, out)
                lin = torch.nn.Linear(w.shape[0], w.shape[1], bias=child.bias is not None)
                with torch.no_grad():
                    lin.weight.copy_(w.t())
                    if child.bias is not None:
                        lin.bias.copy_(child.bias)
                lin.to(dtype=w.dtype)
                setattr(parent, name, lin)
                n += 1
    return n


def quantize_int8(module: Any) -> Any:
    """Dynamic int8 quantisation of every nn.Linear, in place (deprecation chatter silenced)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)


def build(
    spec: ModelSpec,
    config: dict,
    precision: str,
    positions: int | None = None,
    workload: Workload | None = None,
) -> LoadedModel:
    """Build the random-weight model of `spec` at `precision` (see module doc)."""
    p = check_precision(precision, spec)
    if workload is not None:
        check_workload_fits(spec, workload)
    check_memory(spec, p, workload)
    cfg = _with_positions(spec, config, positions)
    torch.manual_seed(0)
    try:
        with warnings.catch_warnings(), quiet_transformers():
            warnings.simplefilter("ignore")
            dtype = torch.bfloat16 if p == "bf16" else torch.float32
            module = build_model(cfg, dtype, "cpu")
    except MemwallError:
        raise
    except Exception as e:  # noqa: BLE001 - any refusal of the builder (transformers validates
        # configs with its own and huggingface_hub's error types) is one line, never a traceback
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            first = f"it does not know {first}"
        raise MemwallError(
            f"transformers cannot build {spec.name!r} (model_type {spec.family!r}) here: {first}"
        ) from None
    notes: list[str] = [PRECISION_NOTES[p]]
    if p == "int8-dynamic":
        module = _to_int8(module, notes)
    module.eval()
    return LoadedModel(module, spec, cfg, p, notes, positions)


def _to_int8(module: Any, notes: list[str]) -> Any:
    """Dynamic int8 Linear layers; GPT-2's Conv1D layers become Linear first (noted)."""
    n = conv1d_to_linear(module)
    if n:
        notes.append(
            f"{n} GPT-2 Conv1D layers converted to nn.Linear (weights transposed) "
            "so that they are quantised"
        )
    return quantize_int8(module)


def with_precision(base: LoadedModel, precision: str) -> LoadedModel:
    """The same random weights at another precision (a copy; the base is left untouched)."""
    p = check_precision(precision, base.spec)
    if p == base.precision:
        return base
    if base.precision != "fp32":
        raise MemwallError("with_precision converts from an fp32 model")
    check_memory(base.spec, p)
    module = copy.deepcopy(base.module)
    notes = [PRECISION_NOTES[p]]
    if p == "bf16":
        module = module.to(torch.bfloat16)
    else:
        module = _to_int8(module, notes)
    module.eval()
    return LoadedModel(module, base.spec, base.config, p, notes, base.positions)


def _set(cfg: dict, keys: tuple[str, ...], value: Any) -> None:
    """Write an attribute under its config keys: every key already there, and the first."""
    for k in keys:
        if k in cfg or k == keys[0]:
            cfg[k] = value


def layers_config(spec: ModelSpec, config: dict, n_layers: int) -> dict:
    """The same model cut to `n_layers` layers (everything else, width included, kept): the
    calibration's block term times it at 1 and 3 layers."""
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    _set(cfg, get_family(spec.family).keys("n_layers"), n_layers)
    _cut_layer_lists(cfg, n_layers)
    return cfg


def _cut_layer_lists(cfg: dict, n_layers: int) -> None:
    """Per-layer lists (GPT-OSS's and Gemma's `layer_types`) fitted to the layer count: cut,
    or their pattern repeated (transformers refuses a list of another length)."""
    for k in ("layer_types",):
        lst = cfg.get(k)
        if isinstance(lst, list) and lst:
            cfg[k] = [lst[i % len(lst)] for i in range(n_layers)]


def tiny_config(spec: ModelSpec, config: dict, n_layers: int) -> dict:
    """The same architecture shrunk to a few narrow layers: its run time is framework overhead.

    Width 64, FFN 128, vocabulary 128, every structural flag (activation, biases, norms, GQA
    ratio, experts) kept; the config keys come from the family's entry in families.json.
    Used by calibration to measure dispatch + Python cost per layer.
    """
    fam = get_family(spec.family)
    cfg = {k: v for k, v in config.items() if not k.startswith("_")}
    heads = 4
    kv = max(1, heads * spec.n_kv_heads // spec.n_heads)
    while heads % kv:
        kv -= 1
    sizes: dict[str, Any] = {
        "d_model": 64,
        "n_layers": n_layers,
        "n_heads": heads,
        "n_kv_heads": kv,
        "d_ff": 128,
        "vocab_size": 128,
        "max_positions": 256,
    }
    if spec.is_moe:
        sizes["n_experts"] = min(spec.n_experts, 4)
        sizes["experts_per_token"] = min(spec.experts_per_token, sizes["n_experts"])
    for attr, value in sizes.items():
        _set(cfg, fam.keys(attr), value)
    cfg.update(fam.tiny)
    _cut_layer_lists(cfg, n_layers)
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        # inside the 128-token vocabulary (absent, Phi-3's default pad id 32000 is not)
        cfg[k] = 0
    return cfg
