"""A valid real-engine check record (what bench_serve saves), for the tests that read one."""

from __future__ import annotations

from memwall.records import engine_check


def metrics(scale: float = 1.0) -> dict:
    return {k: scale * (i + 1) for i, k in enumerate(engine_check.METRICS)}


def record() -> dict:
    workload = {
        "mix": "short", "prompt_mean": 64, "output_len": 48, "rate": 6.3, "load": 0.3, "runs": 2,
        "measured": metrics(0.01), "simulated": metrics(0.011), "error": metrics(0.02),
        "rolling_error": metrics(0.015), "repeatability": metrics(0.03),
    }  # fmt: skip
    return {
        "format": engine_check.ENGINE_CHECK_FORMAT,
        "date": "2026-12-07T04:00:00+00:00",
        "engine": "transformers serve --continuous-batching (transformers 5.25.0)",
        "load_generator": "guidellm 0.8.1",
        "model": {"hidden_size": 256, "num_hidden_layers": 4},
        "requests_per_run": 60,
        "machine": {
            "steadiness_before": 1.55,
            "steadiness_after": 1.09,
            "engine_cpu_share": 0.97,
            "load_before": 0.5,
            "load_after": 1.3,
        },  # fmt: skip
        "workloads": [workload, {**workload, "mix": "long", "rate": 2.5}],
        "summary": metrics(0.03),
        "rolling": metrics(0.02),
        "own_speed": metrics(0.01),
        "repeatability": metrics(0.04),
    }
