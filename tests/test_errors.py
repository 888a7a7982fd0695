"""first_problem: pydantic's first error as the one line a user sees."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from memwall.errors import first_problem


class Inner(BaseModel):
    n: int


class Outer(BaseModel):
    inner: Inner


def error(obj) -> ValidationError:
    with pytest.raises(ValidationError) as e:
        Outer.model_validate(obj)
    return e.value


def test_the_field_path_then_the_message():
    msg = first_problem(error({"inner": {"n": "x"}}))
    assert msg.startswith("inner.n: ") and "integer" in msg and "\n" not in msg


def test_a_whole_object_error_names_what_was_given_or_nothing():
    e = error("not an object")
    assert first_problem(e, "top level").startswith("top level: ")
    assert not first_problem(e).startswith(":")
