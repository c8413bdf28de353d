"""Browser tests of the web UI: Debian's chromium driven by Playwright (the Python package; no browser
download). Missing chromium or playwright skips these tests locally and fails them under CI=true.
Screenshots go to $RTPM_SCREENSHOT_DIR when set, else to the test's tmp dir."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

CHROMIUM = os.environ.get("RTPM_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def _unavailable(why: str) -> None:
    if IN_CI:
        pytest.fail(f"browser tests need {why} under CI=true")
    pytest.skip(f"browser tests skipped: {why}")


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    root = os.environ.get("RTPM_SCREENSHOT_DIR")
    path = Path(root) if root else tmp_path / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser_context(tmp_path: Path) -> Iterator[Any]:
    """A fresh Chromium profile (UTC, 1280x800), closed afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package (pip install -e '.[test]')")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        _unavailable(f"chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=DESKTOP,
            timezone_id="UTC",
            locale="en-GB",
        )
        context.set_default_timeout(15_000)
        try:
            yield context
        finally:
            context.close()
