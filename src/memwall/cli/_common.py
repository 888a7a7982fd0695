"""Shared CLI plumbing: the Typer app, the --format option and table/json/csv output."""

from __future__ import annotations

import csv
import importlib
import io
import json
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console

try:  # typer >= 0.2x vendors its own click
    from typer._click import exceptions as click
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click
    from click import get_current_context
    from click.core import ParameterSource
from rich.markup import escape
from rich.table import Table

# the shared helpers live in memwall.api (the CLI and the library say the same); re-exported
from memwall.api._analyze import OP_COLUMNS, PRED_CSV_COLUMNS, op_rows  # noqa: F401
from memwall.api._common import binary, default_phase, not_applicable, si  # noqa: F401
from memwall.api._common import image_tokens as _image_tokens
from memwall.api._common import plain as _plain
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


# The workload flags every model command shares (same names, same meaning everywhere).
ModelArg = Annotated[
    str,
    typer.Argument(
        help="Preset name (bert-base, gpt2, llama-3-8b, ...), path to an HF config.json, "
        "torchvision:NAME (e.g. torchvision:resnet50), or module:function: Python code you "
        "choose to run, returning (module, inputs) (never run from a config file)."
    ),
]
# `parallel` and `serve` price a model from its architecture: presets and config files only.
ConfigModelArg = Annotated[
    str,
    typer.Argument(
        help="Preset name (gpt2, llama-3-8b, llama-3-70b, ...) or path to an HF config.json "
        "(Python code and torchvision models are for analyze, memory and profile)."
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

PRICE_HELP = (
    "US dollars per device-hour (rental price): adds the predicted cost per million tokens "
    "beside the predicted energy (J per token) and average power (W)."
)
FormatOpt = Annotated[
    Format, typer.Option("--format", "-f", help="Output: table (Rich), json (one object) or csv.")
]
QuantizeHeadOpt = Annotated[
    bool,
    typer.Option(
        "--quantize-head",
        help="Integer formats: quantize the LM head and embeddings too (default: 16-bit).",
    ),
]


def op_columns(kv_cache: bool, predicted: bool) -> list[tuple[str, str, Any]]:
    """The table columns of an operation table (`analyze`): the KV-cache reads where a model
    has a cache, the predicted time and bound where a device was given."""
    cols: list[tuple[str, str, Any]] = [
        ("name", "op", None),
        ("kind", "kind", None),
        ("count", "x", lambda v: str(int(v))),
        ("flops", "FLOPs", lambda v: si(v)),
        ("bytes", "bytes", lambda v: si(v, "B")),
        ("intensity", "FLOP/B", lambda v: f"{v:.3g}"),
        ("bytes_weight", "weights", lambda v: si(v, "B")),
    ]
    if kv_cache:
        cols.append(("bytes_kv", "KV read", lambda v: si(v, "B")))
    if predicted:
        cols += [("time", "pred. time", lambda v: si(v, "s")), ("bound", "bound", None)]
    return cols


def fail_line(msg: str, prefix: str = "memwall: error: ") -> None:
    """Print one error line to stderr (no markup interpretation of user text)."""
    sys.stderr.write(f"{prefix}{msg}\n")
    sys.stderr.flush()


def print_json(obj: dict) -> None:
    sys.stdout.write(json.dumps(_plain(obj), indent=2) + "\n")


def print_csv(rows: Sequence[dict], columns: Sequence[str] | None = None) -> None:
    """CSV on stdout; with known columns, the header is printed even when no row matched."""
    if not rows and not columns:
        return
    cols = list(columns or rows[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _plain(r.get(k)) for k in cols})
    sys.stdout.write(buf.getvalue())


def rich_table(
    title: str,
    rows: Sequence[dict],
    columns: Sequence[tuple[str, str, Callable[[Any], str] | None]],
    caption: str | None = None,
) -> Table:
    """columns: (key, header, formatter or None for str)."""
    t = Table(
        title=escape(title),  # titles and captions carry user text (series, file names)
        caption=escape(caption) if caption else None,
        caption_justify="left",
        header_style="bold",
    )
    for _, header, _f in columns:
        t.add_column(escape(header), justify="left" if _f is None else "right")
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


def typed_options() -> dict[str, Any]:
    """The options the user typed for the running command, by command-line spelling, with
    their values: `--seq-len 128` is typed even where 128 is the default."""
    ctx = get_current_context(silent=True)
    if ctx is None:
        return {}
    typed = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
    return {
        flag: ctx.params.get(p.name)
        for p in ctx.command.params
        if p.name and ctx.get_parameter_source(p.name) in typed
        for flag in (*p.opts, *p.secondary_opts)
    }


def refuse_options(flags: Sequence[str], why: str) -> None:
    """One line naming every flag of `flags` the user typed that does not apply, and why."""
    not_applicable([f for f in typed_options() if f in flags], why)


def image_tokens(spec, seq_len: int, image_size: int | None) -> int:
    """A vision Transformer (ViT config) encodes an image: (side / patch)^2 patches and a class
    token, the side from --image-size or its config (--seq-len is refused, never ignored)."""
    typed = not spec.patch_size or "--seq-len" in typed_options()
    return _image_tokens(spec, seq_len if typed else None, image_size)


op_csv = op_rows  # the rows and columns of an operation table's CSV (memwall.api)


def require(cond: bool, msg: str) -> None:
    if not cond:
        raise MemwallError(msg)


# What an interrupted command keeps, said in the one line Ctrl-C prints (see `keep_note`).
_NOTHING_KEPT = "nothing was saved (outputs are written whole or not at all)"
_kept = [_NOTHING_KEPT]


def keep_note(text: str) -> None:
    """Say what this run has kept so far, for the line printed if it is interrupted
    (e.g. "3 of 10 timed runs printed", "the previous complete measurement is kept")."""
    _kept[0] = text


def register(commands: Sequence[str], argv: Sequence[str] | None = None) -> None:
    """Import the subcommand modules: each registers itself on `app`. Given the command line,
    only the subcommand it names is imported (start-up time is the import time of what runs);
    without one (`memwall`, `memwall --help`, a misspelt command) every subcommand is."""
    first = next((a for a in argv or () if not a.startswith("-")), None)
    for name in [first] if first in commands else commands:
        importlib.import_module(f"memwall.cli.{name}")


def _interrupted() -> None:
    fail_line(f"interrupted: {_kept[0]}", prefix="memwall: ")
    sys.exit(130)


def run(argv: list[str] | None, commands: Sequence[str]) -> None:
    """Run the command line: one line and exit 2 for bad input, one line and 130 for Ctrl-C."""
    _kept[0] = _NOTHING_KEPT
    try:
        register(commands, sys.argv[1:] if argv is None else argv)
        rc = app(args=argv, prog_name="memwall", standalone_mode=False)
    except click.NoArgsIsHelpError as e:  # `memwall` alone: its help is the answer
        sys.stdout.write(e.ctx.get_help() + "\n")
        sys.exit(0)
    except click.UsageError as e:
        hint = f" (see 'memwall {e.ctx.info_name} --help')" if e.ctx and e.ctx.parent else ""
        fail_line(e.format_message().replace("\n", " ") + hint)
        sys.exit(2)
    except click.ClickException as e:
        fail_line(e.format_message().replace("\n", " "))
        sys.exit(2)
    except MemwallError as e:
        fail_line(str(e))
        sys.exit(2)
    except KeyboardInterrupt:  # raised outside Typer's own handler (e.g. while registering)
        _interrupted()
    if rc == 130:  # Typer turns a KeyboardInterrupt inside a command into exit code 130
        _interrupted()
    sys.exit(rc if isinstance(rc, int) else 0)
