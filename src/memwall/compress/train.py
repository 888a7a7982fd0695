"""The small model trained here: recipe from a data file, deterministic training, a checked cache.

Why: accuracy claims need a model whose perplexity means something, without downloads. Training
runs on one thread with deterministic algorithms and a seeded generator for the batches, so the
same recipe on the same Python gives the same held-out loss. The result is cached in the user
cache directory ($MEMWALL_CACHE_DIR overrides it) as a `state_dict` (loaded with
`weights_only=True`: tensors only, no code) beside a JSON manifest that is validated, and whose
sha256 of the weights file must match, before the weights are trusted (the format: `cache`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from torch.nn import functional as F

from memwall.compress import cache
from memwall.compress.corpus import Corpus, load_corpus
from memwall.compress.gpt import GPT, GPTShape
from memwall.errors import MemwallError, suggest
from memwall.records.store import trained_models_dir
from memwall.spec import ModelSpec, spec_from_config

MANIFEST_FORMAT = 1


class Recipe(BaseModel):
    """How one trained model is made (validated from data/compress/models.json)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    description: str = ""
    n_layers: int = Field(ge=1, le=64)
    d_model: int = Field(ge=8, le=4096)
    n_heads: int = Field(ge=1, le=64)
    d_ff: int = Field(ge=8, le=16384)
    max_positions: int = Field(ge=8, le=8192)
    seq_len: int = Field(ge=8, le=8192)
    batch: int = Field(ge=1, le=4096)
    steps: int = Field(ge=1, le=1_000_000)
    lr: float = Field(gt=0, lt=1)
    warmup: int = Field(ge=0)
    seed: int = Field(ge=0)
    train_bytes: int = Field(ge=1024)
    heldout_bytes: int = Field(ge=256)
    eval_windows: int = Field(ge=1, le=100_000)
    recovery_steps: int = Field(ge=0)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: int
    name: str
    recipe: Recipe
    corpus_digest: str
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    heldout_loss: float
    train_seconds: float = Field(ge=0)
    torch: str
    python: str


@dataclass
class Trained:
    """A trained model with what it was trained on and its held-out loss (nats per byte)."""

    name: str
    model: GPT
    recipe: Recipe
    corpus: Corpus
    heldout_loss: float
    cached: bool
    path: Path | None = None

    @property
    def spec(self) -> ModelSpec:
        return recipe_spec(self.name, self.recipe)


def recipes() -> dict[str, Recipe]:
    raw = json.loads((resources.files("memwall") / "data" / "compress" / "models.json").read_text())
    return {k: Recipe(**v) for k, v in raw.items() if not k.startswith("_")}


def get_recipe(name: str) -> Recipe:
    r = recipes()
    if name not in r:
        raise MemwallError(
            f"unknown trained model {name!r}{suggest(name, r)}; known: {', '.join(r)}"
        )
    return r[name]


def recipe_spec(name: str, r: Recipe) -> ModelSpec:
    """The gpt2 ModelSpec of a recipe, so memwall's closed-form count applies to it."""
    cfg = {
        "model_type": "gpt2",
        "n_embd": r.d_model,
        "n_layer": r.n_layers,
        "n_head": r.n_heads,
        "n_inner": r.d_ff,
        "vocab_size": 256,
        "n_positions": r.max_positions,
    }
    return spec_from_config(cfg, name=name)


def cache_dir() -> Path:
    """Where the small trained models are cached (one path, decided by `records.store`)."""
    return trained_models_dir()


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """One thread, deterministic kernels, seeded RNG; the previous settings come back after."""
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)


def windows(data: torch.Tensor, seq_len: int, n: int) -> torch.Tensor:
    """`n` evenly spaced (seq_len + 1)-byte windows of `data`: fixed inputs and targets."""
    span = seq_len + 1
    if data.numel() < span:
        raise MemwallError(f"held-out text has {data.numel()} bytes, fewer than one window")
    starts = torch.linspace(0, data.numel() - span, min(n, data.numel() // span)).long()
    return torch.stack([data[s : s + span] for s in starts.tolist()]).long()


@torch.no_grad()
def heldout_loss(model: Any, batch: torch.Tensor, chunk: int = 16) -> float:
    """Mean next-byte cross entropy (nats) over fixed windows; logits upcast to fp32."""
    total, count = 0.0, 0
    for i in range(0, batch.shape[0], chunk):
        w = batch[i : i + chunk]
        logits = model(w[:, :-1]).float()
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1), reduction="sum"
        )
        total += float(loss)
        count += w[:, 1:].numel()
    return total / count


