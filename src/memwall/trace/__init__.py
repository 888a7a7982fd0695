"""The exact engine: run a real `torch.nn.Module` and count what every aten op does.

`trace_table(spec, workload)` gives the closed form's table (`memwall.count.op_table`) from a
real run of the model (random weights; on the meta device for big models). `trace_module` and
`Tracer` count any module, for callers that need the activations of arbitrary models.
Needs the optional extra: `pip install 'memory-wall[torch]'`.
"""

from __future__ import annotations

from memwall.sources import install_torchvision_fallback

# before any submodule imports transformers: a torchvision built for another torch must not
# break it (this imports nothing; `import memwall` alone leaves the import system alone)
install_torchvision_fallback()

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without the extra
    from memwall.errors import MemwallError

    raise MemwallError(
        "the trace engine needs torch and transformers: pip install 'memory-wall[torch]'"
    ) from e

from memwall.trace.fusion import Kernel, kernels  # noqa: E402
from memwall.trace.mode import CountingMode, OpRecord, Tracer, TraceResult, trace_module  # noqa: E402
from memwall.trace.models import build_model, hf_config, trace_workload  # noqa: E402
from memwall.trace.rules import EXTRA_FLOP_FORMULAS, flop_counter_mode  # noqa: E402
from memwall.trace.table import collapse, rows_from_traces, trace_config, trace_table  # noqa: E402

__all__ = [
    "EXTRA_FLOP_FORMULAS",
    "CountingMode",
    "Kernel",
    "OpRecord",
    "TraceResult",
    "Tracer",
    "build_model",
    "collapse",
    "flop_counter_mode",
    "hf_config",
    "kernels",
    "rows_from_traces",
    "trace_config",
    "trace_module",
    "trace_table",
    "trace_workload",
]
