"""Every step of a real `transformers serve` engine, timed from inside it.

Loaded in the server's own process (`measure.engine` starts it with a `sitecustomize` that
calls `install` when MEMWALL_ENGINE_STEPS names a file): once transformers' continuous-batching
module is imported, two of its methods are wrapped, not changed:
- `ModelRunner.compute_batch` notes the step's shape from its inputs: tokens T (query tokens),
  sequences S, keys K (cached keys read, all sequences) and T x K (the masked attention that
  SDPA-style paged attention computes over the whole batch on a CPU);
- `ContinuousBatchingManager._generation_loop_body` times one pass of the batching loop
  (schedule, forward, sample, hand the tokens to the streams) and, if a forward ran in it,
  appends `start seconds T S K TK cpu` to the file, cpu being the loop thread's own CPU time in
  that pass (seconds - cpu: time it waited, for the GIL or for a core). Passes that only waited
  for requests are not written.
With MEMWALL_ENGINE_NO_PREFIX_SHARING set, the manager's config also gets
`allow_block_sharing = False` (transformers serve has no flag for it): prompts are then
prefilled in full, as a simulation without prefix caching assumes.

Only the standard library is imported here; the wrapped modules bring their own torch.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import threading
import time
from typing import Any

TARGET = "transformers.generation.continuous_batching.continuous_api"
COLUMNS = ("start", "seconds", "tokens", "seqs", "keys", "token_keys", "cpu")


def _shape(batch: dict) -> tuple[int, int, int, int]:
    tokens = int(batch["input_ids"].shape[-1])
    seqs = int(batch["cu_seq_lens_q"].numel()) - 1
    cu_k = batch.get("cu_seq_lens_k") or {}
    first = next(iter(cu_k.values()), None) if isinstance(cu_k, dict) else cu_k
    keys = int(first[-1]) if first is not None and first.numel() else tokens
    return tokens, seqs, keys, tokens * keys


def _patch(module: Any, path: str, share_prefixes: bool = True) -> None:
    from transformers.generation.continuous_batching import model_runner

    seen = threading.local()
    out = open(path, "a", buffering=1)  # noqa: SIM115 (open for the server's lifetime)
    manager = module.ContinuousBatchingManager
    compute, body = model_runner.ModelRunner.compute_batch, manager._generation_loop_body

    def compute_batch(self, model, batch_data):
        seen.shape = _shape(batch_data)
        return compute(self, model, batch_data)

    def generation_loop_body(self, *args, **kwargs):
        seen.shape = None
        t0, c0 = time.perf_counter(), time.thread_time()
        go_on = body(self, *args, **kwargs)
        dt, cpu = time.perf_counter() - t0, time.thread_time() - c0
        if seen.shape is not None:
            shape = " ".join(map(str, seen.shape))
            out.write(f"{time.time() - dt:.6f} {dt:.6f} {shape} {cpu:.6f}\n")
        return go_on

    model_runner.ModelRunner.compute_batch = compute_batch
    manager._generation_loop_body = generation_loop_body
    if not share_prefixes:
        init = manager.__init__

        def no_sharing_init(self, model, generation_config, continuous_batching_config, *a, **k):
            continuous_batching_config.allow_block_sharing = False
            init(self, model, generation_config, continuous_batching_config, *a, **k)

        manager.__init__ = no_sharing_init


class _Loader(importlib.abc.Loader):
    def __init__(self, real: Any, path: str, share_prefixes: bool) -> None:
        self.real, self.path, self.share = real, path, share_prefixes

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module) -> None:
        self.real.exec_module(module)
        _patch(module, self.path, self.share)


class _Finder(importlib.abc.MetaPathFinder):
    def __init__(self, path: str, share_prefixes: bool) -> None:
        self.path, self.share = path, share_prefixes

    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _Loader(spec.loader, self.path, self.share)
        return spec


def install(path: str, share_prefixes: bool = True) -> None:
    """Time every step of the engine this process will import, into `path` (see above)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(path, share_prefixes))


def read(path: str, since: float = 0.0, until: float = float("inf")) -> dict[str, list[float]]:
    """The step records written between `since` and `until` (epoch seconds), by column."""
    cols: dict[str, list[float]] = {c: [] for c in COLUMNS}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == len(COLUMNS) - 1:
                parts.append("nan")  # written before the cpu column existed
            elif len(parts) != len(COLUMNS):
                continue  # a line cut short when the server stopped
            values = [float(p) for p in parts]
            if since <= values[0] <= until:
                for c, v in zip(COLUMNS, values, strict=True):
                    cols[c].append(v)
    return cols
