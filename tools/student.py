"""Write the student edition of every chapter notebook: solutions removed,
outputs cleared.

    python tools/student.py [SRC] [OUT]
        (defaults: chapters  _build/student)
    make student [OUT=folder]

For each ``SRC/*.ipynb``:
- in any code cell, the lines between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` (nbgrader's markers) are replaced by a stub: inside a
  function (an indented marker),
  ``raise NotImplementedError("your code here")``; at the top level,
  ``# your code here`` and ``name = ...`` for every name the solution assigned,
  so that the check cell after it runs (and reports "no answer yet") in the
  student edition;
- any other code cell tagged ``solution`` keeps its tags but its code becomes
  ``# your code here``;
- in markdown cells, each ``{solution}`` directive block (the worked answer
  shown behind a toggle on the site) is removed;
- a gated solution (sphinx-exercise's ``{solution-start}`` ...
  ``{solution-end}``, which may span cells) is removed: its markdown text goes,
  and every code cell inside it is emptied as if it were tagged ``solution``;
- every output and execution count is cleared, so no result of a solution shows
  (students run the notebook themselves), and stored widget state is dropped.
Non-notebook pages (the .md chapters) have no code and are not copied.

A student's work is never overwritten: a notebook already in OUT that differs
from the fresh edition (edited, or merely run) is kept, the fresh one is not
written, and the command says so and exits with status 1 (write a new edition
elsewhere with ``make student OUT=...``).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

PLACEHOLDER = "# your code here"
SOLUTION_TAG = "solution"

# A MyST {solution} directive: an opening fence of 3+ backticks or colons
# followed by {solution}, up to the matching closing fence (same character, at
# least as long).
_SOLUTION_BLOCK = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{solution\}[^\n]*\n"
    r".*?^(?P=fence)[`:]*[ \t]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)


_GATE_START = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{solution-start\}[^\n]*\n"
    r".*?^(?P=fence)[`:]*[ \t]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)
_GATE_END = re.compile(
    r"^(?P<fence>`{3,}|:{3,})\{solution-end\}[^\n]*\n"
    r".*?^(?P=fence)[`:]*[ \t]*(?:\n|\Z)",
    re.MULTILINE | re.DOTALL,
)


def strip_solution_blocks(markdown: str) -> str:
    """``markdown`` without its ``{solution}`` directive blocks."""
    return _SOLUTION_BLOCK.sub("", markdown)


def strip_gated(markdown: str, in_gate: bool) -> tuple[str, bool]:
    """Remove gated-solution text from one markdown cell.

    ``in_gate`` says whether the cell starts inside a ``{solution-start}`` ...
    ``{solution-end}`` region; returns the kept text and whether the cell ends
    inside one.
    """
    kept, pos = [], 0
    while True:
        if not in_gate:
            m = _GATE_START.search(markdown, pos)
            if m is None:
                kept.append(markdown[pos:])
                break
            kept.append(markdown[pos : m.start()])
            pos, in_gate = m.end(), True
        else:
            m = _GATE_END.search(markdown, pos)
            if m is None:
                break  # the rest of this cell belongs to the solution
            pos, in_gate = m.end(), False
    return "".join(kept), in_gate


_BEGIN = re.compile(
    r"^(?P<indent>[ \t]*)### BEGIN SOLUTION[ \t]*$", re.MULTILINE
)
_END = re.compile(r"^[ \t]*### END SOLUTION[ \t]*\n?", re.MULTILINE)
_ASSIGNED = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*=[^=]",
    re.MULTILINE,
)


def has_markers(source: str) -> bool:
    """Whether ``source`` holds a ``### BEGIN SOLUTION`` marker."""
    return _BEGIN.search(source) is not None


def _stub(indent: str, region: str) -> str:
    if indent:
        return (
            f"{indent}# your code here\n"
            f'{indent}raise NotImplementedError("your code here")\n'
        )
    names: list[str] = []
    for m in _ASSIGNED.finditer(region):
        for name in m.group(1).split(","):
            if name.strip() not in names:
                names.append(name.strip())
    return "# your code here\n" + "".join(f"{n} = ...\n" for n in names)


def strip_marked(source: str) -> str:
    """``source`` with every ``### BEGIN SOLUTION`` ... ``### END SOLUTION``
    region stubbed (an unterminated region runs to the end of the cell)."""
    out, pos = [], 0
    while True:
        m = _BEGIN.search(source, pos)
        if m is None:
            out.append(source[pos:])
            break
        out.append(source[pos : m.start()])
        e = _END.search(source, m.end())
        region = source[m.end() : e.start() if e else len(source)]
        out.append(_stub(m.group("indent"), region))
        pos = e.end() if e else len(source)
    return "".join(out).rstrip("\n")


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return SOLUTION_TAG in cell.get("metadata", {}).get("tags", [])


def student_edition(
    nb: nbformat.NotebookNode, *, keep_outputs: bool = False
) -> tuple[nbformat.NotebookNode, int]:
    """Return the student edition of ``nb`` (a copy) and how many solution
    cells it emptied.

    ``keep_outputs=True`` (the student site) keeps the stored outputs of the
    cells that are not solutions, so that the pages keep the chapter's figures
    and tables; the outputs of solution cells always go.
    """
    nb = nbformat.from_dict(nb)  # deep copy
    emptied = 0
    in_gate = False
    for cell in nb.cells:
        if cell.cell_type == "code":
            solution = has_markers(cell.source) or is_solution(cell) or in_gate
            if has_markers(cell.source):
                cell.source = strip_marked(cell.source)
                emptied += 1
            elif is_solution(cell) or in_gate:
                cell.source = PLACEHOLDER
                emptied += 1
            if solution or not keep_outputs:
                cell.outputs = []
                cell.execution_count = None
        elif cell.cell_type == "markdown":
            text, in_gate = strip_gated(cell.source, in_gate)
            cell.source = strip_solution_blocks(text)
    if not keep_outputs:
        nb.metadata.pop("widgets", None)
    return nb, emptied


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "src",
        nargs="?",
        default="chapters",
        help="folder of chapter notebooks",
    )
    ap.add_argument(
        "out",
        nargs="?",
        default="_build/student",
        help="where to write the edition",
    )
    args = ap.parse_args(argv)
    src, out = Path(args.src), Path(args.out)
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        print(
            f"src must hold .ipynb notebooks; none in {src}", file=sys.stderr
        )
        return 2
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for path in notebooks:
        nb, emptied = student_edition(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        text = nbformat.writes(nb) + "\n"
        target = out / path.name
        if target.exists() and target.read_text(encoding="utf-8") != text:
            kept.append(target)
            print(
                f"{target}: kept (it differs from a fresh edition: "
                f"a student's work is never overwritten)"
            )
            continue
        target.write_text(text, encoding="utf-8")
        print(f"{target}: {emptied} solution cell(s) emptied")
    if kept:
        print(
            f"{len(kept)} notebook(s) in {out} were kept as they are; "
            f"for a fresh edition choose another folder: "
            f"make student OUT=other-folder",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
