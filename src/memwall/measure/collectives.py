"""Collectives timed on this machine with torch.distributed, and their alpha-beta fit.

`measure_collectives(world)` starts `world` local processes (torch.multiprocessing, spawn; a
free loopback port) on gloo (CPU) or NCCL (one GPU per rank when there are enough), times
all-reduce, all-gather, reduce-scatter, all-to-all and send/recv over message sizes, and reports
per size the algorithm bandwidth (message / time) and the bus bandwidth (algorithm bandwidth x
the nccl-tests factor of `memwall.records.collectives.bus_factor`). A collective the backend
does not implement is reported as skipped with the backend's reason, never estimated.
Per collective it fits time = alpha + bus_bytes / beta by least squares (relative error);
`save_collectives` stores the result where `memwall.parallel.links_for("local")` reads it.

Under `torchrun` (several nodes) `run_rank()` is the per-process entry: it reads RANK,
WORLD_SIZE, MASTER_ADDR and MASTER_PORT from the environment (see the README).
"""

from __future__ import annotations

import datetime as dt
import os
import queue as queue_mod
import signal
import socket
import time
from typing import Any

import numpy as np

from memwall.errors import MemwallError
from memwall.io import write_json
from memwall.records.collectives import COLLECTIVES_FORMAT, KINDS, bus_factor, read_fits
from memwall.records.store import collectives_path

KiB, MiB = 1024, 1024 * 1024
FULL_SIZES = tuple(KiB * 4**i for i in range(10))  # 1 KiB .. 256 MiB
QUICK_SIZES = (KiB, 16 * KiB, 256 * KiB, 1 * MiB)
MAX_WORLD = 64
BUDGET_S = 0.25  # timing budget per (collective, size) after warm-up
STALL_S = 300.0  # no result from rank 0 for this long: stop, keep what came, save nothing


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_backend(world: int) -> str:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() >= world:
        return "nccl"
    return "gloo"


