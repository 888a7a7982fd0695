"""The paper's remedies, measured: real quantised and pruned models, their bytes, speed, accuracy.

Torch lives here (measuring); what memwall's count predicts for each method is in `methods`
(pure). `remedy_claims(rows)` turns result rows into the paper's claims with verdicts.
"""

from memwall.compress.claims import remedy_claims
from memwall.compress.methods import Method, parse_method, predicted
from memwall.compress.run import PARETO_METHODS, compress, pareto, run
from memwall.compress.train import load_trained, recipes

__all__ = [
    "PARETO_METHODS",
    "Method",
    "compress",
    "load_trained",
    "pareto",
    "parse_method",
    "predicted",
    "recipes",
    "remedy_claims",
    "run",
]
