"""The front door's type check: each argument of a library function against its annotation.

A notebook passes Python values straight in (the CLI parses them first), so `seq_len="4k"` or
`price_per_hour=""` would otherwise fail deep inside with a TypeError far from its cause. Each
function is wrapped once (`checked`): an argument whose type its annotation does not admit is
one MemwallError naming the argument, what it accepts and what it got. Values are checked for
type only; ranges stay with the code that knows them.
"""

from __future__ import annotations

import functools
import inspect
import numbers
import os
import types
import typing
from collections.abc import Callable
from typing import Any

from memwall.errors import MemwallError

OWN_CHECK = {"model"}  # checked where it is read, with what it may name (`_common.model_text`)
_NAMES = {int: "an integer", float: "a number", bool: "True or False", str: "a string"}


def _accepts(hint: Any, value: Any) -> bool:
    """Whether `value` is of a type `hint` admits (unknown hints admit anything)."""
    if hint is Any or hint is object:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_accepts(h, value) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin is not None:  # dict[str, float], list[int], Sequence[str]: the container alone
        return isinstance(origin, type) and isinstance(value, origin)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return isinstance(value, (str, os.PathLike))
    return not isinstance(hint, type) or isinstance(value, hint)


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_describe(h) for h in typing.get_args(hint) if h is not type(None)]
        text = " or ".join(dict.fromkeys(parts))
        return f"{text} or None" if type(None) in typing.get_args(hint) else text
    if hint is type(None):
        return "None"
    if origin is not None:
        return f"a {getattr(origin, '__name__', str(origin))}"
    if isinstance(hint, type) and issubclass(hint, os.PathLike):
        return "a path"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def checked(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with each argument checked against its annotation first (see the module)."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an annotation that does not resolve: leave the function as it is
        return fn
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as e:  # an unknown or missing argument: Python's own words
            raise MemwallError(f"{fn.__name__}(): {e}") from None
        for name, value in bound.arguments.items():
            hint = None if name in OWN_CHECK else hints.get(name)
            if hint is not None and not _accepts(hint, value):
                flag = name.replace("_", "-")  # the CLI's name, as the other refusals say it
                raise MemwallError(
                    f"--{flag} must be {_describe(hint)}, got {value!r} "
                    f"({fn.__name__}() argument {name})"
                )
        return fn(*args, **kwargs)

    return wrapper
