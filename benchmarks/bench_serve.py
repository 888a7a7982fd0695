"""memwall serve against a real engine on this machine, request by request.

The engine is `transformers serve --continuous-batching` (transformers' own server: FIFO
continuous batching, decodes first, chunked prefill within a token budget, paged KV cache),
serving a small random-weight Llama-style model on this CPU; guidellm drives it
(`memwall.measure.engine`). Installed by `make test` (.venv's `serve` extra, .venv-guidellm).

1. Calibration: closed loops (one client at three prompt lengths, then 4, 8 and 16) while
   the engine times each of its steps from inside (`memwall.measure.engine_steps`); the
   step costs are fitted to those steps, the per-request entry cost to the lone requests
   (`memwall.serve.calibrate`).
2. Prediction: open-loop Poisson loads at three rates (the last past the engine's capacity)
   x two length mixes, none of them used in the fit, each run twice (the engine's own
   repeatability). Every run is simulated with the requests guidellm actually sent (send
   times, prompt lengths) and compared: p50 and p90 of TTFT, TPOT and E2E, and throughput.
3. The machine is shared, so the engine's speed drifts between calibration and a run (its
   steps have run at 0.8-1.5x their fitted cost). Two other predictions are printed beside
   the calibrated one: one re-priced at the speed a short probe measured just before the run
   (a closed loop of 4 clients, a workload of its own; it has not beaten the calibration
   alone over two runs: a 2-second probe is as noisy as the drift it measures), one re-priced
   at the speed the engine's steps ran at in the run before (a rolling calibration: the
   previous run's 30-60 s of timed steps, a different workload, nothing of the run it
   predicts), and a diagnostic at the run's own measured step speed (it uses the run itself,
   so it is no prediction: it isolates the scheduling model from the machine's drift).

4. The machine's own steadiness, before and after (`memwall.measure.steadiness`: a fixed loop
   of small torch operations timed in quarter-second windows), and the share of the engine's
   step time its loop thread spent on the CPU: on a shared host the same work can run 1.5x
   slower from one second to the next, which no calibration can foresee.

Saves the comparison for `memwall report` (`memwall.records.engine_check`; `--no-save`: not).
Prints one table row per run and, last, the summary line over the workloads (errors of the
two runs averaged per workload, then the median over workloads; the calibrated prediction).
Takes 5-8 minutes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import memwall.measure.engine as engine
from memwall.errors import MemwallError
from memwall.measure.engine_steps import read
from memwall.measure.steadiness import speed_windows
from memwall.records import engine_check
from memwall.serve.calibrate import Scheduler, compare, fit_entry, fit_steps, simulate_requests
from memwall.serve.workload import Requests

MODEL = dict(
    hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
    num_key_value_heads=4,
)  # fmt: skip
# 32-token blocks: transformers' decode fast path serves requests of up to 32 blocks (its
# max_blocks_per_request), 1,024 tokens here, longer than any request below; past it a batch
# decodes far slower, a path the simulation does not model.
# 2,048 blocks (65,536 tokens): more than any load here holds at once, so the KV cache never
# binds (when it does, this engine offloads to the CPU, a policy the simulation lacks).
CONFIG = engine.EngineConfig(block_size=32, num_blocks=2048, max_batch_tokens=256, threads=1)
# the engine's scheduler as the simulation copies it (max_requests_per_batch: its default)
SCHED = Scheduler(max_tokens=256, max_seqs=1024, block_size=32, blocks=2048)
W = engine.Workload
CALIBRATION = [
    W(0, 10, 32, 32, profile="synchronous", seed=1),
    W(0, 8, 192, 16, profile="synchronous", seed=2),
    W(0, 6, 480, 16, profile="synchronous", seed=3),
    W(0, 16, 64, 48, profile="concurrent", streams=4, seed=4),
    W(0, 24, 64, 48, profile="concurrent", streams=8, seed=5),
    W(0, 24, 320, 24, profile="concurrent", streams=8, seed=6),
    W(0, 48, 96, 32, profile="concurrent", streams=16, seed=7),
]
MIXES = {  # name: (prompt mean, stdev, min, max, output tokens)
    "short": (64, 16, 16, 128, 48),
    "long": (320, 64, 128, 512, 24),
}
# the speed probe before each run: a closed loop of its own (not the run's requests)
PROBE = W(0, 8, 64, 24, profile="concurrent", streams=4, seed=99)
LOADS = (0.3, 0.7, 1.6)  # x the capacity the calibrated model predicts
REQUESTS = 60
REPEATS = 2
METRICS = ("ttft_p50", "tpot_p50", "e2e_p50", "ttft_p90", "tpot_p90", "e2e_p90", "throughput")


def transformers_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("transformers")
    except PackageNotFoundError:
        return "unknown"


def measured_arrays(bench: dict) -> dict:
    """A guidellm run's completed requests as arrays, in seconds."""
    done = [r for r in bench["requests"] if r["status"] == "completed"]
    arr = {k: np.array([r[k] for r in done], dtype=float) for k in ("ttft", "tpot", "e2e")}
    arr["sent"] = np.array([r["start"] for r in done])
    arr["input_len"] = np.array([r["prompt_tokens"] for r in done])
    arr["output_len"] = np.array([r["output_tokens"] for r in done])
    arr["duration"] = bench["summary"]["duration"]
    arr["output_tokens"] = float(arr["output_len"].sum())
    return arr


