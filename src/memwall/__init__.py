"""memwall: measure, model and explain the memory wall of AI workloads."""

from memwall.errors import MemwallError

__version__ = "0.1.0"
__all__ = ["MemwallError", "__version__"]
