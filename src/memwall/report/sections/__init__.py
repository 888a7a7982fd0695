"""The report's built-in sections, registered in build order (a section may read the results
of those built before it: the claims read the case study, memory and trends)."""

from memwall.report.base import register
from memwall.report.sections import (
    casestudy,
    claims,
    efficiency,
    energy,
    machine,
    memory,
    method,
    parallel,
    published,
    remedies,
    serving,
    trends,
    verdict,
    whatif,
)

BUILTIN = (machine, casestudy, memory, trends, whatif, claims, verdict, method)
# Sections of later capabilities: devices split over many (H4), spec sheet vs achievable (H7),
# predictions checked against published runs, serving, energy (after serving: it prices the
# same accelerator), the remedies measured here.
EXTENSIONS = (efficiency, parallel, published, serving, energy, remedies)

for _m in (*BUILTIN, *EXTENSIONS):
    register(_m.SECTION)
