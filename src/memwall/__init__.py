"""memwall: measure, model and explain the memory wall of AI workloads.

Importing memwall has no side effects: the packages that import torchvision or transformers
(`memwall.trace`, `memwall.measure`) make a mismatched torchvision importable first
(`memwall.sources.install_torchvision_fallback`).
"""

from memwall.errors import MemwallError

__version__ = "0.1.0"
__all__ = ["MemwallError", "__version__"]
