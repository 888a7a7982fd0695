"""The library's front door checks each argument's type against its annotation: a value of the
wrong type is one MemwallError line naming the argument (it failed deep inside before, with
a TypeError or ValueError: `seq_len="4k"`, `price_per_hour=""`, `overhead_gib="abc"`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import memwall
import memwall.api as api
from memwall.api._types import _accepts
from memwall.errors import MemwallError


@pytest.mark.parametrize(
    "fn,kwargs,needle",
    [
        ("analyze", dict(seq_len="4k"), "--seq-len must be an integer or None, got '4k'"),
        ("analyze", dict(price_per_hour="", device="h100-sxm"), "--price-per-hour must be a"),
        ("analyze", dict(batch=True), "--batch must be an integer or None, got True"),
        ("analyze", dict(bogus=1), "unexpected keyword argument 'bogus'"),
        ("memory", dict(overhead_gib="abc"), "--overhead-gib must be a number or None"),
        ("parallel", dict(kernel_rate=""), "--kernel-rate must be a number or None"),
        ("parallel", dict(devices=8.0), "--devices must be an integer, got 8.0"),
        ("serve", dict(device="h100-sxm", shared_prefix=1.5), "--shared-prefix must be an integer"),
    ],
)
def test_a_wrong_type_is_one_line_naming_the_argument(fn, kwargs, needle):
    with pytest.raises(MemwallError) as e:
        getattr(api, fn)("gpt2", **kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_the_right_types_pass_and_the_function_keeps_its_name_and_doc():
    r = memwall.analyze("gpt2", seq_len=128, batch=2, device="h100-sxm", price_per_hour=2)
    assert r.to_dict()["prediction"]  # an int where a float is annotated is a number
    assert memwall.analyze.__name__ == "analyze" and "FLOPs" in memwall.analyze.__doc__


def test_what_each_annotation_admits():
    assert _accepts(int | None, None) and _accepts(int, 3) and not _accepts(int, 3.0)
    assert not _accepts(int, True) and _accepts(bool, False) and not _accepts(bool, 1)
    assert _accepts(float, 2) and not _accepts(float, "2") and not _accepts(float, True)
    assert _accepts(str | Path | None, Path("x")) and _accepts(str | Path | None, "x")
    assert _accepts(dict[str, float] | str | None, {"ttft": 1.0})
    assert not _accepts(dict[str, float] | str | None, 3)
