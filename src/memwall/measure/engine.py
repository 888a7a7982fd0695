"""A real serving engine measured here: `transformers serve --continuous-batching` under load.

The engine is transformers' own OpenAI-compatible server with continuous batching and a paged KV
cache (its `--cb-*` flags set the block size, the block count and the tokens per batch). It serves
a tiny Llama-style model with random weights and a character tokenizer built here
(`build_tiny_model`: nothing is downloaded). The load comes from guidellm, a load generator
nobody here wrote, run as a subprocess (its pins clash with this project's, so it lives in a
virtual environment of its own): Poisson arrivals at a fixed rate, synthetic prompts of a given
token count, a fixed output length. Its per-request timings are turned into the metrics of
vLLM's benchmark (`benchmarks/serve`), in seconds:
- ttft: time to first token, from sending the request to its first streamed token;
- e2e: end-to-end latency, from sending the request to the end of its stream;
- tpot: time per output token after the first, (e2e - ttft) / (output_tokens - 1);
- itl: inter-token latency, the gaps between streamed chunks; guidellm keeps only the first and
  last chunk times and the chunk count, so per request their mean, (last - first) / (chunks - 1),
  and over a run the pooled mean (vLLM's mean ITL); no ITL percentiles.
Output lengths are exact only because the model has no EOS token (the server rejects
`ignore_eos`), so each run has one output length, sent as `max_tokens`.

Executables: `transformers` (with its `serving` extra) and `guidellm` are looked up in
MEMWALL_ENGINE_BIN / MEMWALL_GUIDELLM_BIN, beside the running Python, in `.venv-guidellm/bin`
beside this virtual environment, then on PATH. Torch is imported only inside functions.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memwall.errors import MemwallError
from memwall.measure.scripts import guidellm_command, script_python

ENGINE = "transformers serve --continuous-batching"
_PIPES = {"stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
METRICS = ("ttft", "tpot", "itl", "e2e")  # seconds, vLLM's definitions (module docstring)


@dataclass(frozen=True)
class EngineConfig:
    """How `transformers serve` runs: its continuous-batching flags and the CPU threads."""

    block_size: int = 16  # --cb-block-size: tokens per KV page
    num_blocks: int = 256  # --cb-num-blocks: KV cache capacity in blocks
    max_batch_tokens: int = 256  # --cb-max-batch-tokens: query tokens per forward pass
    threads: int | None = 1  # OMP/MKL threads of the server (None: torch's default)
    device: str = "cpu"
    startup_timeout_s: float = 120.0
    steps_log: str | None = None  # a file: time every engine step into it (`engine_steps`)
    prefix_sharing: bool = True  # False (with steps_log): prompts prefilled in full

    def flags(self) -> list[str]:
        return [
            "--continuous-batching",
            f"--cb-block-size={self.block_size}",
            f"--cb-num-blocks={self.num_blocks}",
            f"--cb-max-batch-tokens={self.max_batch_tokens}",
            f"--device={self.device}",
        ]


@dataclass(frozen=True)
class Workload:
    """One load: `requests` requests arriving at `rate` per second (Poisson, or evenly spaced with
    profile="constant"), or sent one at a time (profile="synchronous"), or by `streams` clients
    each sending its next request when its last one ends (profile="concurrent"); prompts of
    `prompt_tokens` (normal with `prompt_stdev`, clipped to [prompt_min, prompt_max] when
    given), each answered with exactly `output_tokens` tokens."""

    rate: float
    requests: int
    prompt_tokens: int
    output_tokens: int
    prompt_stdev: int | None = None
    prompt_min: int | None = None
    prompt_max: int | None = None
    seed: int = 0
    profile: str = "poisson"
    streams: int = 0
    timeout_s: float = 600.0


ASCII_BYTES = (9, 10, 13, *range(32, 127))  # tab, newline, carriage return, printable


TINY = dict(  # LlamaConfig sizes of build_tiny_model's default model
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=4096,
)  # fmt: skip


def build_tiny_model(folder: str | Path, seed: int = 0, **sizes: int) -> Path:
    """A random-weight Llama-style model and a character tokenizer saved in `folder`.

    The tokenizer has one token per ASCII character (98: tab, newline, carriage return and the
    printable ones) and no special token; other bytes become "?". ASCII text round-trips, so
    guidellm's prompt token counts are the server's, and every generated token decodes to one
    whole character, so it streams as a chunk of its own. There is no EOS token: generation
    stops at `max_tokens` only. `sizes`: LlamaConfig arguments replacing those of TINY."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    chars = [level.pre_tokenize_str(chr(b))[0][0] for b in ASCII_BYTES]
    vocab = {ch: i for i, ch in enumerate(chars)}
    # no special tokens, whose text is dropped: another byte becomes an ordinary "?"
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="?"))
    tok.pre_tokenizer = level
    tok.decoder = decoders.ByteLevel()
    PreTrainedTokenizerFast(tokenizer_object=tok).save_pretrained(folder)
    no_ids = dict.fromkeys(("bos_token_id", "eos_token_id", "pad_token_id"))
    config = LlamaConfig(vocab_size=len(vocab), tie_word_embeddings=True, **TINY | sizes, **no_ids)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(**no_ids)
    model.save_pretrained(folder)
    return folder


