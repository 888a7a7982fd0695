"""The HTML report: the whole memory-wall analysis of this machine and the chosen devices.

- `build_report(ReportOptions(...)) -> Outcome`: writes OUT/index.html and OUT/results.json.
- A section is any object with `name`, `title`, `order`, `weight` and
  `build(ctx) -> SectionResult`; `register(section)` adds one (later capabilities add theirs).
"""

from memwall.report import sections as _builtin  # noqa: F401 - registers the built-in sections
from memwall.report.base import (
    Column,
    Paragraph,
    ReportContext,
    ReportOptions,
    Section,
    SectionResult,
    Table,
    register,
    registered,
)
from memwall.report.build import Outcome, build_report, check_options

__all__ = [
    "Column",
    "Outcome",
    "Paragraph",
    "ReportContext",
    "ReportOptions",
    "Section",
    "SectionResult",
    "Table",
    "build_report",
    "check_options",
    "register",
    "registered",
]
