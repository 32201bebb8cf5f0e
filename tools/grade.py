"""Execute a folder of submitted notebooks and print a score table, exercise by exercise.

    python tools/grade.py DIR [--ref chapters] [--timeout 900] [--csv scores.csv]
    make grade DIR=submissions

Layout of DIR: one sub-folder per student holding that student's notebooks
(``DIR/alice/03_maml.ipynb``); a DIR that holds notebooks directly counts as one student.

Each notebook runs in a fresh kernel with a finite per-cell timeout (a cell that runs past it
is interrupted and execution goes on with the next cell), errors allowed (a broken cell costs
only the checks that depend on it). ``mlkit.exercises.check`` appends every result to a log
named by ``MLKIT_EXERCISE_LOG``, so scoring does not trust printed text. The exercises a
notebook is marked on are the ``check("ex-...")`` calls in the reference notebook of the same
name in ``--ref`` (the book's chapters), so deleting a check call does not hide a missing
answer, plus any further check calls the submission contains. An exercise scores 1 when the
last check of it passed, else 0.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

LOG_ENV = "MLKIT_EXERCISE_LOG"  # same name as mlkit.exercises.LOG_ENV (kept import-free)
_CHECK_CALL = re.compile(r"""\bcheck\(\s*(['"])(ex-[A-Za-z0-9_.-]+)\1""")


def exercises_in(nb: nbformat.NotebookNode) -> list[str]:
    """Exercise ids of the ``check("ex-...")`` calls in the notebook's code cells, in order."""
    found: list[str] = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for m in _CHECK_CALL.finditer(cell.source):
                if m.group(2) not in found:
                    found.append(m.group(2))
    return found


def students_in(folder: Path) -> dict[str, list[Path]]:
    """Map student name -> notebooks (see the module docstring for the layout)."""
    if not folder.is_dir():
        raise ValueError(f"DIR must be a folder of submissions, got {folder}")
    direct = sorted(folder.glob("*.ipynb"))
    if direct:
        return {folder.resolve().name: direct}
    out = {d.name: sorted(d.glob("*.ipynb")) for d in sorted(folder.iterdir()) if d.is_dir()}
    out = {k: v for k, v in out.items() if v}
    if not out:
        raise ValueError(f"DIR must hold notebooks or one folder of notebooks per student; {folder} has none")
    return out


def run_notebook(path: Path, timeout: int) -> tuple[dict[str, bool], list[str]]:
    """Execute ``path`` (not modified on disk); return {exercise: passed (last call)} and notes."""
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    nb = nbformat.read(path, as_version=4)
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "checks.jsonl"
        old = {k: os.environ.get(k) for k in (LOG_ENV, "MLKIT_NO_LIVE_WIDGETS")}
        os.environ[LOG_ENV] = str(log)
        # Grading needs no live widgets; leaving them out also avoids nbclient's rare stall
        # on widget cells (it would cost a full timeout).
        os.environ["MLKIT_NO_LIVE_WIDGETS"] = "1"
        try:
            client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                    interrupt_on_timeout=True,
                                    resources={"metadata": {"path": str(path.parent)}})
            client.execute()
        except (CellTimeoutError, DeadKernelError, RuntimeError) as e:
            notes.append(f"{path.name}: execution stopped: {type(e).__name__}: {str(e)[:200]}")
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                  if o.output_type == "error"]
        if errors:
            notes.append(f"{path.name}: {len(errors)} cell(s) raised, first: "
                         f"{errors[0].ename}: {errors[0].evalue[:120]}")
        results: dict[str, bool] = {}
        if log.exists():
            for line in log.read_text(encoding="utf-8").splitlines():
                rec = json.loads(line)
                results[rec["exercise"]] = bool(rec["passed"])
    return results, notes


def grade(folder: Path, ref: Path | None, timeout: int) -> tuple[list[str], dict[str, dict[str, int]], list[str]]:
    """Score every student's notebooks: (exercise columns, {student: {exercise: 0/1}}, notes)."""
    columns: list[str] = []
    table: dict[str, dict[str, int]] = {}
    notes: list[str] = []
    for student, notebooks in students_in(folder).items():
        row: dict[str, int] = {}
        for path in notebooks:
            reference = ref / path.name if ref is not None else None
            expected = []
            if reference is not None and reference.is_file():
                expected = exercises_in(nbformat.read(reference, as_version=4))
            expected += [e for e in exercises_in(nbformat.read(path, as_version=4)) if e not in expected]
            if not expected:
                continue
            print(f"running {student}/{path.name} ({len(expected)} checks) ...", file=sys.stderr, flush=True)
            results, nb_notes = run_notebook(path, timeout)
            notes += [f"{student}: {n}" for n in nb_notes]
            for ex in expected:
                row[ex] = int(results.get(ex, False))
                if ex not in columns:
                    columns.append(ex)
        table[student] = row
    return columns, table, notes


def format_table(columns: list[str], table: dict[str, dict[str, int]]) -> str:
    """A plain-text table: one row per student, one column per exercise, then the total."""
    header = ["student"] + columns + ["total"]
    rows = []
    for student, row in table.items():
        got = sum(row.get(c, 0) for c in columns)
        rows.append([student] + [str(row[c]) if c in row else "-" for c in columns]
                    + [f"{got}/{len(columns)}"])
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="folder of submissions")
    ap.add_argument("--ref", type=Path, default=Path("chapters"),
                    help="reference notebooks naming the checks (default: chapters)")
    ap.add_argument("--timeout", type=int, default=900, help="per-cell timeout in seconds")
    ap.add_argument("--csv", type=Path, default=None, help="also write the table as CSV")
    args = ap.parse_args(argv)
    try:
        columns, table, notes = grade(args.dir, args.ref if args.ref.is_dir() else None, args.timeout)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    if not columns:
        print(f"no exercise checks found in the notebooks of {args.dir}", file=sys.stderr)
        return 2
    print(format_table(columns, table))
    for n in notes:
        print("note:", n)
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["student"] + columns + ["total"])
            for student, row in table.items():
                w.writerow([student] + [row.get(c, "") for c in columns] + [sum(row.values())])
    return 0


if __name__ == "__main__":
    sys.exit(main())
