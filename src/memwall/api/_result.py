"""The one result type every `memwall.api` function returns.

A command's answer is data first: `payload` is exactly what `memwall CMD --format json` prints,
`rows` / `columns` exactly what `--format csv` prints; the CLI's Rich table and a notebook's
HTML are two renderings of the same object, so the command line and the library cannot drift.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Result:
    """What one command computed.

    `payload`: the JSON object (plain numbers in base units); `rows` and `columns`: the table
    (one dict per row; `columns` orders the CSV); `title` and `notes`: what the CLI prints
    above and below the table (convention, precision, assumptions); `extra`: live objects the
    renderers need (DataFrames, specs), not part of the JSON; `plotter`: draws the command's
    figure to a path, where the command has one."""

    command: str
    payload: dict[str, Any]
    rows: Sequence[dict[str, Any]] = ()
    columns: Sequence[str] | None = None
    title: str = ""
    notes: Sequence[str] = ()
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    plotter: Callable[[Path], Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Exactly `memwall CMD ... --format json` (a deep copy: yours to change)."""
        return copy.deepcopy(self.payload)

    def to_frame(self) -> Any:
        """The table as a pandas DataFrame (the `--format csv` columns, in order)."""
        import pandas as pd

        df = pd.DataFrame(list(self.rows))
        if self.columns is not None:
            df = df.reindex(columns=list(self.columns))  # a column no row has: empty, as in CSV
        return df

    @property
    def ops(self) -> Any:
        """The per-operation table (for commands that count operations), as a DataFrame."""
        return self.to_frame()

    def plot(self, path: str | Path) -> Path:
        """Write the command's figure to `path` (.png or .svg; .pdf where the command writes
        one); returns the path."""
        if self.plotter is None:
            from memwall.errors import MemwallError

            raise MemwallError(f"memwall {self.command} has no figure for this result")
        from memwall.io import check_output_path

        out = Path(path)
        check_output_path(out, ("png", "svg", "pdf"), "plot file")
        self.plotter(out)
        return out

    def __getitem__(self, key: str) -> Any:
        """`result["totals"]`: a field of the JSON payload."""
        return self.payload[key]

    def _repr_html_(self) -> str:
        """Jupyter: the title, the table and the notes (escaped; at most 60 rows)."""
        head = f"<b>{html.escape(self.title or 'memwall ' + self.command)}</b>"
        table = self.to_frame().head(60).to_html(index=False) if self.rows else ""
        notes = "".join(f"<br><small>{html.escape(n)}</small>" for n in self.notes)
        return head + table + notes
