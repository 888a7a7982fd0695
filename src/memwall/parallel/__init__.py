"""Beyond one device: layouts over N devices, the collectives they run, and the step they take.

Pure (no torch): per-device work comes from `memwall.count`, memory from `memwall.memory`,
time from the roofline and the alpha-beta model of `collectives` over the links of
`data/interconnect.csv` (or the ones `memwall measure --collectives` fitted here).
"""

from memwall.parallel.collectives import (
    KINDS,
    Collective,
    alpha_beta_time,
    bus_factor,
    bytes_per_rank,
)
from memwall.parallel.layout import Layout, complete_layout, validate_layout
from memwall.parallel.links import Link, Links, interconnect_names, links_for
from memwall.parallel.plan import Options, Plan, bubble_fraction, plan
from memwall.parallel.search import SearchResult, search
from memwall.parallel.wall import crossover, interconnect_wall

__all__ = [
    "KINDS",
    "Collective",
    "Layout",
    "Link",
    "Links",
    "Options",
    "Plan",
    "SearchResult",
    "alpha_beta_time",
    "bubble_fraction",
    "bus_factor",
    "bytes_per_rank",
    "complete_layout",
    "crossover",
    "interconnect_wall",
    "interconnect_names",
    "links_for",
    "plan",
    "search",
    "validate_layout",
]
