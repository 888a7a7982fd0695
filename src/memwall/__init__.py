"""memwall: measure, model and explain the memory wall of AI workloads.

    import memwall
    memwall.analyze("gpt2", phase="generate", seq_len=0, gen_len=128).to_dict()

The library's front door is `memwall.api` (one function per command, see its docstring);
`analyze`, `profile`, `casestudy`, `devices`, `count_ops` and `Result` are re-exported here,
loaded on first use. Importing memwall has no side effects and loads no torch: the packages
that import torchvision or transformers (`memwall.trace`, `memwall.measure`) make a mismatched
torchvision importable first (`memwall.sources.install_torchvision_fallback`).
"""

from typing import Any

from memwall.errors import MemwallError
from memwall.version import __version__

_API = ("analyze", "profile", "casestudy", "devices", "count_ops", "Result")
__all__ = ["MemwallError", "__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        from memwall import api

        return getattr(api, name)
    raise AttributeError(f"module 'memwall' has no attribute {name!r}")
