"""A DLRM-style recommendation model (Naumov et al. 2019) from a small config: embedding
tables (one `EmbeddingBag` per categorical feature), a bottom MLP over the dense features, the
dot-product feature interaction, a top MLP.

The bundled config (data/dlrm_criteo_terabyte.json, with its source) is MLPerf's Criteo
Terabyte model: ~188M table rows, ~96 GB of fp32 embeddings, ~2.4M MLP weights. It is built on
the meta device, so its tables cost nothing to trace. `criteo_terabyte` is a `module:function`
entry point: `memwall analyze memwall.trace.dlrm:criteo_terabyte --batch 1`.

Memory: tables sharded table-wise or row-wise over N devices (each holds 1/N of the rows) while
the MLPs are replicated (data parallel), as DLRM's reference and TorchRec run it. Training uses
sparse table gradients (only the rows a batch touched, as the reference's `sparse=True`
embedding bags produce) and dense MLP gradients; optimizer state is per parameter.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from memwall.errors import MemwallError, first_problem
from memwall.optimizers import get_optimizer
from memwall.precision import Precision
from memwall.trace.models import dtype_name, resolve_dtype
from memwall.trace.sources import ModuleRun
from memwall.trace.training import saved_for_backward

MAX_ROWS = 10**11


class DLRMConfig(BaseModel):
    """The sizes that define a DLRM (validated: a config file is data)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = "dlrm"
    dense_features: int = Field(ge=1, le=100_000)
    embedding_dim: int = Field(ge=1, le=65_536)
    table_sizes: list[int] = Field(min_length=1, max_length=10_000)
    lookups_per_table: int = Field(default=1, ge=1, le=100_000)
    bottom_mlp: list[int] = Field(min_length=1)
    top_mlp: list[int] = Field(min_length=1)
    self_interaction: bool = False
    train_batch: int = Field(default=2048, ge=1)
    optimizer: str = "sgd"
    source: str = ""

    def model_post_init(self, _ctx: Any) -> None:
        if any(not 1 <= n <= MAX_ROWS for n in self.table_sizes):
            raise ValueError(f"every table needs 1 to {MAX_ROWS:,} rows")
        if self.bottom_mlp[-1] != self.embedding_dim:
            raise ValueError("the bottom MLP must end at embedding_dim (its output is interacted)")
        if any(w < 1 for w in [*self.bottom_mlp, *self.top_mlp]):
            raise ValueError("MLP widths must be positive")

    @property
    def n_vectors(self) -> int:
        return len(self.table_sizes) + 1

    @property
    def interaction_width(self) -> int:
        n = self.n_vectors
        pairs = n * (n + 1) // 2 if self.self_interaction else n * (n - 1) // 2
        return self.embedding_dim + pairs

    @property
    def table_params(self) -> int:
        return sum(self.table_sizes) * self.embedding_dim

    @property
    def mlp_params(self) -> int:
        n = 0
        for dims in (
            [self.dense_features, *self.bottom_mlp],
            [self.interaction_width, *self.top_mlp],
        ):
            n += sum(a * b + b for a, b in zip(dims[:-1], dims[1:], strict=True))
        return n


def load_config(cfg: dict | str = "criteo_terabyte") -> DLRMConfig:
    """A bundled config by name (`criteo_terabyte`) or a dict read from a JSON file."""
    if isinstance(cfg, str):
        path = resources.files("memwall.data").joinpath(f"dlrm_{cfg}.json")
        if not path.is_file():
            raise MemwallError(f"no bundled DLRM config {cfg!r}; bundled: criteo_terabyte")
        cfg = json.loads(path.read_text("utf-8"))
    try:
        return DLRMConfig.model_validate(cfg)
    except ValidationError as e:
        raise MemwallError(f"bad DLRM config: {first_problem(e, 'config')}") from None


