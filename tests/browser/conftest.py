"""Shared set-up of the browser tests (tests/browser/).

They need the built site (_build/html) and Debian's chromium, so they are
not part of `make unit`: they run through `make browser` (after the build),
which sets MLKIT_BROWSER_TEST=1.
"""

import functools
import http.server
import os
import socketserver
import threading
from pathlib import Path

import pytest

if os.environ.get("MLKIT_BROWSER_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]

CHROMIUM = os.environ.get("MLKIT_CHROMIUM", "/usr/bin/chromium")
# Headless Chromium as root needs --no-sandbox; the rest keep it from calling
# home offline.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium driven by Playwright (its own browser
    download cannot work here)."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"{CHROMIUM} not found: "
            "apt-get install -y chromium chromium-driver"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield b
        b.close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest's output readable
        pass


@pytest.fixture(scope="session")
def serve_folder():
    """Start serving a folder over HTTP on 127.0.0.1; returns its base URL.

    Port 0: the OS picks a free port, so parallel runs cannot collide. Every
    server started is shut down at the end of the session."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        httpd = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()
