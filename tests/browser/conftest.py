"""The browser test needs the built site (_build/html) and Debian's chromium, so it is not part
of `make unit`: it runs through `make browser` (after the build), which sets MLKIT_BROWSER_TEST=1.
"""
import os

if os.environ.get("MLKIT_BROWSER_TEST") != "1":
    collect_ignore_glob = ["test_*.py"]
