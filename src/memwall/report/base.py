"""What every report section is and returns, and the registry that lists them.

A section is any object with `name`, `title`, `order` and `build(ctx) -> SectionResult`. It
returns content as data (paragraphs, tables, Plotly figures), never as HTML: the page template
escapes every string, so text from user configs and file names cannot inject markup. A later
capability adds its own section with `register(MySection())`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from memwall.errors import MemwallError


@dataclass(frozen=True)
class Column:
    """One table column: the row key, its header, and how to show it (see render.FORMATS)."""

    key: str
    label: str
    fmt: str = "text"  # text | si | bytes | seconds | flops | rate | pct | ratio | int | num
    unit: str = ""


@dataclass(frozen=True)
class Table:
    """Rows under a caption. `folded`: shown closed under its caption (the numbers behind a
    figure: one click away, not in the reader's path)."""

    caption: str
    columns: tuple[Column, ...]
    rows: tuple[dict[str, Any], ...]
    folded: bool = False
    kind: str = "table"

    def to_dict(self) -> dict[str, Any]:
        return {
            "caption": self.caption,
            "columns": [
                {"key": c.key, "label": c.label, "format": c.fmt, "unit": c.unit}
                for c in self.columns
            ],
            "rows": [dict(r) for r in self.rows],
        }


@dataclass(frozen=True)
class Paragraph:
    text: str
    heading: str = ""
    kind: str = "paragraph"  # "warning": shown as a banner; "lead": the answer, set larger


@dataclass(frozen=True)
class Figure:
    """A Plotly figure (`plotly.graph_objects.Figure`), its caption (units, origin) and its text
    alternative for screen readers (what the figure shows, in words: its main finding)."""

    figure: Any
    caption: str
    key: str
    alt: str = ""
    half: bool = False  # half the width: two such figures side by side
    kind: str = "figure"


Block = Paragraph | Table | Figure


@dataclass
class SectionResult:
    """A built section: blocks in page order, the numbers behind them, and notes."""

    blocks: list[Block] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    complete: bool = True

    def text(self, text: str, heading: str = "") -> None:
        self.blocks.append(Paragraph(text, heading))

    def lead(self, text: str) -> None:
        """A sentence of the answer itself (the verdict's), set a little larger."""
        self.blocks.append(Paragraph(text, kind="lead"))

    def warn(self, text: str) -> None:
        """A warning shown as a banner where it stands (the verdict's, on the first screen)."""
        self.blocks.append(Paragraph(text, kind="warning"))

    def table(
        self,
        caption: str,
        columns: list[Column],
        rows: list[dict[str, Any]],
        folded: bool = False,
    ) -> None:
        self.blocks.append(Table(caption, tuple(columns), tuple(rows), folded))

    def figure(
        self, figure: Any, caption: str, key: str, alt: str = "", half: bool = False
    ) -> None:
        self.blocks.append(Figure(figure, caption, key, alt or caption, half))


@dataclass(frozen=True)
class ReportOptions:
    """What the user asked for. `configs`: model name -> raw config (tests run tiny models)."""

    out: str = "build/report"
    quick: bool = False
    models: tuple[str, ...] = ("bert-base", "bert-large", "gpt2", "llama-3-8b", "mixtral-8x7b")
    devices: tuple[str, ...] = ("local", "a100-sxm-80gb", "h100-sxm", "b200", "mi300x")
    measure: bool = True  # False: never time anything (use saved roofs or none)
    configs: dict[str, dict] = field(default_factory=dict, hash=False)
    casestudy_lengths: tuple[int, ...] | None = None
    casestudy_models: tuple[str, ...] = ("bert-base", "bert-large", "gpt2")
    max_age_s: float = 86400.0  # reuse a saved `local` measurement younger than this
    calm_wait_s: float | None = None  # longest wait for a busy machine (None: report.calm)


@dataclass
class ReportContext:
    """Shared state: the options, resolved devices and every finished section's result."""

    options: ReportOptions
    devices: dict[str, Any] = field(default_factory=dict)  # name -> hardware.Device
    machine: dict[str, Any] = field(default_factory=dict)  # measurement facts (age, load...)
    results: dict[str, SectionResult] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda s: None
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the case study object

    def data(self, section: str) -> dict[str, Any] | None:
        r = self.results.get(section)
        return r.data if r is not None else None


@runtime_checkable
class Section(Protocol):
    """One report section. `order` places it on the page; registration order is build order."""

    name: str
    title: str
    order: int
    weight: float  # relative time for the progress bar

    def build(self, ctx: ReportContext) -> SectionResult: ...


_REGISTRY: dict[str, Section] = {}


def register(section: Section) -> Section:
    """Add a section (or replace one of the same name); returns it."""
    if not isinstance(section, Section):
        raise MemwallError(f"{section!r} is not a report section (needs name, title, build)")
    _REGISTRY[section.name] = section
    return section


def registered() -> list[Section]:
    """Sections in build order (registration order)."""
    return list(_REGISTRY.values())
