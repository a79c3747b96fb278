"""Headless Chromium for the widget tests: Debian's ``chromium`` driven by Playwright's Python client.

A missing browser fails the tests (the suite must not pass by silently leaving the widgets untested);
``MOTIONKIT_SKIP_BROWSER_TESTS=1`` is the explicit way to skip them on a machine without Chromium."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MOTIONKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def playwright_and_chromium():
    """The ``playwright.sync_api`` module, once Chromium is known to be there (else fail or skip)."""
    skip = os.environ.get("MOTIONKIT_SKIP_BROWSER_TESTS") == "1"
    missing = []
    try:
        from playwright import sync_api
    except ImportError:
        sync_api, missing = None, ["the playwright Python package (the test extra)"]
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        missing.append(f"Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set MOTIONKIT_CHROMIUM)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if skip:
            pytest.skip(message)
        pytest.fail(message + ". Set MOTIONKIT_SKIP_BROWSER_TESTS=1 to skip them explicitly.", pytrace=False)
    return sync_api