def _mlp(dims: list[int], last_sigmoid: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        last = i == len(dims) - 2
        layers.append(nn.Sigmoid() if (last and last_sigmoid) else nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """Bottom MLP, embedding bags, dot interaction (pairs below the diagonal), top MLP."""

    def __init__(self, cfg: DLRMConfig) -> None:
        super().__init__()
        d = cfg.embedding_dim
        self.bottom = _mlp([cfg.dense_features, *cfg.bottom_mlp], last_sigmoid=False)
        self.tables = nn.ModuleList(nn.EmbeddingBag(n, d, mode="sum") for n in cfg.table_sizes)
        self.top = _mlp([cfg.interaction_width, *cfg.top_mlp], last_sigmoid=True)
        n = cfg.n_vectors
        offset = 0 if cfg.self_interaction else -1
        li, lj = torch.tril_indices(n, n, offset=offset, device="cpu")
        self.register_buffer("li", li, persistent=False)
        self.register_buffer("lj", lj, persistent=False)

    def forward(self, dense: torch.Tensor, indices: torch.Tensor, offsets: torch.Tensor):
        x = self.bottom(dense)
        embs = [t(indices[i], offsets[i]) for i, t in enumerate(self.tables)]
        z = torch.stack([x, *embs], dim=1)  # (B, 27, d)
        inter = torch.bmm(z, z.transpose(1, 2))[:, self.li, self.lj]
        return self.top(torch.cat([x, inter], dim=1))


def dlrm_run(
    cfg: DLRMConfig,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
    device: str = "meta",
) -> ModuleRun:
    """The model and one batch: dense features, `lookups_per_table` indices per table."""
    k = cfg.lookups_per_table
    with torch.device(device):
        model = DLRM(cfg).to(dtype)
        dense = torch.zeros(batch, cfg.dense_features, dtype=dtype)
        idx = torch.zeros(len(cfg.table_sizes), batch * k, dtype=torch.long)
        offsets = (torch.arange(batch, dtype=torch.long) * k).expand(len(cfg.table_sizes), -1)
    model.li, model.lj = model.li.to(device), model.lj.to(device)
    return ModuleRun(
        cfg.name,
        model.eval(),
        (dense, idx, offsets),
        {},
        f"{batch} samples: {cfg.dense_features} dense, {len(cfg.table_sizes)} tables x {k} lookups",
    )


def criteo_terabyte(batch: int = 1, device: str = "meta", dtype: torch.dtype = torch.float32):
    """Entry point (`memwall.trace.dlrm:criteo_terabyte`): MLPerf's DLRM and one batch."""
    run = dlrm_run(load_config("criteo_terabyte"), batch, dtype, device)
    return run.module, run.args


@dataclass(frozen=True)
class DLRMMemory:
    """Per-device bytes of serving or training a DLRM."""

    mode: str
    devices: int
    tables: float  # this device's share of the embedding tables
    mlp: float  # replicated
    gradients: float  # dense MLP + sparse rows touched
    optimizer_state: float
    activations: float
    precision: str

    @property
    def total(self) -> float:
        return self.tables + self.mlp + self.gradients + self.optimizer_state + self.activations

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["total"] = self.total
        return d


def dlrm_memory(
    cfg: DLRMConfig,
    batch: int = 1,
    mode: str = "infer",
    devices: int = 1,
    precision: Precision | None = None,
    optimizer: str | None = None,
) -> DLRMMemory:
    """Tables split over `devices` (1 = not sharded), MLPs replicated; training adds sparse
    table gradients, dense MLP gradients, optimizer state, and the activations autograd keeps
    (traced); inference adds the traced no_grad activation peak."""
    if mode not in ("infer", "train"):
        raise MemwallError(f"mode must be infer or train, got {mode!r}")
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise MemwallError(f"devices must be a positive integer, got {devices!r}")
    dtype = resolve_dtype(precision)
    label = dtype_name(dtype)
    w = torch.finfo(dtype).bits / 8
    tables = cfg.table_params * w / devices
    mlp = cfg.mlp_params * w
    run = dlrm_run(cfg, batch, dtype)
    if mode == "infer":
        from memwall.trace.table import trace_run

        act = float(trace_run(run, cross_check=False).attrs["peak_activation_bytes"])
        return DLRMMemory(mode, devices, tables, mlp, 0.0, 0.0, act, label)
    opt = get_optimizer(optimizer or cfg.optimizer)
    touched = batch * cfg.lookups_per_table * len(cfg.table_sizes) * cfg.embedding_dim
    rows_touched = min(touched, cfg.table_params) / devices  # sparse gradient: rows a batch hit
    grads = mlp + rows_touched * w
    state = opt.n_states * (cfg.table_params / devices + cfg.mlp_params) * w
    act = float(saved_for_backward(run).nbytes)
    return DLRMMemory(mode, devices, tables, mlp, grads, state, act, label)


@functools.lru_cache(maxsize=1)
def bundled() -> DLRMConfig:
    return load_config("criteo_terabyte")
