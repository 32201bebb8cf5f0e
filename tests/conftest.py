"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def refuses(capsys):
    """``refuses(argv, says)``: ``python -m mlkit ARGV`` ends with status 2 and
    one line on standard error that contains ``error:`` and ``says``, without a
    traceback (the command line's rule for bad input)."""
    from mlkit.__main__ import main

    def check(argv: list[str], says: str) -> None:
        try:
            status = main(argv)
        except SystemExit as stop:  # argparse's own usage errors
            status = stop.code
        err = capsys.readouterr().err
        assert status == 2, err
        assert err.count("\n") == 1 and "error:" in err and says in err, err
        assert "Traceback" not in err

    return check


@pytest.fixture(autouse=True)
def _private_cache_for_tmp_data(request, monkeypatch):
    """A test that makes its own files in ``tmp_path`` keeps mlkit's cache of
    resized images there too, so that fake subsets never reach the reader's
    cache (``mlkit.data.cache_root``); the others share the real one."""
    if "tmp_path" in request.fixturenames:
        tmp_path = request.getfixturevalue("tmp_path")
        monkeypatch.setenv("MLKIT_CACHE", str(tmp_path / "mlkit-cache"))
