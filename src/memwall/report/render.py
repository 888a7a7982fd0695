"""The page: one self-contained HTML file (Plotly's JS inlined once, no network) and the JSON.

Jinja2 with autoescaping renders every string; only Plotly's own figure markup (its JSON
escapes '<', '>' and '/') and its library are inserted unescaped.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
from functools import cache
from typing import Any

import jinja2
import numpy as np
import plotly.io as pio
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from memwall.report.base import Figure, Table
from memwall.report.fmt import cell

PLOT_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["toImage"]}


@cache
def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("memwall.report", "templates"),
        autoescape=True,  # every string from a config, a file name or a device is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["cell"] = cell
    return env


def figure_id(key: str) -> str:
    """An element id from a figure key that may hold a user's model name: a slug plus a hash."""
    slug = re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-")[:40]
    if slug == key:
        return f"fig-{slug}"
    return f"fig-{slug}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def figure_html(fig: Figure) -> Markup:
    """A figure's div and script (no library: the page carries it once)."""
    html = pio.to_html(
        fig.figure,
        full_html=False,
        include_plotlyjs=False,
        config=PLOT_CONFIG,
        div_id=figure_id(fig.key),
        default_width="100%",
        default_height="360px",
    )
    return Markup(html)  # noqa: S704 - Plotly's own markup; its JSON escapes < > /


def plain(x: Any) -> Any:
    """JSON-able: numpy scalars to Python, NaN/inf to None, dates to ISO text, tuples to lists."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dt.date):
        return x.isoformat()
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple | np.ndarray):
        return [plain(v) for v in x]
    return x


def section_json(result: Any) -> dict[str, Any]:
    """A section's data, tables (raw numbers of every cell shown) and notes."""
    tables = [b.to_dict() for b in result.blocks if isinstance(b, Table)]
    figures = [b.key for b in result.blocks if isinstance(b, Figure)]
    return plain(
        {
            "complete": result.complete,
            "data": result.data,
            "tables": tables,
            "figures": figures,
            "notes": list(result.notes),
        }
    )


def render_page(page: dict[str, Any]) -> str:
    """The whole page from `page` (title, sections as (section, result) pairs, status...)."""
    blocks: dict[str, list[tuple[str, Any, str, str, bool]]] = {}
    for sec, res in page["sections"]:
        out = []
        for b in res.blocks:
            if isinstance(b, Figure):
                out.append((b.kind, figure_html(b), b.caption, b.alt or b.caption, b.half))
            else:
                out.append((b.kind, b, "", "", False))
        blocks[sec.name] = out
    tpl = _env().get_template("report.html.j2")
    return tpl.render(
        **page,
        blocks=blocks,
        plotlyjs=Markup(get_plotlyjs()),  # noqa: S704 - the library
    )
