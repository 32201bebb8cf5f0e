"""Shared set-up of the browser tests (tests/browser/).

They need the built site (_build/html) and Debian's chromium, so they are not part of
`make unit`: they run through `make browser` (after the build), which sets
MLKIT_BROWSER_TEST=1.
"""
import os
from pathlib import Path

import pytest

if os.environ.get("MLKIT_BROWSER_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]

CHROMIUM = os.environ.get("MLKIT_CHROMIUM", "/usr/bin/chromium")
# Headless Chromium as root needs --no-sandbox; the rest keep it from calling home offline.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (its own browser download cannot work here)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} not found: apt-get install -y chromium chromium-driver")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
