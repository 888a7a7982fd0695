"""How steady this machine's own speed is: one fixed piece of work, timed window by window.

Why: a guest machine cannot see the host's other tenants. Its load average and the busy
check (`measure.busy`) count only its own processes, yet on a shared host the same work can
take far longer from one second to the next (a busy neighbour on the other hyperthread of the
core, a lower boost clock). A measurement compared with a prediction at the 10% level needs a
machine steadier than that, and the only way to know is to time something that never changes.

`speed_windows` times a fixed loop of small single-threaded torch operations (the kind of
work a CPU serving engine's Python step is made of: dispatch, small matrix products,
elementwise ops) in back-to-back windows and reports the time of one loop per window; the
spread of those times is the machine's own noise at that moment.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Steadiness:
    """Seconds per reference loop in each window, and their spread."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    @property
    def spread(self) -> float:
        """p90 / p10 of the window times: 1.0 is perfectly steady; 1.2 means the same work
        took 20% longer in the slow windows than in the fast ones."""
        p10, p90 = np.percentile(self.seconds, [10, 90])
        return float(p90 / p10)

    def text(self) -> str:
        ms = np.asarray(self.seconds) * 1e3
        return (
            f"reference loop {np.min(ms):.3g}-{np.max(ms):.3g} ms over {len(ms)} windows "
            f"(median {np.median(ms):.3g} ms, p90/p10 {self.spread:.2f})"
        )


def speed_windows(seconds: float = 8.0, window: float = 0.25) -> Steadiness:
    """Times the reference loop in windows of `window` seconds for `seconds` in all, on one
    thread (torch's thread count is restored after)."""
    import torch

    if not (seconds > 0 and 0 < window <= seconds):
        raise ValueError("seconds and window must be positive, window <= seconds")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(4, 256, generator=gen)
        w1 = torch.randn(256, 512, generator=gen)
        w2 = torch.randn(512, 256, generator=gen)

        def loop() -> None:
            with torch.inference_mode():
                h = torch.nn.functional.silu(x @ w1) @ w2
                (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6)).softmax(-1)

        for _ in range(50):  # warm-up
            loop()
        times: list[float] = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < window:
                loop()
                n += 1
            times.append((time.perf_counter() - t0) / n)
    finally:
        torch.set_num_threads(threads)
    return Steadiness(tuple(times))
