"""The two requirement sets agree: `make book` installs
requirements-book.txt (the site's build packages, no torch) and `make test`
requirements.txt (everything), into one environment, so a package pinned in
both must have one version."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        package, sep, version = line.partition("==")
        assert sep, f"{name}: {line!r} is not pinned with =="
        pins[package.lower().replace("_", "-")] = version
    return pins


def test_book_pins_are_the_full_sets_pins() -> None:
    book, full = _pins("requirements-book.txt"), _pins("requirements.txt")
    assert "jupyter-book" in book and "sphinx" in book
    differ = {p: (v, full.get(p)) for p, v in book.items() if full.get(p) != v}
    assert (
        not differ
    ), f"book pin != full pin (or missing from requirements.txt): {differ}"


def test_book_build_needs_no_heavy_packages() -> None:
    book = _pins("requirements-book.txt")
    for heavy in (
        "torch",
        "scipy",
        "pandas",
        "playwright",
        "scikit-learn",
        "captum",
    ):
        assert heavy not in book, heavy


def test_python_requirement_matches_the_pins() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert 'requires-python = ">=3.11"' in text
