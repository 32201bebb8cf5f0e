"""Write the student edition of every chapter notebook: solutions removed, outputs cleared.

    python tools/student.py [SRC] [OUT]        (defaults: chapters  _build/student)
    make student

For each ``SRC/*.ipynb``:
- a code cell tagged ``solution`` keeps its tags but its code becomes ``# your code here``;
- in markdown cells, each ``{solution}`` directive block (the worked answer shown behind a
  toggle on the site) is removed;
- a gated solution (sphinx-exercise's ``{solution-start}`` ... ``{solution-end}``, which may
  span cells) is removed: its markdown text goes, and every code cell inside it is emptied as
  if it were tagged ``solution``;
- every output and execution count is cleared, so no result of a solution shows (students run
  the notebook themselves), and stored widget state is dropped.
Non-notebook pages (the .md chapters) have no code and are not copied.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

PLACEHOLDER = "# your code here"
SOLUTION_TAG = "solution"

# A MyST {solution} directive: an opening fence of 3+ backticks or colons followed by
# {solution}, up to the matching closing fence (same character, at least as long).
_SOLUTION_BLOCK = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{solution\}[^\n]*\n.*?^(?P=fence)[`:]*[ \t]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)


_GATE_START = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{solution-start\}[^\n]*\n.*?^(?P=fence)[`:]*[ \t]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)
_GATE_END = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{solution-end\}[^\n]*\n.*?^(?P=fence)[`:]*[ \t]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)


def strip_solution_blocks(markdown: str) -> str:
    """``markdown`` without its ``{solution}`` directive blocks."""
    return _SOLUTION_BLOCK.sub("", markdown)


def strip_gated(markdown: str, in_gate: bool) -> tuple[str, bool]:
    """Remove gated-solution text from one markdown cell.

    ``in_gate`` says whether the cell starts inside a ``{solution-start}`` ... ``{solution-end}``
    region; returns the kept text and whether the cell ends inside one.
    """
    kept, pos = [], 0
    while True:
        if not in_gate:
            m = _GATE_START.search(markdown, pos)
            if m is None:
                kept.append(markdown[pos:])
                break
            kept.append(markdown[pos:m.start()])
            pos, in_gate = m.end(), True
        else:
            m = _GATE_END.search(markdown, pos)
            if m is None:
                break  # the rest of this cell belongs to the solution
            pos, in_gate = m.end(), False
    return "".join(kept), in_gate


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def student_edition(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, int]:
    """Return the student edition of ``nb`` (a copy) and how many solution cells it emptied."""
    nb = nbformat.from_dict(nb)  # deep copy
    emptied = 0
    in_gate = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            if is_solution(cell) or in_gate:
                cell.source = PLACEHOLDER
                emptied += 1
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            text, in_gate = strip_gated(cell.source, in_gate)
            cell.source = strip_solution_blocks(text)
    nb.metadata.pop("widgets", None)
    return nb, emptied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", nargs="?", default="chapters", help="folder of chapter notebooks")
    ap.add_argument("out", nargs="?", default="_build/student", help="where to write the edition")
    args = ap.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        print(f"src must hold .ipynb notebooks; none in {src}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for path in notebooks:
        nb, emptied = student_edition(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, out / path.name)
        print(f"{out / path.name}: {emptied} solution cell(s) emptied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
