"""A headless Chromium for the report's browser tests (shared by the modules here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """The small models a report trains (the remedies section) go to a cache of this test
    session, never the user's: trained once, shared by every report built here."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MEMWALL_CACHE_DIR", str(tmp_path_factory.mktemp("mwcache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    from memwall.report.screenshot import chrome

    d = chrome(1280, 900)
    yield d
    d.quit()


def _open(browser, index: Path) -> None:
    browser.get_log("browser"), browser.get_log("performance")  # drop earlier entries
    browser.get(index.resolve().as_uri())
    for _ in range(100):
        if browser.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)


@pytest.fixture
def open_page() -> Callable[[object, Path], None]:
    """Open a report in the browser and wait until the page has loaded."""
    return _open