def as_requests(arr: dict, concurrency: int = 0) -> Requests:
    sent = arr["sent"] - arr["sent"].min() if not concurrency else np.zeros(len(arr["sent"]))
    order = np.argsort(sent, kind="stable")
    return Requests(sent[order], arr["input_len"][order], arr["output_len"][order], concurrency)


def step_drift(costs, steps: dict) -> float:
    """Median measured / fitted time of a run's own steps: how far the engine's speed moved
    since calibration (the machine is shared), apart from what the simulation gets wrong."""
    pred = [
        costs.step(t, s, k)
        for t, s, k in zip(steps["tokens"], steps["seqs"], steps["keys"], strict=True)
    ]
    return float(np.median(np.asarray(steps["seconds"]) / np.asarray(pred))) if pred else math.nan


def step_cpu_share(steps: dict) -> float:
    """The engine loop thread's CPU time over its steps' wall time (nan: not recorded)."""
    cpu, wall = np.asarray(steps["cpu"], float), np.asarray(steps["seconds"], float)
    ok = np.isfinite(cpu)
    return float(cpu[ok].sum() / wall[ok].sum()) if ok.any() else math.nan


def scaled(costs, factor: float):
    """The step costs times `factor` (the entry cost, outside the loop, unchanged)."""
    if not math.isfinite(factor):
        return costs
    d = costs.to_dict()
    d.update({k: v * factor for k, v in d.items() if k != "entry"})
    return type(costs)(**d)


def row_text(err: dict) -> str:
    """measured/simulated (error) per metric: latencies in ms, throughput in tokens/s."""
    parts = []
    for k in METRICS:
        scale = 1.0 if k == "throughput" else 1e3
        m, s = err[k]["measured"] * scale, err[k]["simulated"] * scale
        parts.append(f"{k} {m:.4g}/{s:.4g} ({err[k]['error']:+.0%})")
    return "  ".join(parts)


def capacity(costs, mix) -> float:
    """Requests/s the calibrated model sustains: the best closed loop of 4 to 32 clients (its
    masked attention grows with the batch, so more clients can serve fewer requests)."""
    n, (p, _, _, _, o) = 96, mix
    best = 0.0
    for clients in (4, 8, 16, 32):
        reqs = Requests(np.zeros(n), np.full(n, p), np.full(n, o), clients)
        sim = simulate_requests(costs, reqs, SCHED)
        best = max(best, n / float(np.nanmax(sim["finish"])))
    return best


