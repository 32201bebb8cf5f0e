"""The repository's code lines fit the page (79 characters).

The developers' guide asks for lines of at most 79 characters (PEP 8's
length, the width of the book's code boxes), so that a reader who opens a
module, in the repository or through a chapter's link to it, sees whole lines.
``tests/test_chapter_width.py`` checks the chapters; this test checks every
``.py`` file under ``mlkit/``, ``benchmarks/``, ``tools/`` and ``tests/``,
comments and docstrings included. The grading fixtures are left out: they
copy files that ``make instructor`` generates.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 79
SHOWN = 20  # offenders listed in the failure message

FOLDERS = ("mlkit", "benchmarks", "tools", "tests")
LEFT_OUT = ("tests/fixtures/",)

# Files not formatted yet (paths relative to the repository root); each is
# checked again once it leaves this set.
NOT_YET: set[str] = set()


def package_files() -> list[Path]:
    """Every ``.py`` file under :data:`FOLDERS`, except those under
    :data:`LEFT_OUT` and in :data:`NOT_YET`."""
    files = sorted(f for d in FOLDERS for f in (ROOT / d).rglob("*.py"))
    return [
        f
        for f in files
        if (rel := f.relative_to(ROOT).as_posix()) not in NOT_YET
        and not rel.startswith(LEFT_OUT)
    ]


def wide_lines(path: Path) -> list[tuple[int, int]]:
    """``(line number, length)`` of each line of ``path`` wider than WIDTH."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        (number, len(line))
        for number, line in enumerate(lines, start=1)
        if len(line) > WIDTH
    ]


def test_package_files_found():
    # A wrong root or glob would make the width test pass on nothing.
    found = {f.relative_to(ROOT).parts[0] for f in package_files()}
    assert found == set(FOLDERS)
    assert any(f.name == "maml.py" for f in package_files())


def test_code_lines_fit_the_page():
    offenders = [
        f"{path.relative_to(ROOT).as_posix()}:{number} ({length})"
        for path in package_files()
        for number, length in wide_lines(path)
    ]
    assert not offenders, (
        f"{len(offenders)} code lines are longer than {WIDTH} "
        f"characters (first {min(SHOWN, len(offenders))}):\n"
        + "\n".join(offenders[:SHOWN])
    )
