"""Shared CLI plumbing: the Typer app, the --format option and table/json/csv output."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from memwall.errors import MemwallError

app = typer.Typer(
    name="memwall",
    help="Measure, model and explain the memory wall of AI workloads.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Measure, model and explain the memory wall of AI workloads."""


console = Console(width=None if sys.stdout.isatty() else 160)  # pipes: no wrapping at 80
err_console = Console(stderr=True)


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class Phase(str, Enum):
    encode = "encode"
    prefill = "prefill"
    decode = "decode"
    generate = "generate"


def default_phase(is_decoder: bool) -> str:
    return "prefill" if is_decoder else "encode"


# The workload flags every model command shares (same names, same meaning everywhere).
ModelArg = Annotated[
    str,
    typer.Argument(
        help="Preset name (bert-base, gpt2, llama-3-8b, ...) or path to an HF config.json."
    ),
]
PhaseOpt = Annotated[
    Phase | None, typer.Option(help="Default: encode for encoders, prefill for decoders.")
]
BatchOpt = Annotated[int, typer.Option(help="Sequences per step.")]
SeqLenOpt = Annotated[
    int,
    typer.Option(
        "--seq-len",
        help="Tokens per sequence (encode/prefill), or context already cached "
        "(decode/generate; 0 = generate from no prompt, the paper's setting).",
    ),
]
GenLenOpt = Annotated[int, typer.Option("--gen-len", help="Tokens generated (generate).")]

FormatOpt = Annotated[
    Format, typer.Option("--format", "-f", help="Output: table (Rich), json (one object) or csv.")
]


def fail_line(msg: str) -> None:
    """Print one error line to stderr (no markup interpretation of user text)."""
    sys.stderr.write(f"memwall: error: {msg}\n")
    sys.stderr.flush()


def _plain(x: Any) -> Any:
    """Make numpy scalars and other oddities JSON-friendly; NaN/inf become null."""
    if hasattr(x, "item") and not isinstance(x, list | dict | str):
        try:
            x = x.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(_plain(obj), indent=2) + "\n")


def print_csv(rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    if not rows:
        return
    cols = list(columns or rows[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _plain(r.get(k)) for k in cols})
    sys.stdout.write(buf.getvalue())


def si(x: float | None, unit: str = "", digits: int = 3) -> str:
    """Engineering notation: 1.23 G<unit>."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if x == 0:
        return f"0 {unit}".strip()
    prefixes = [(1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")]
    for scale, p in prefixes:
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g} {p}{unit}"
    if abs(x) < 1e-3 and unit == "s":
        return f"{x * 1e6:.{digits}g} us"
    if abs(x) < 1 and unit == "s":
        return f"{x * 1e3:.{digits}g} ms"
    return f"{x:.{digits}g} {unit}".strip()


def binary(x: float | None, digits: int = 3) -> str:
    """Bytes in binary units: 1.5 GiB."""
    if x is None:
        return "-"
    for scale, p in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}g} {p}"
    return f"{x:.0f} B"


def rich_table(
    title: str,
    rows: Sequence[dict],
    columns: Sequence[tuple[str, str, Callable[[Any], str] | None]],
    caption: str | None = None,
) -> Table:
    """columns: (key, header, formatter or None for str)."""
    t = Table(title=title, caption=caption, caption_justify="left", header_style="bold")
    for _, header, _f in columns:
        t.add_column(header, justify="left" if _f is None else "right")
    for r in rows:
        cells = [(f or str)(r.get(k)) if r.get(k) is not None else "-" for k, _, f in columns]
        t.add_row(*[escape(c) for c in cells])  # data, not markup: "[add+norm]" must show
    return t


def emit(
    fmt: Format,
    payload: dict,
    rows: Sequence[dict],
    table: Callable[[], list[Any]],
    csv_columns: Sequence[str] | None = None,
) -> None:
    """One place that turns a result into the three formats of the CLI contract."""
    if fmt is Format.json:
        print_json(payload)
    elif fmt is Format.csv:
        print_csv(rows, csv_columns)
    else:
        for item in table():
            console.print(item)


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise MemwallError(msg)
