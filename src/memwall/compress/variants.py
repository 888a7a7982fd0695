"""Pruned variants after their recovery fine-tune, cached like the trained model they come from.

Why: the recovery fine-tune (`prune.recover`) is most of a Pareto sweep's time (about 30 s per
pruned variant of stdlib-gpt on 2 cores), and it is deterministic, so it is done once. A variant
is kept in the compress cache (`records.store.trained_models_dir()/variants`, the format of
`cache`: a state_dict read with `weights_only=True`, a JSON manifest with its sha256, written
atomically) under a key of everything that determines it: the base model's name and the sha256
of its weights (`cache.state_digest`: of the tensors, whichever file they came from), the method
(kind and exact fraction), the recipe (which holds the recovery steps, batch, sequence length,
learning-rate schedule and seed), the recovery's learning-rate scale and seed, the training data
(corpus digest), torch's version and `FORMAT` (bumped whenever pruning or recovery computes
something else). On load the architecture is pruned again from the base (cheap, and what fixes
every matrix's shape and each layer's head count), the manifest must name this same key, and the
weights must match it entry by entry (names, dtypes, shapes, finite) and, for unstructured
pruning, be zero wherever the mask removed a weight; anything else is rebuilt and rewritten.
Only the recovered dense weights are cached: quantising, CSR packing and scoring take seconds.
"""

from __future__ import annotations

import copy
import hashlib
import time
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from memwall.compress import cache, prune
from memwall.compress.gpt import GPT
from memwall.compress.methods import Method
from memwall.compress.train import Recipe, Trained, cache_dir

FORMAT = 1  # bump when prune_*, recover or train_steps change what a variant's weights are


class VariantManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int
    key: str = Field(pattern=r"^[0-9a-f]{16}$")
    base: str
    base_weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    method: str
    fraction: float
    recipe: Recipe
    recovery: dict[str, float | int]
    corpus_digest: str
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    recovery_seconds: float = Field(ge=0)
    torch: str
    python: str


def folder() -> Path:
    """Where recovered variants are cached: the trained models' cache, `variants/`."""
    return cache_dir() / "variants"


def _prune(base: GPT, method: Method) -> tuple[GPT, list[torch.Tensor] | None]:
    assert method.fraction is not None
    if method.kind == "prune-structured":
        return prune.prune_structured(base, method.fraction), None
    return prune.prune_unstructured_dense(base, method.fraction)


def key_parts(trained: Trained, method: Method, base_sha256: str) -> dict[str, object]:
    """Everything that determines a recovered variant's weights (hashed into its key)."""
    return {
        "format": FORMAT,
        "base": trained.name,
        "base_weights_sha256": base_sha256,
        "method": method.kind,
        "fraction": float(method.fraction or 0.0).hex(),  # exact: 0.3 and 0.30000001 differ
        "recipe": trained.recipe.model_dump(mode="json"),
        "recovery": prune.recovery_settings(trained.recipe),
        "corpus_digest": trained.corpus.digest,
        "torch": torch.__version__,
    }


def variant_key(trained: Trained, method: Method, base_sha256: str) -> str:
    blob = cache.describe(key_parts(trained, method, base_sha256))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def paths(trained: Trained, method: Method, key: str) -> tuple[Path, Path]:
    kind = method.kind.removeprefix("prune-")
    path = folder() / f"{trained.name}-{kind}-{method.fraction:g}-{key}.pt"
    return path, path.with_suffix(".json")


def _masks_hold(model: GPT, masks: list[torch.Tensor] | None) -> bool:
    if masks is None:
        return True
    lins = prune.block_linears(model)
    return all(not bool(lin.weight.detach()[~m].any()) for lin, m in zip(lins, masks, strict=True))


def _load(
    path: Path, man_path: Path, key: str, pruned: GPT, masks: list[torch.Tensor] | None
) -> GPT | None:
    """A copy of `pruned` holding the cached weights if every check passes (module doc)."""
    if not (path.is_file() and man_path.is_file()):
        return None
    try:
        man = cache.read_manifest(man_path, VariantManifest)
        if man.format != FORMAT or man.key != key:
            return None
        state = cache.read_weights(path, man.weights_sha256)
        if state is None or not cache.matches(pruned, state):
            return None
        model = copy.deepcopy(pruned)
        model.load_state_dict(state, strict=True)
        if not _masks_hold(model, masks):
            return None
    except cache.READ_ERRORS:
        return None
    return model


def recovered(
    trained: Trained, method: Method, progress: bool = False, use_cache: bool = True
) -> tuple[GPT, bool]:
    """(the pruned model after its recovery fine-tune, dense, in eval mode; whether it came
    from the cache): loaded when a valid cached copy exists, else pruned, fine-tuned now and
    cached. A cache folder that cannot be written costs a rebuild next time, not this result."""
    model, masks = _prune(trained.model, method)
    if trained.recipe.recovery_steps == 0:
        return model.eval(), False
    base_sha256 = cache.state_digest(trained.model)
    key = variant_key(trained, method, base_sha256)
    path, man_path = paths(trained, method, key)
    hit = _load(path, man_path, key, model, masks) if use_cache else None
    if hit is not None:
        return hit.eval(), True
    t0 = time.perf_counter()
    prune.recover(trained, model, masks, progress=progress)
    secs = time.perf_counter() - t0

    def manifest(sha256: str) -> VariantManifest:
        return VariantManifest(
            format=FORMAT,
            key=key,
            base=trained.name,
            base_weights_sha256=base_sha256,
            method=method.label,
            fraction=float(method.fraction or 0.0),
            recipe=trained.recipe,
            recovery=prune.recovery_settings(trained.recipe),
            corpus_digest=trained.corpus.digest,
            weights_sha256=sha256,
            recovery_seconds=secs,
            torch=torch.__version__,
            python=cache.python_version(),
        )

    if use_cache:
        cache.save(path, man_path, model, manifest)
    return model.eval(), False