def _op(kind: str, nbytes: int, world: int, rank: int, dev: Any):
    """A zero-argument callable running one `kind` collective of `nbytes` (the message)."""
    import torch
    import torch.distributed as dist

    n = max(world, nbytes // 4 // world * world)  # float32 elements, divisible by world
    if kind == "all_reduce":
        t = torch.ones(n, device=dev)
        return lambda: dist.all_reduce(t)
    if kind == "all_gather":
        inp, out = torch.ones(n // world, device=dev), torch.empty(n, device=dev)
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: gather(out, inp)
    if kind == "reduce_scatter":
        inp, out = torch.ones(n, device=dev), torch.empty(n // world, device=dev)
        scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
        return lambda: scatter(out, inp)
    if kind == "all_to_all":
        inp, out = torch.ones(n, device=dev), torch.empty(n, device=dev)
        return lambda: dist.all_to_all_single(out, inp)
    t = torch.ones(n, device=dev)  # send/recv: ping-pong between rank pairs (2k, 2k+1)
    peer = rank ^ 1
    if peer >= world:
        return lambda: None

    def pingpong() -> None:
        if rank % 2 == 0:
            dist.send(t, peer)
            dist.recv(t, peer)
        else:
            dist.recv(t, peer)
            dist.send(t, peer)

    return pingpong


def _time(fn, dev: Any) -> float:
    """Seconds per call: warm-up, then as many repeats as fit the budget (3 to 50, the same
    count on every rank, or the ranks' collectives would pair up wrongly and hang); the median
    call on each rank, the slowest rank's median (a shared machine is noisy)."""
    import torch
    import torch.distributed as dist

    sync = torch.cuda.synchronize if str(dev).startswith("cuda") else (lambda: None)
    fn()
    sync()
    dist.barrier()
    t0 = time.perf_counter()
    fn()
    sync()
    first = torch.tensor([time.perf_counter() - t0])
    dist.all_reduce(first, op=dist.ReduceOp.MAX)  # every rank must run the same count
    reps = int(min(50, max(3, BUDGET_S / max(float(first), 1e-9))))
    times: list[float] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    med = torch.tensor([float(np.median(times))])
    dist.all_reduce(med, op=dist.ReduceOp.MAX)  # the slowest rank sets the pace
    return float(med)


def _supported(kind: str, world: int, rank: int, dev: Any) -> str | None:
    """None when the backend runs `kind`, else its reason (the backend's own message)."""
    try:
        _op(kind, 4 * KiB, world, rank, dev)()
        return None
    except (RuntimeError, NotImplementedError, ValueError) as e:
        return f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"


def run_rank(rank: int, world: int, sizes: tuple[int, ...], backend: str, out: Any) -> None:
    """One process: join the group, time every collective and size, rank 0 reports to `out`."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dev = torch.device(f"cuda:{rank % max(1, torch.cuda.device_count())}") if backend == "nccl" \
        else torch.device("cpu")  # fmt: skip
    if backend == "nccl":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        for kind in KINDS:
            reason = _supported(kind, world, rank, dev)
            flag = torch.tensor([0.0 if reason is None else 1.0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)  # skip on every rank or none
            if float(flag):
                if rank == 0:
                    out.put(("skip", kind, reason or "unsupported on another rank"))
                continue
            for size in sizes:
                t = _time(_op(kind, size, world, rank, dev), dev)
                if kind == "send_recv":
                    t /= 2  # one direction of the ping-pong
                if rank == 0:
                    out.put(("row", kind, size, t))
        dist.barrier()
    finally:
        dist.destroy_process_group()
    if rank == 0:
        out.put(("done",))


def _child(rank: int, world: int, sizes, backend: str, out: Any, port: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it keeps the rows
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    run_rank(rank, world, sizes, backend, out)


def fit_alpha_beta(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """time = alpha + bus_bytes / beta, least squares on relative error; alpha clipped at 0.
    `beta_resolved` False: time did not grow with size, so beta is a lower bound."""
    if len(rows) < 2:
        return None
    x = np.array([r["bus_bytes"] for r in rows], dtype=float)
    t = np.array([r["time"] for r in rows], dtype=float)
    a = np.stack([np.ones_like(x), x], axis=1) / t[:, None]
    (alpha, inv_beta), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if alpha < 0:
        alpha = 0.0
        inv_beta = float(np.sum(x / t) / np.sum((x / t) ** 2))
    if inv_beta <= 0:
        # time did not grow with size (every size latency-bound, or noise hid the slope): the
        # bandwidth is not resolved, and the fastest bus bandwidth measured bounds it below
        beta = float(np.max(x / t))
        return {"alpha": float(np.median(t - x / beta)), "beta": beta, "beta_resolved": False}
    return {"alpha": float(alpha), "beta": float(1 / inv_beta), "beta_resolved": True}


def _row(kind: str, size: int, t: float, world: int) -> dict[str, Any]:
    f = bus_factor(kind, world)
    return {
        "kind": kind,
        "bytes": size,
        "time": t,
        "algbw": size / t,
        "busbw": size * f / t,
        "bus_bytes": size * f,
    }


def measure_collectives(
    world: int = 2, quick: bool = False, sizes: tuple[int, ...] | None = None,
    backend: str | None = None, progress: bool = True, timeout_s: float = 1800,
) -> dict[str, Any]:  # fmt: skip
    """Time the collectives on `world` local processes; returns the JSON-able result."""
    import torch.multiprocessing as mp

    if isinstance(world, bool) or not isinstance(world, int) or not 2 <= world <= MAX_WORLD:
        raise MemwallError(f"--world must be an integer from 2 to {MAX_WORLD}, got {world!r}")
    sizes = tuple(sizes or (QUICK_SIZES if quick else FULL_SIZES))
    backend = backend or pick_backend(world)
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = mp.start_processes(_child, (world, sizes, backend, out, port), world, join=False,
                               start_method="spawn")  # fmt: skip
    rows, skipped, done, interrupted = [], {}, False, False
    total = len(KINDS) * len(sizes)
    deadline = time.monotonic() + timeout_s
    with _bar(progress, total, world, backend) as advance:
        try:
            finished, last = False, time.monotonic()
            while not done:
                try:
                    msg = out.get(timeout=2.0 if finished else 0.5)
                except queue_mod.Empty:
                    if finished or time.monotonic() > min(deadline, last + STALL_S):
                        break
                    finished = procs.join(timeout=0.01)  # then drain what they left queued
                    continue
                last = time.monotonic()
                if msg[0] == "row":
                    rows.append(_row(msg[1], msg[2], msg[3], world))
                    advance(1)
                elif msg[0] == "skip":
                    skipped[msg[1]] = msg[2]
                    advance(len(sizes))
                else:
                    done = True
            procs.join()
        except KeyboardInterrupt:
            interrupted = True
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as e:
            why = str(e).strip().splitlines()[-1][:200]
            raise MemwallError(f"a collectives process failed ({backend}): {why}") from None
        finally:
            for p in procs.processes:
                if p.is_alive():
                    p.terminate()
    return assemble(rows, skipped, world, backend, sizes, done and not interrupted, interrupted)


def assemble(rows, skipped, world, backend, sizes, complete, interrupted) -> dict[str, Any]:
    """The JSON-able result: rows, skipped collectives with their reason, alpha-beta fits."""
    import torch

    fits = {}
    for kind in KINDS:
        f = fit_alpha_beta([r for r in rows if r["kind"] == kind])
        if f:
            fits[kind] = f
    return {
        "format": COLLECTIVES_FORMAT,
        "world": world,
        "backend": backend,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "sizes": list(sizes),
        "results": rows,
        "skipped": skipped,
        "fit": fits,
        "complete": complete,
        "interrupted": interrupted,
        "measured": True,
        "conventions": "bytes = message (all-reduce buffer, all-gather output, reduce-scatter "
        "input, all-to-all send buffer, send/recv message); busbw = algbw x nccl-tests factor",
    }


class _bar:
    """A rich progress bar on stderr (or nothing); yields an `advance(n)` callable."""

    def __init__(self, on: bool, total: int, world: int, backend: str) -> None:
        self.on, self.total, self.what = on, total, f"collectives, {world} ranks, {backend}"

    def __enter__(self):
        if not self.on:
            return lambda n: None
        from rich.console import Console
        from rich.progress import Progress

        self.p = Progress(console=Console(stderr=True), transient=True)
        self.p.__enter__()
        task = self.p.add_task(self.what, total=self.total)
        return lambda n: self.p.advance(task, n)

    def __exit__(self, *exc: Any) -> None:
        if self.on:
            self.p.__exit__(*exc)


def save_collectives(result: dict[str, Any]) -> str:
    """Save a complete measurement for `--device local`; refuses a partial or unusable one."""
    if not result.get("complete"):
        raise MemwallError("collectives measurement incomplete: nothing saved")
    read_fits(result, "collectives measurement")  # must be readable back
    return str(write_json(collectives_path(), result, mkdir=True))


def measure_collectives_and_save(world: int = 2, quick: bool = False) -> dict[str, Any]:
    """Measure, then save a complete result for `--device local` (its path under `saved`)."""
    res = measure_collectives(world, quick)
    res["saved"] = save_collectives(res) if res["complete"] else None
    return res


class _Collect:
    """Stands in for the queue under torchrun: rank 0 keeps the messages itself."""

    def __init__(self) -> None:
        self.msgs: list[tuple] = []

    def put(self, msg: tuple) -> None:
        self.msgs.append(msg)


def torchrun_main(argv: list[str] | None = None) -> None:
    """Entry under `torchrun` (one process per GPU, any number of nodes): rank 0 prints the
    result as JSON and, with --save, stores it for `--device local`."""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m memwall.measure.collectives")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--save", action="store_true")
    a = ap.parse_args(argv)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    sizes = QUICK_SIZES if a.quick else FULL_SIZES
    backend = pick_backend(int(os.environ.get("LOCAL_WORLD_SIZE", world)))
    out = _Collect()
    run_rank(rank, world, sizes, backend, out)
    if rank != 0:
        return
    rows = [_row(m[1], m[2], m[3], world) for m in out.msgs if m[0] == "row"]
    skipped = {m[1]: m[2] for m in out.msgs if m[0] == "skip"}
    res = assemble(rows, skipped, world, backend, sizes, True, False)
    if a.save:
        res["saved"] = save_collectives(res)
    sys.stdout.write(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    torchrun_main()