def _find(env: str, name: str) -> str | None:
    """An executable: $env, beside the running Python, in ../.venv-guidellm/bin, or on PATH."""
    if os.environ.get(env):
        return os.environ[env]
    for path in (Path(sys.executable).parent, Path(sys.prefix).parent / ".venv-guidellm/bin"):
        path = path / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return shutil.which(name)


def engine_bin() -> str | None:
    return _find("MEMWALL_ENGINE_BIN", "transformers")


def guidellm_bin() -> str | None:
    return _find("MEMWALL_GUIDELLM_BIN", "guidellm")


def _serving_installed(exe: str) -> bool:
    """Whether the Python of the `transformers` script `exe` has its `serving` extra."""
    python = script_python(exe) or sys.executable
    check = "import fastapi, uvicorn, openai"
    return subprocess.run([python, "-c", check], capture_output=True).returncode == 0


def missing() -> str | None:
    """Why the engine or the load generator cannot run here, or None when both can."""
    exe = engine_bin()
    if exe is None or not _serving_installed(exe):
        return "no `transformers[serving]` (pip install it; or set MEMWALL_ENGINE_BIN)"
    if guidellm_bin() is None:
        return "no `guidellm` (pip install it in a venv of its own; or set MEMWALL_GUIDELLM_BIN)"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quiet_env(threads: int | None = None) -> dict[str, str]:
    offline = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "PYTHONUNBUFFERED")
    env = {**os.environ, **dict.fromkeys(offline, "1"), "TOKENIZERS_PARALLELISM": "false"}
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def _post(url: str, body: dict, timeout: float) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM to the server's own process group, SIGKILL if it is still there after grace_s."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


# Put first on the engine's PYTHONPATH: a torchvision built for another torch (the CUDA wheel
# beside a CPU torch) must not stop transformers, which imports it, from serving.
# With MEMWALL_ENGINE_STEPS set, every engine step is timed into that file (`engine_steps`).
_SITE = """import os
try:
    from memwall.sources import install_torchvision_fallback
except ImportError:
    pass
else:
    install_torchvision_fallback()
    if os.environ.get("MEMWALL_ENGINE_STEPS"):
        from memwall.measure.engine_steps import install
        share = not os.environ.get("MEMWALL_ENGINE_NO_PREFIX_SHARING")
        install(os.environ["MEMWALL_ENGINE_STEPS"], share)
"""


def _engine_env(config: EngineConfig, folder: Path) -> dict[str, str]:
    """The server's environment: offline, its threads, and `_SITE` run at its start."""
    site = folder / "engine-site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(_SITE)
    package_root = Path(__file__).resolve().parents[2]  # the folder holding memwall/
    env = _quiet_env(config.threads)
    if config.steps_log:
        env["MEMWALL_ENGINE_STEPS"] = str(Path(config.steps_log).resolve())
        if not config.prefix_sharing:
            env["MEMWALL_ENGINE_NO_PREFIX_SHARING"] = "1"
    paths = [str(site), str(package_root), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


@contextmanager
def serve(
    model: str | Path, config: EngineConfig = EngineConfig(), log: str | Path | None = None
) -> Iterator[str]:
    """Runs `transformers serve MODEL` on a free loopback port; yields its base URL once it
    answers /health and one warm-up completion. Always stopped on exit, error or not."""
    exe = engine_bin()
    if exe is None:
        raise MemwallError(missing() or "no engine")
    model = str(Path(model).resolve())
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = Path(log) if log else Path(model) / f"serve-{port}.log"
    cmd = [exe, "serve", model, *config.flags(), "--host=127.0.0.1", f"--port={port}"]
    env = _engine_env(config, log_path.parent)
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, env=env, start_new_session=True, **_PIPES)
    try:
        deadline = time.monotonic() + config.startup_timeout_s
        while not _answers(f"{url}/health"):
            if proc.poll() is not None or time.monotonic() > deadline:
                log_tail = log_path.read_text()[-2000:]
                raise MemwallError(f"transformers serve did not start (log: {log_tail})")
            time.sleep(0.5)
        # the batching worker starts with the first request: keep that out of the measurement
        _post(f"{url}/v1/completions", {"model": model, "prompt": "hi", "max_tokens": 4}, 60)
        yield url
    finally:
        _stop(proc)