def lr_at(step: int, r: Recipe) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < r.warmup:
        return r.lr * (step + 1) / r.warmup
    t = (step - r.warmup) / max(1, r.steps - r.warmup)
    return r.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def train_steps(
    model: GPT,
    data: torch.Tensor,
    r: Recipe,
    steps: int,
    seed: int,
    lr_scale: float = 1.0,
    after_step: Any = None,
    label: str = "training",
    progress: bool = False,
) -> None:
    """AdamW on random windows of `data` drawn from a seeded generator (deterministic)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=r.lr, weight_decay=0.01, betas=(0.9, 0.95))
    model.train()
    with _bar(progress, label, steps) as advance:
        for step in range(steps):
            starts = torch.randint(0, data.numel() - r.seq_len - 1, (r.batch,), generator=g)
            w = torch.stack([data[s : s + r.seq_len + 1] for s in starts.tolist()]).long()
            for group in opt.param_groups:
                group["lr"] = lr_at(step, r) * lr_scale
            logits = model(w[:, :-1])
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), w[:, 1:].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if after_step is not None:
                after_step()
            advance(float(loss.detach()))
    model.eval()


@contextmanager
def _bar(show: bool, label: str, total: int) -> Iterator[Any]:
    if not show:
        yield lambda loss: None
        return
    cols = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeRemainingColumn(),
    )
    with Progress(*cols, console=Console(stderr=True), transient=True) as p:
        task = p.add_task(label, total=total, loss=float("nan"))
        yield lambda loss: p.update(task, advance=1, loss=loss)


def train(name: str, r: Recipe, corpus: Corpus, progress: bool = False) -> tuple[GPT, float, float]:
    """(model, held-out loss, seconds): the whole recipe, from the seed, on one thread."""
    t0 = time.perf_counter()
    with deterministic(r.seed):
        model = GPT(GPTShape(r.n_layers, r.d_model, r.n_heads, r.d_ff, 256, r.max_positions))
        train_steps(
            model, corpus.train, r, r.steps, r.seed, label=f"training {name}", progress=progress
        )
        loss = heldout_loss(model, windows(corpus.heldout, r.seq_len, r.eval_windows))
    return model, loss, time.perf_counter() - t0


def _key(name: str, r: Recipe, corpus: Corpus) -> str:
    blob = json.dumps([name, r.model_dump(), corpus.digest, torch.__version__], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _load_cached(
    path: Path, man_path: Path, name: str, r: Recipe, corpus: Corpus
) -> Trained | None:
    """The cached model if its manifest validates and its weights match; else None (retrain)."""
    if not (path.is_file() and man_path.is_file()):
        return None
    try:
        man = cache.read_manifest(man_path, Manifest)
        if man.recipe != r or man.corpus_digest != corpus.digest or man.format != MANIFEST_FORMAT:
            return None
        state = cache.read_weights(path, man.weights_sha256)
        if state is None:
            return None
        model = GPT(GPTShape(r.n_layers, r.d_model, r.n_heads, r.d_ff, 256, r.max_positions))
        model.load_state_dict(state, strict=True)
    except cache.READ_ERRORS:
        return None
    model.eval()
    return Trained(name, model, r, corpus, man.heldout_loss, True, path)


def load_trained(
    name: str = "stdlib-gpt", progress: bool = False, use_cache: bool = True
) -> Trained:
    """The trained model `name`: from the cache when valid, else trained now and cached."""
    r = get_recipe(name)
    corpus = load_corpus(r.train_bytes, r.heldout_bytes)
    folder = cache_dir()
    path = folder / f"{name}-{_key(name, r, corpus)}.pt"
    man_path = path.with_suffix(".json")
    if use_cache:
        hit = _load_cached(path, man_path, name, r, corpus)
        if hit is not None:
            return hit
    model, loss, secs = train(name, r, corpus, progress)
    saved = use_cache and _save(path, man_path, model, name, r, corpus, loss, secs)
    return Trained(name, model, r, corpus, loss, False, path if saved else None)


def _save(
    path: Path,
    man_path: Path,
    model: GPT,
    name: str,
    r: Recipe,
    corpus: Corpus,
    loss: float,
    secs: float,
) -> bool:
    """Weights first, manifest last (`cache.save`); False if the folder cannot be written."""

    def manifest(sha256: str) -> Manifest:
        return Manifest(
            format=MANIFEST_FORMAT,
            name=name,
            recipe=r,
            corpus_digest=corpus.digest,
            weights_sha256=sha256,
            heldout_loss=loss,
            train_seconds=secs,
            torch=torch.__version__,
            python=cache.python_version(),
        )

    return cache.save(path, man_path, model, manifest)
