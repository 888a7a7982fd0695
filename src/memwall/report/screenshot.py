"""Open a report in headless Chromium (Selenium + the system's chromium and chromedriver): the
screenshot in docs/ and the browser tests both start it here.

    python -m memwall.report.screenshot build/report/index.html docs/report.png
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from memwall.errors import MemwallError
from memwall.io import check_output_path, write_bytes

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
DRIVER = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def _find(paths: tuple[str, ...], name: str) -> str:
    for p in paths:
        if Path(p).is_file():
            return p
    found = shutil.which(name)
    if found:
        return found
    raise MemwallError(
        f"{name} not found (looked in {', '.join(paths)}); install chromium and chromium-driver"
    )


def chrome(width: int = 1280, height: int = 900) -> Any:
    """A headless Chromium driver with browser and performance logs enabled."""
    try:
        from selenium import webdriver  # the test extra; only this tool needs it
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise MemwallError("selenium is not installed: pip install '.[test]'") from None
    opts = webdriver.ChromeOptions()
    opts.binary_location = _find(CHROMIUM, "chromium")
    for a in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--hide-scrollbars",
    ):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(_find(DRIVER, "chromedriver")), options=opts)
    # the window size includes the browser's own frame: make the page's viewport exactly
    # width x height, so "the first screen" means the same on every machine
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
    )
    return driver


def screenshot(index: Path, png: Path, width: int = 1280, height: int = 900) -> Path:
    """The first screen a reader sees (1280 x 900 by default) as a PNG."""
    if not index.is_file():
        raise MemwallError(f"no report at {index}; run `make report` first")
    check_output_path(png, ["png"], "screenshot")
    driver = chrome(width, height)
    try:
        driver.get(index.resolve().as_uri())
        for _ in range(100):  # the page, then Plotly's drawing of the figures on it
            if driver.execute_script("return document.readyState") == "complete":
                break
            time.sleep(0.1)
        time.sleep(1.0)
        data = driver.get_screenshot_as_png()
    finally:
        driver.quit()
    return write_bytes(png, data)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        sys.stderr.write("usage: python -m memwall.report.screenshot INDEX.html OUT.png\n")
        return 2
    try:
        out = screenshot(Path(args[0]), Path(args[1]))
    except MemwallError as e:
        sys.stderr.write(f"memwall: error: {e}\n")
        return 2
    sys.stdout.write(f"screenshot written to {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
