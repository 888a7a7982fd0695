"""One Rich progress bar on stderr (never on stdout, which carries the result), shared by the
commands that do long work (measure, profile, casestudy)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from memwall.cli._common import err_console


class Bar:
    """A transient bar: advance by units of work, describe, resize."""

    def __init__(self, prog: Any, task: Any) -> None:
        self._prog, self._task = prog, task

    def advance(self, n: float = 1.0) -> None:
        self._prog.update(self._task, advance=n)

    def describe(self, text: str) -> None:
        self._prog.update(self._task, description=text)

    def resize(self, total: float) -> None:
        self._prog.update(self._task, total=total)

    def step(self, text: str, n: float = 0.0) -> None:
        """Describe, then advance (the `(description, units)` callback of long work)."""
        self._prog.update(self._task, description=text, advance=n)


@contextmanager
def progress_bar(total: float | None, label: str) -> Iterator[Bar]:
    """A transient Rich bar on stderr."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as prog:
        yield Bar(prog, prog.add_task(label, total=total))
