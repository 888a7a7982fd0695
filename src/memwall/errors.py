"""One exception type for bad input, so the CLI can print one line and exit 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MemwallError(ValueError):
    """A user-facing error: the message is one line naming what is wrong and what is accepted."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' (did you mean ...?)' suffix with the closest names other than `name` itself
    (case and spaces aside), or '' when none is close."""
    key = name.strip().lower()
    lookup = {c.strip().lower(): c for c in choices}
    lookup.pop(key, None)  # never suggest what was typed: it was already refused
    close = difflib.get_close_matches(key, list(lookup), n=n, cutoff=0.5)
    return f" (did you mean {', '.join(lookup[c] for c in close)}?)" if close else ""


def first_problem(error: Exception, where_empty: str = "") -> str:
    """One line from a pydantic `ValidationError`'s first error: `field.path: message` (the
    path `where_empty` when the error is about the whole object; the message alone if that is
    empty too). Duck-typed on `.errors()`, so this module imports no pydantic."""
    err = error.errors()[0]  # type: ignore[attr-defined]
    where = ".".join(str(x) for x in err.get("loc", ())) or where_empty
    return f"{where}: {err['msg']}" if where else str(err["msg"])
