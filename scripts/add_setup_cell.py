"""Put the setup cell (scripts/nb.py's ``setup_cell()``) first in the chapters.

The generators start every notebook with it; this brings the stored, executed
chapters in line without re-executing them. The cell prints nothing where
mlkit is installed, so it is stored without outputs, which strict nbval
accepts. Every other cell is left as it was, and the file is written the way
nbformat writes it (as the chapters already are). Running it again changes
nothing; a cell with the setup id is replaced by the current version.

    .venv/bin/python scripts/add_setup_cell.py           # chapters/0*.ipynb
    .venv/bin/python scripts/add_setup_cell.py PATH ...  # the given notebooks
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb import SETUP_ID, setup_cell  # noqa: E402

CHAPTERS = Path(__file__).resolve().parent.parent / "chapters"


def add_setup_cell(path: Path) -> bool:
    """Put the current setup cell first in ``path``; True if it changed."""
    before = path.read_text(encoding="utf-8")
    nb = nbformat.reads(before, as_version=4)
    rest = [c for c in nb.cells if c.get("id") != SETUP_ID]
    nb.cells = [setup_cell(), *rest]
    nbformat.validate(nb)
    after = nbformat.writes(nb) + "\n"  # as nbformat.write lays a file out
    if after == before:
        return False
    path.write_text(after, encoding="utf-8")
    return True


def main(argv: list[str]) -> int:
    paths = [Path(a) for a in argv] or sorted(CHAPTERS.glob("0*.ipynb"))
    for path in paths:
        changed = add_setup_cell(path)
        state = "setup cell written" if changed else "already current"
        print(f"{path}: {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
