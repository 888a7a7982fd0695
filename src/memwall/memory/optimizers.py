"""Optimizers as the memory they keep per parameter: moved to `memwall.optimizers` (below both
`memwall.memory` and `memwall.trace`); these names stay importable from here."""

from __future__ import annotations

from memwall.optimizers import OptimizerDef, get_optimizer, optimizer_names

__all__ = ["OptimizerDef", "get_optimizer", "optimizer_names"]