def main() -> int:
    reason = engine.missing()
    if reason:
        print(f"skipped: {reason} (make test installs the engine and guidellm)")
        return 0
    t0 = time.monotonic()
    load0 = os.getloadavg()[0]
    if load0 > 0.5:
        print(f"warning: load average {load0:.2f} before starting: the machine is busy")
    steady0 = speed_windows()
    print(f"machine before: {steady0.text()}")
    with tempfile.TemporaryDirectory() as tmp:
        model = engine.build_tiny_model(Path(tmp) / "model", **MODEL)
        steps_log = Path(tmp) / "steps.log"
        # prefix sharing off: guidellm's synthetic prompts share prefixes the engine would
        # reuse (TTFT far below a full prefill at high rates); the simulation prefills in full
        config = dataclasses.replace(CONFIG, steps_log=str(steps_log), prefix_sharing=False)
        with engine.serve(model, config, log=Path(tmp) / "serve.log") as url:
            # warm-up: the first requests after start-up run slower (allocation, caches)
            warm = W(0, 12, 128, 16, profile="synchronous")
            tool = engine.run_load(url, model, warm, Path(tmp) / "w")["tool"]
            calib, lone = [], []
            since = time.time()
            for i, w in enumerate(CALIBRATION):
                arr = measured_arrays(
                    engine.run_load(url, model, w, Path(tmp) / f"c{i}")["benchmarks"][0]
                )
                conc = 1 if w.profile == "synchronous" else w.streams
                calib.append((np.median(arr["ttft"]), np.median(arr["tpot"])))
                if conc == 1:
                    lone.append(arr)
                print(
                    f"calibration {w.profile} x{conc} prompt {w.prompt_tokens}: "
                    f"TTFT p50 {calib[-1][0] * 1e3:.1f} ms, TPOT p50 {calib[-1][1] * 1e3:.2f} ms"
                )
            costs, quality = fit_steps(read(str(steps_log), since, time.time()))
            prompts = np.concatenate([a["input_len"] for a in lone])
            costs = fit_entry(costs, prompts, np.concatenate([a["ttft"] for a in lone]))
            print(
                f"engine costs from {quality['steps']} timed steps (step |error| median "
                f"{quality['median']:.0%}, p90 {quality['p90']:.0%}): "
                + ", ".join(f"{k} {v:.3g} s" for k, v in costs.to_dict().items())
            )
            rows = []
            last = 1.0  # the previous run's step speed; the calibration's own for the first
            for name, mix in MIXES.items():
                cap = capacity(costs, mix)
                for load in LOADS:
                    rate = round(load * cap, 2)
                    errs, errs_probe, errs_speed, errs_roll, runs = [], [], [], [], []
                    for rep in range(REPEATS):
                        w = W(rate, REQUESTS, mix[0], mix[4], mix[1], mix[2], mix[3], seed=10 + rep)
                        out = Path(tmp) / f"{name}-{load}-{rep}"
                        t_probe = time.time()
                        engine.run_load(url, model, PROBE, Path(tmp) / f"p-{name}-{load}-{rep}")
                        probe = step_drift(costs, read(str(steps_log), t_probe, time.time()))
                        t_run = time.time()
                        result = engine.run_load(url, model, w, out)
                        t_run = result.get("started", t_run)  # a lost schedule was run again
                        arr = measured_arrays(result["benchmarks"][0])
                        drift = step_drift(costs, read(str(steps_log), t_run, time.time()))
                        sim = simulate_requests(costs, as_requests(arr), SCHED)
                        errs.append(compare(arr, sim))
                        probed = simulate_requests(scaled(costs, probe), as_requests(arr), SCHED)
                        errs_probe.append(compare(arr, probed))
                        at_speed = simulate_requests(scaled(costs, drift), as_requests(arr), SCHED)
                        errs_speed.append(compare(arr, at_speed))
                        rolled = simulate_requests(scaled(costs, last), as_requests(arr), SCHED)
                        errs_roll.append(compare(arr, rolled))
                        rolled_at, last = last, drift if math.isfinite(drift) else last
                        runs.append(arr)
                        done = len(arr["e2e"]) / arr["duration"]
                        sent = (len(arr["sent"]) - 1) / max(float(np.ptp(arr["sent"])), 1e-9)
                        kept = "kept up" if done >= 0.9 * sent else "fell behind"
                        per_req = np.median(np.abs(np.sort(sim["e2e"]) / np.sort(arr["e2e"]) - 1))
                        print(
                            f"{name:5} {rate:6.2f}/s run {rep}: {row_text(errs[-1])}"
                            f"  per-request E2E |err| median {per_req:.0%}"
                            f"  (sent {sent:.1f} req/s, served {done:.1f}: {kept};"
                            f" the probe's steps {probe:.2f}x, the previous run's"
                            f" {rolled_at:.2f}x, the run's {drift:.2f}x the fitted cost"
                            + (
                                f"; guidellm's schedule lost and run again x{n}"
                                if (n := result.get("schedule_reruns", 0))
                                else ""
                            )
                            + ")"
                        )
                    spread = {
                        k: abs(errs[1][k]["measured"] / errs[0][k]["measured"] - 1) for k in METRICS
                    }
                    mean_err = {
                        k: statistics.mean(abs(e[k]["error"]) for e in errs) for k in METRICS
                    }
                    speed_err = {
                        k: statistics.mean(abs(e[k]["error"]) for e in errs_speed) for k in METRICS
                    }
                    probe_err = {
                        k: statistics.mean(abs(e[k]["error"]) for e in errs_probe) for k in METRICS
                    }
                    roll_err = {
                        k: statistics.mean(abs(e[k]["error"]) for e in errs_roll) for k in METRICS
                    }
                    means = {
                        side: {k: statistics.mean(e[k][side] for e in errs) for k in METRICS}
                        for side in ("measured", "simulated")
                    }
                    rows.append(
                        (name, rate, load, mean_err, spread, speed_err, probe_err, roll_err, means)
                    )
        cpu_share = step_cpu_share(read(str(steps_log), since, time.time()))
    steady1 = speed_windows()
    took = time.monotonic() - t0
    print(f"\n(latencies ms measured/simulated, throughput tokens/s; took {took:.0f} s)")
    print("workload         |err| per metric (mean of runs); engine repeatability in brackets")
    for name, rate, load, err, spread, *_ in rows:
        print(
            f"{name:5} {rate:6.2f}/s ({load:.1f}x cap): "
            + "  ".join(f"{k} {err[k]:.0%} [{spread[k]:.0%}]" for k in METRICS)
        )
    load1 = os.getloadavg()[0]
    print(f"load average: {load0:.2f} at the start, {load1:.2f} at the end (the engine and")
    print("guidellm use about 1.5 of this machine's cores; more means other work ran)")
    print(
        f"machine after: {steady1.text()}; the engine's steps ran on the CPU for "
        f"{cpu_share:.1%} of their time (the rest: waiting for the GIL or a core)"
    )
    worst = max(steady0.spread, steady1.spread)
    if worst > 1.1:
        print(
            f"warning: the same fixed work took {worst - 1:.0%} longer in the slow quarter "
            "seconds (p90) than in the fast ones (p10): this machine's own speed is not steady "
            "enough to resolve errors of that size"
        )
    med = {k: statistics.median(r[3][k] for r in rows) for k in METRICS}
    rep = {k: statistics.median(r[4][k] for r in rows) for k in METRICS}
    print(
        "engine repeatability (median run-to-run difference): "
        + ", ".join(f"{k} {rep[k]:.0%}" for k in METRICS)
    )
    probed = {k: statistics.median(r[6][k] for r in rows) for k in METRICS}
    print(
        "re-priced at the probe's speed measured just before each run: "
        + ", ".join(f"{k} {probed[k]:.0%}" for k in METRICS)
    )
    rolled = {k: statistics.median(r[7][k] for r in rows) for k in METRICS}
    print(
        "re-priced at the speed of the previous run's steps (rolling calibration): "
        + ", ".join(f"{k} {rolled[k]:.0%}" for k in METRICS)
    )
    fast = {k: statistics.median(r[5][k] for r in rows) for k in METRICS}
    print(
        "with each run's own measured step speed (the fitted costs scaled by its steps' median "
        "measured/fitted ratio, which isolates the scheduling model from the machine's drift): "
        + ", ".join(f"{k} {fast[k]:.0%}" for k in METRICS)
    )
    print(f"p90s: TTFT {med['ttft_p90']:.0%}, TPOT {med['tpot_p90']:.0%}, E2E {med['e2e_p90']:.0%}")
    if "--no-save" not in sys.argv:
        machine = dict(
            steadiness_before=steady0.spread, steadiness_after=steady1.spread,
            engine_cpu_share=cpu_share, load_before=load0, load_after=load1,
        )  # fmt: skip
        record = {
            "format": engine_check.ENGINE_CHECK_FORMAT,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "engine": f"{engine.ENGINE} (transformers {transformers_version()})",
            "load_generator": tool,
            "model": MODEL,
            "requests_per_run": REQUESTS,
            "machine": machine,
            "workloads": [
                {
                    "mix": name,
                    "prompt_mean": MIXES[name][0],
                    "output_len": MIXES[name][4],
                    "rate": rate,
                    "load": load,
                    "runs": REPEATS,
                    **r[8],
                    "error": r[3],
                    "rolling_error": r[7],
                    "repeatability": r[4],
                }  # fmt: skip
                for r in rows
                for name, rate, load in [r[:3]]
            ],
            "summary": med,
            "rolling": rolled,
            "own_speed": fast,
            "repeatability": rep,
        }
        try:
            print(f"saved for memwall report: {engine_check.save(record)}")
        except MemwallError as e:
            print(f"not saved: {e}")
    print(
        f"summary: TTFT p50 {med['ttft_p50']:.0%}, TPOT p50 {med['tpot_p50']:.0%}, "
        f"E2E p50 {med['e2e_p50']:.0%}, throughput {med['throughput']:.0%} "
        f"(median errors over {len(rows)} workloads)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