def _profile(workload: Workload) -> dict[str, Any]:
    """guidellm's profile of the workload's arrival process."""
    if workload.profile in ("poisson", "constant"):
        return {"kind": workload.profile, "rate": [workload.rate]}
    if workload.profile == "synchronous":
        return {"kind": "synchronous"}
    if workload.profile == "concurrent" and workload.streams >= 1:
        return {"kind": "concurrent", "streams": [workload.streams]}
    raise MemwallError(f"unknown load profile {workload.profile!r} (streams {workload.streams})")


def scenario(url: str, model: str | Path, workload: Workload, out: str | Path) -> dict:
    """guidellm's scenario (its `run --scenario` file) for one workload."""
    model = str(Path(model).resolve())
    data: dict[str, Any] = {"kind": "synthetic_text", "prompt_tokens": workload.prompt_tokens}
    limits = {
        "stdev": workload.prompt_stdev,
        "min": workload.prompt_min,
        "max": workload.prompt_max,
    }
    data.update({f"prompt_tokens_{k}": v for k, v in limits.items() if v is not None})
    return {
        "spec": {
            "backend": {
                "kind": "openai_http",
                "target": url,
                "model": model,
                "request_format": "/v1/completions",
                "max_tokens": workload.output_tokens,
                "timeout": workload.timeout_s,
            },
            "profile": _profile(workload),
            "tokenizer": {"kind": "hf_auto", "model": model},
            "data": [data],
            "constraints": [{"kind": "max_requests", "count": workload.requests}],
            "seed": {"kind": "static", "value": workload.seed},
            "outputs": [{"kind": "json", "path": str(Path(out).resolve())}],
        }
    }


SCHEDULE_TRIES = 3  # runs of one Poisson workload before a lost schedule is an error


def run_load(url: str, model: str | Path, workload: Workload, folder: str | Path) -> dict:
    """Runs guidellm against `url`; returns `parse_guidellm` of its JSON output. A Poisson run
    whose schedule was lost (`schedule_lost`) is run again, up to `SCHEDULE_TRIES` times in
    all; `schedule_reruns` in the result counts them, `started` is when the kept run began."""
    exe = guidellm_bin()
    if exe is None:
        raise MemwallError(missing() or "no guidellm")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "guidellm.json"
    scenario_path = folder / "scenario.json"
    scenario_path.write_text(json.dumps(scenario(url, model, workload, out), indent=1))
    env = _quiet_env()
    env["GUIDELLM__MAX_WORKER_PROCESSES"] = "1"  # one asyncio worker: less CPU off the server
    reruns = 0
    while True:
        out.unlink(missing_ok=True)
        started = time.time()
        with open(folder / "guidellm.log", "w") as log_file:
            cmd = [*guidellm_command(exe), "run", "--scenario", str(scenario_path)]
            cmd.append("--disable-console-interactive")
            timeout = workload.timeout_s + 120
            done = subprocess.run(
                cmd, cwd=folder, env=env, stdout=log_file, timeout=timeout, **_PIPES
            )
        if done.returncode != 0 or not out.exists():
            tail = (folder / "guidellm.log").read_text()[-2000:]
            raise MemwallError(f"guidellm failed ({done.returncode}): {tail}")
        if workload.profile != "poisson" or not schedule_lost(json.loads(out.read_text())):
            break
        reruns += 1
        if reruns >= SCHEDULE_TRIES:
            raise MemwallError(
                f"guidellm lost its Poisson schedule {SCHEDULE_TRIES} times in a row "
                "(every request sent at once); see `schedule_lost`"
            )
    result = parse_guidellm(out)
    result["workload"] = asdict(workload)
    result["schedule_reruns"] = reruns
    result["started"] = started  # epoch seconds the kept run began (after any rerun)
    return result


def schedule_lost(report: dict) -> bool:
    """Whether a guidellm Poisson run lost its schedule: some request's target start is near
    the epoch instead of now. guidellm 0.8.1's Poisson strategy wakes its worker
    (`init_processes_start` sets the start event) before it moves the arrival clock from its
    initial -1.0 to the start time, so a worker that wakes in between schedules every request
    from 1970: all are overdue and go out at once (3 runs of 12 here), which is not the load
    asked for. `guidellm_launch` puts that start in order (0 runs of 20 lost); this still
    checks every run, for a guidellm the launcher does not fit."""
    for bench in report.get("benchmarks", []):
        groups = bench.get("requests") or {}
        for key in ("successful", "incomplete", "errored"):
            for stats in groups.get(key) or []:
                t = _timings(stats).get("targeted_start")
                if t is not None and t < 1e9:  # 2001-09-09: no real schedule starts before it
                    return True
    return False


