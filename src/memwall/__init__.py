"""memwall: measure, model and explain the memory wall of AI workloads."""

from memwall.errors import MemwallError
from memwall.sources import install_torchvision_fallback

install_torchvision_fallback()  # a torchvision built for another torch must not break transformers

__version__ = "0.1.0"
__all__ = ["MemwallError", "__version__"]
