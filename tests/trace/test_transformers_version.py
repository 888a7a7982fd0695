"""The installed transformers is one the trace engine supports, and the range check itself
(`memwall.trace.versions`, the one place the supported range is kept) on made-up releases."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from memwall.errors import MemwallError  # noqa: E402
from memwall.trace import versions  # noqa: E402
from memwall.trace.versions import (  # noqa: E402
    SUPPORTED_TRANSFORMERS,
    check_transformers,
    installed_transformers,
    transformers_at_least,
    unsupported_message,
)

RANGE = ",".join(SUPPORTED_TRANSFORMERS)


def test_installed_transformers_is_in_the_supported_range():
    installed = installed_transformers()
    if installed is None:
        pytest.skip("transformers is not installed (the trace engine's optional extra)")
    msg = unsupported_message()
    assert msg is None, msg  # "transformers X.Y is outside the supported range ..."


@pytest.mark.parametrize(
    "version", ["5.15.0", "5.15", "5.24.0", "5.25.0", "5.25.0+cpu", "5.99.1", "5.16.0.post1"]
)
def test_releases_inside_the_range_pass(version):
    assert unsupported_message(version) is None


@pytest.mark.parametrize(
    "version", ["4.45.0", "4.57.6", "5.0.0", "5.14.1", "5.15.0.dev0", "5.15.0rc1", "6.0.0", "7.1"]
)
def test_releases_outside_the_range_are_named_with_the_range(version):
    msg = unsupported_message(version)
    assert msg is not None and "\n" not in msg
    assert msg.startswith(f"transformers {version} is outside the supported range {RANGE}")
    assert "--engine closed" in msg


def test_a_version_that_is_not_pep440_compares_by_its_numbers():
    assert unsupported_message("5.20.0-custom") is None
    assert unsupported_message("4.57.weird") is not None


def test_missing_transformers_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(versions, "installed_transformers", lambda: None)
    assert "needs transformers" in unsupported_message()
    assert not transformers_at_least("5.0")
    with pytest.raises(MemwallError, match="needs transformers"):
        check_transformers()


def test_check_refuses_an_installed_release_outside_the_range(monkeypatch):
    monkeypatch.setattr(versions, "installed_transformers", lambda: "4.57.6")
    with pytest.raises(MemwallError, match=r"transformers 4\.57\.6 is outside the supported"):
        check_transformers()


@pytest.mark.parametrize(
    ("installed", "at_least", "expected"),
    [("5.24.0", "5.25", False), ("5.25.0", "5.25", True), ("5.26.1", "5.25", True)],
)
def test_transformers_at_least(monkeypatch, installed, at_least, expected):
    monkeypatch.setattr(versions, "installed_transformers", lambda: installed)
    assert transformers_at_least(at_least) is expected


def test_bounds_are_of_the_two_accepted_forms():
    """The range reads `>=X` and `<X` only; anything else is a mistake in the constant."""
    for bound in SUPPORTED_TRANSFORMERS:
        assert bound.startswith((">=", "<")) and versions._satisfies("5.0", bound) in (True, False)
    with pytest.raises(ValueError, match="unsupported version bound"):
        versions._satisfies("5.0", "~=5.0")