def _timings(stats: dict) -> dict:
    return (stats.get("info") or {}).get("timings") or {}


def _request(stats: dict, t0: float) -> dict:
    """One request of guidellm's JSON as vLLM's metrics, in seconds (None where unknown)."""
    info = stats.get("info") or {}
    timing = _timings(stats)
    start, end = timing.get("request_start"), timing.get("request_end")
    first, last = timing.get("first_token_iteration"), timing.get("last_token_iteration")
    chunks = timing.get("token_iterations") or 0
    out_tokens = stats.get("output_tokens")
    ttft = first - start if first is not None and start is not None else None
    e2e = end - start if end is not None and start is not None else None
    tpot = None
    if ttft is not None and e2e is not None and out_tokens:
        tpot = (e2e - ttft) / (out_tokens - 1) if out_tokens > 1 else 0.0
    itl = None
    if first is not None and last is not None and chunks > 1:
        itl = (last - first) / (chunks - 1)
    arrival = timing.get("targeted_start") or start
    return {
        "status": info.get("status"),
        "prompt_tokens": stats.get("prompt_tokens"),
        "output_tokens": out_tokens,
        "arrival": arrival - t0 if arrival is not None else None,  # scheduled, from the first
        "start": start - t0 if start is not None else None,  # sent
        **dict(ttft=ttft, tpot=tpot, itl=itl, e2e=e2e, chunks=chunks, error=info.get("error")),
    }


def _stats(values: list[float]) -> dict[str, float | None]:
    import numpy as np

    if not values:
        return {"mean": None, "median": None, "p99": None}
    v = np.asarray(values, dtype=float)
    stats = (v.mean(), np.median(v), np.percentile(v, 99))
    return dict(zip(("mean", "median", "p99"), map(float, stats), strict=True))


def summarize(requests: list[dict]) -> dict:
    """vLLM's summary of a run: counts, duration, throughputs and ttft/tpot/itl/e2e stats."""
    done = [r for r in requests if r["status"] == "completed" and r["e2e"] is not None]
    summary: dict[str, Any] = {"completed": len(done), "failed": len(requests) - len(done)}
    if not done:
        return summary
    duration = max(r["start"] + r["e2e"] for r in done) - min(r["start"] for r in done)
    out_tokens = sum(r["output_tokens"] or 0 for r in done)
    in_tokens = sum(r["prompt_tokens"] or 0 for r in done)
    summary["duration"] = duration
    summary["request_throughput"] = len(done) / duration
    summary["output_throughput"] = out_tokens / duration
    summary["total_token_throughput"] = (in_tokens + out_tokens) / duration
    for name in ("ttft", "tpot", "e2e"):
        summary[name] = _stats([r[name] for r in done if r[name] is not None])
    gaps = [(r["itl"], r["chunks"] - 1) for r in done if r["itl"] is not None]
    pooled = sum(i * n for i, n in gaps) / sum(n for _, n in gaps) if gaps else None
    summary["itl"] = {"mean": pooled}  # percentiles need every gap, which guidellm does not keep
    return summary


def parse_guidellm(path: str | Path) -> dict:
    """guidellm's JSON output as plain JSON-able data: per benchmark, its requests in arrival
    order (`_request`) and their summary (`summarize`)."""
    report = json.loads(Path(path).read_text())
    runs = []
    for bench in report.get("benchmarks", []):
        groups = bench.get("requests") or {}
        stats = [s for key in ("successful", "incomplete", "errored") for s in groups.get(key, [])]
        starts = [_timings(s).get("targeted_start") for s in stats]
        t0 = min((t for t in starts if t is not None), default=0.0)
        requests = sorted(
            (_request(s, t0) for s in stats),
            key=lambda r: (r["arrival"] is None, r["arrival"] or 0.0),
        )
        runs.append({"requests": requests, "summary": summarize(requests)})
    version = (report.get("metadata") or {}).get("guidellm_version")
    return {"tool": f"guidellm {version}" if version else "guidellm", "benchmarks": runs}


def measure(
    model: str | Path,
    workloads: list[Workload],
    config: EngineConfig = EngineConfig(),
    folder: str | Path | None = None,
) -> dict:
    """One server, several workloads in turn: the engine's settings and each run's results."""
    folder = Path(folder) if folder else Path(model) / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    runs = []
    with serve(model, config, log=folder / "serve.log") as url:
        for i, workload in enumerate(workloads):
            runs.append(run_load(url, model, workload, folder / f"run{i}"))
    return {"engine": ENGINE, "config": asdict(config), "runs": runs}
