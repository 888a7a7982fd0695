"""Memory footprint of serving and training a model, and what changes it.

- `inference`: weights (quantisation scales included), KV cache, peak activations; the largest
  batch and context that fit a device.
- `states`: weights, gradients, optimizer state (SGD, momentum, Adam/AdamW, AdaHessian) and fp32
  master weights in mixed precision, per device under ZeRO stages and offload.
- `training`: one step: those states, activations derived from the model's operations
  (`activations`), checkpointing (`checkpointing`); the peak on a timeline of the step.
- `report`: what `memwall memory` answers (the JSON payload and the breakdown rows).
- `remat`: the rematerialisation trade-off, activation memory against recompute FLOPs.
- `paper`: the paper's Figure 4 table against the accelerators of each year.
- `measured`: real peaks on this CPU (torch + transformers), to check the predictions.
"""

from memwall.memory.checkpointing import Checkpointing, parse_checkpointing
from memwall.memory.fit import Fit, check_fit
from memwall.memory.inference import (
    InferenceFootprint,
    inference_memory,
    kv_cache_bytes,
    max_batch,
    max_context,
    weight_bytes,
)
from memwall.memory.optimizers import OptimizerDef, get_optimizer, optimizer_names
from memwall.memory.remat import claim_check, remat_curve
from memwall.memory.states import model_states
from memwall.memory.training import TrainingFootprint, max_train_batch, training_memory

__all__ = [
    "Checkpointing",
    "Fit",
    "InferenceFootprint",
    "OptimizerDef",
    "TrainingFootprint",
    "check_fit",
    "claim_check",
    "get_optimizer",
    "inference_memory",
    "kv_cache_bytes",
    "max_batch",
    "max_context",
    "max_train_batch",
    "model_states",
    "optimizer_names",
    "parse_checkpointing",
    "remat_curve",
    "training_memory",
    "weight_bytes",
]
