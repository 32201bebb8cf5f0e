"""Grade a class: execute each submission in a fresh kernel, score it with the
hidden tests.

    python tools/grade.py DIR [--tests instructor/tests] [--out grades.csv]
                              [--timeout 300] [--jobs N]
    make grade DIR=submissions [OUT=grades.csv]

Layout of DIR: one sub-folder per student holding that student's notebooks
(``DIR/alice/03_maml.ipynb``); a DIR that holds notebooks directly counts as
one student. A file renamed by a learning-management system
(``03_maml (1).ipynb``, ``alice_03_maml.ipynb``) is matched to its chapter and
the match is noted.

For every chapter that has hidden tests (``instructor/tests/NN_name.py``, see
``tools/grading.py``) and every student:

1. the student's folder is copied to a temporary folder (the submission is
   never modified);
2. the notebook runs there in a fresh kernel, every cell, errors allowed, in a
   worker process with its own process group; past ``--timeout`` seconds of
   wall-clock time the worker and the kernel's process group are killed
   (SIGKILL: a cell that catches ``KeyboardInterrupt`` or ignores SIGINT cannot
   stop it) and the note says "timed out after N s";
3. after the student's cells, the grader appends one cell that evaluates the
   hidden tests' expressions (the student's variables, or the student's
   functions called on inputs the tests draw from a fresh random seed) and
   writes them as JSON to a file named with a fresh random token, outside the
   copy;
4. the hidden tests, imported by this process before any submission ran, score
   those values against references they compute themselves.
   ``mlkit.exercises.check`` (the readers' self-check) plays no part:
   overriding it, writing a log or deleting cells earns nothing.

Students are graded in parallel (``--jobs``, default: the number of cores).
Each finished student is written at once as a CSV row (a column per exercise
with its points, then total, maximum, seconds and a note) and a line on the
terminal; the whole table is printed at the end. One broken submission (not a
notebook, truncated, raising, hanging) never stops the others.

Student code runs with the rights of the person grading (as with nbgrader or
otter-grader without containers): grade an untrusted class inside a container
or virtual machine.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))

import grading  # noqa: E402  (tools/ is on the path only now)

DEFAULT_TESTS = TOOLS.parent / "instructor" / "tests"


# --- hidden tests ------------------------------------------------------------


@dataclass
class Chapter:
    """The hidden tests of one chapter notebook."""

    stem: str
    kernel: str
    exercises: list[grading.Exercise]
    namespace: dict[str, Any]


def load_tests(folder: Path) -> dict[str, Chapter]:
    """Import every ``folder/NN_name.py`` (in this process, now: before any
    submission runs, so that the hidden tests and the mlkit modules they import
    at their top are the grader's copies as they were at the start)."""
    if not folder.is_dir():
        raise ValueError(
            "--tests must be a folder of hidden tests (instructor/tests), "
            f"got {folder}"
        )
    chapters: dict[str, Chapter] = {}
    # for the tests' shared helpers (_common.py)
    if str(folder.resolve()) not in sys.path:
        sys.path.insert(0, str(folder.resolve()))
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location(
            f"_hidden_{path.stem}", path
        )
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        kernel = getattr(mod, "KERNEL", "")
        exercises = list(getattr(mod, "EXERCISES", []))
        if not exercises:
            continue
        namespace: dict[str, Any] = {}
        exec(compile(kernel, f"{path.name}:KERNEL", "exec"), namespace)
        chapters[path.stem] = Chapter(path.stem, kernel, exercises, namespace)
    if not chapters:
        raise ValueError(
            "--tests must hold hidden tests (NN_name.py with EXERCISES); "
            f"{folder} has none"
        )
    return chapters


# --- submissions -------------------------------------------------------------


def students_in(folder: Path) -> dict[str, list[Path]]:
    """Map student name -> notebooks (see the module docstring for the
    layout)."""
    if not folder.is_dir():
        raise ValueError(f"DIR must be a folder of submissions, got {folder}")
    direct = sorted(folder.glob("*.ipynb"))
    if direct:
        return {folder.resolve().name: direct}
    out = {
        d.name: sorted(d.rglob("*.ipynb"))
        for d in sorted(folder.iterdir())
        if d.is_dir()
    }
    out = {
        k: [p for p in v if ".ipynb_checkpoints" not in p.parts]
        for k, v in out.items()
    }
    out = {k: v for k, v in out.items() if v}
    if not out:
        raise ValueError(
            "DIR must hold notebooks or one folder of notebooks per student; "
            f"{folder} has none"
        )
    return out


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def match_files(
    files: list[Path], stems: list[str]
) -> tuple[dict[str, Path], list[str]]:
    """Match submitted files to chapters: the exact name, else a name that
    contains the chapter's name (``03_maml (1).ipynb``,
    ``alice_03_maml.ipynb``), else one that contains the chapter's name without
    its number (``maml.ipynb``) when only one chapter fits. Returns
    {stem: file} and notes on renamed or duplicate files."""
    found: dict[str, list[Path]] = {s: [] for s in stems}
    for path in files:
        name = _norm(path.stem)
        hits = [s for s in stems if _norm(s) in name]
        if not hits:
            hits = [s for s in stems if _norm(s.split("_", 1)[-1]) in name]
            if len(hits) != 1:
                hits = []
        for s in hits[:1]:
            found[s].append(path)
    chosen: dict[str, Path] = {}
    notes: list[str] = []
    for stem, paths in found.items():
        if not paths:
            continue
        exact = [p for p in paths if p.name == f"{stem}.ipynb"]
        pick = (
            exact[0]
            if exact
            else max(paths, key=lambda p: (p.stat().st_mtime, p.name))
        )
        chosen[stem] = pick
        if not exact:
            notes.append(f"renamed file {pick.name!r} matched to {stem}")
        if len(paths) > 1:
            notes.append(
                f"{len(paths)} files for {stem}, graded {pick.name!r}"
            )
    return chosen, notes


def read_notebook(path: Path):
    """The notebook at ``path`` (nbformat 4), or a note saying why it is not
    one."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None, f"{path.name}: not a notebook (unreadable)"
    try:
        json.loads(text)
    except ValueError:
        return None, f"{path.name}: not a notebook (truncated or not JSON)"
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception:  # noqa: BLE001
        # any schema or conversion failure means the same
        return None, f"{path.name}: not a notebook (JSON, but not a notebook)"
    return nb, ""


# --- executing one notebook (worker process) ---------------------------------


def _worker(nb_path: str, cwd: str, pidfile: str, summary: str) -> int:
    """Run by ``grade.py --_execute``: execute every cell of ``nb_path`` in a
    fresh kernel started in ``cwd``; write the kernel's pid to ``pidfile`` and
    a summary to ``summary``.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(nb_path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=None,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": cwd}},
    )
    status = "ok"
    with client.setup_kernel():
        pid = getattr(client.km.provisioner, "pid", None)
        Path(pidfile).write_text(str(pid or ""), encoding="utf-8")
        try:
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
        except Exception as e:  # noqa: BLE001
            # a dead kernel ends this notebook, not the class
            status = f"execution stopped: {type(e).__name__}"
    errors = [
        o
        for c in nb.cells[:-1]
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    first = (
        f"{errors[0].ename}: {str(errors[0].evalue)[:80]}" if errors else ""
    )
    Path(summary).write_text(
        json.dumps({"status": status, "errors": len(errors), "first": first}),
        encoding="utf-8",
    )
    return 0


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        pass


@dataclass
class Run:
    values: dict[str, grading.Value] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_notebook(
    nb, chapter: Chapter, folder: Path, timeout: float, seed: int
) -> Run:
    """Execute ``nb`` (cells of a submission) with the collect cell appended,
    in a temporary copy of ``folder``, killing everything after ``timeout``
    seconds."""
    import nbformat

    if timeout <= 0:
        raise ValueError(
            f"timeout must be a positive number of seconds, got {timeout}"
        )
    run = Run()
    with (
        tempfile.TemporaryDirectory(prefix="grade-") as private,
        tempfile.TemporaryDirectory(prefix="submission-") as work,
    ):
        copy = Path(work) / "copy"
        shutil.copytree(
            folder,
            copy,
            symlinks=True,
            ignore=shutil.ignore_patterns(".ipynb_checkpoints"),
        )
        token = secrets.token_hex(16)
        values_path = Path(private) / f"values-{token}.json"
        nb = nbformat.from_dict(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nb.cells.append(
            nbformat.v4.new_code_cell(
                grading.collect_cell(
                    chapter.exercises, chapter.kernel, seed, str(values_path)
                )
            )
        )
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        nb_path = Path(private) / f"{chapter.stem}.ipynb"
        nbformat.write(nb, nb_path)
        pidfile, summary = (
            Path(private) / "kernel.pid",
            Path(private) / "summary.json",
        )
        env = dict(
            os.environ,
            MLKIT_NO_LIVE_WIDGETS="1",
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            PYDEVD_DISABLE_FILE_VALIDATION="1",
        )
        env.pop("MLKIT_EXERCISE_LOG", None)
        start = time.monotonic()
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--_execute",
                str(nb_path),
                str(copy),
                str(pidfile),
                str(summary),
            ],
            cwd=str(copy),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kernel_pid = (
                pidfile.read_text().strip() if pidfile.exists() else ""
            )
            if kernel_pid.isdigit():
                # the kernel runs in a session of its own
                _kill_group(int(kernel_pid))
            _kill_group(proc.pid)
            if proc.poll() is None:
                proc.kill()
            if timed_out:
                _, err = proc.communicate()
        run.seconds = time.monotonic() - start
        if timed_out:
            run.notes.append(f"{chapter.stem}: timed out after {timeout:g} s")
            return run
        if summary.exists():
            info = json.loads(summary.read_text(encoding="utf-8"))
            if info["status"] != "ok":
                run.notes.append(f"{chapter.stem}: {info['status']}")
            if info["errors"]:
                run.notes.append(
                    f"{chapter.stem}: {info['errors']} cell(s) raised, first "
                    f"{info['first']}"
                )
        else:
            tail = (
                (err or b"")
                .decode("utf-8", "replace")
                .strip()
                .splitlines()[-1:]
            )
            run.notes.append(
                f"{chapter.stem}: could not run ({' '.join(tail)[:120]})"
            )
        run.values = grading.read_values(str(values_path))
    return run


# --- scoring -----------------------------------------------------------------

# Hidden tests may seed global generators (torch.manual_seed) to rebuild their
# inputs: one chapter is scored at a time, so that students graded in parallel
# threads cannot interleave.
_SCORE_LOCK = threading.Lock()


def score_chapter(
    chapter: Chapter, values: dict[str, grading.Value], seed: int
) -> tuple[dict[str, float], list[str]]:
    """Points per exercise of ``chapter`` from the collected values (0 when
    none)."""
    with _SCORE_LOCK:
        return _score_chapter(chapter, values, seed)


def _score_chapter(
    chapter: Chapter, values: dict[str, grading.Value], seed: int
) -> tuple[dict[str, float], list[str]]:
    points: dict[str, float] = {}
    notes: list[str] = []
    for ex in chapter.exercises:
        if not values:
            points[ex.exercise] = 0.0
            continue
        try:
            got, note = ex.score(values, seed, chapter.namespace)
            got = min(max(float(got), 0.0), ex.points)
        except Exception as e:  # noqa: BLE001
            # a test that cannot read the value gives 0
            got, note = 0.0, f"the test raised {type(e).__name__}"
        points[ex.exercise] = got
        if got < ex.points and note:
            notes.append(f"{ex.exercise}: {note}")
    return points, notes


@dataclass
class Row:
    student: str
    points: dict[str, float]
    seconds: float
    notes: list[str]


def grade_student(
    name: str, files: list[Path], chapters: dict[str, Chapter], timeout: float
) -> Row:
    """Every chapter of one student; never raises (a failure becomes a
    note)."""
    points: dict[str, float] = {}
    notes: list[str] = []
    seconds = 0.0
    try:
        matched, notes = match_files(files, list(chapters))
        for stem, chapter in chapters.items():
            for ex in chapter.exercises:
                points[ex.exercise] = 0.0
            if stem not in matched:
                notes.append(f"missing {stem}")
                continue
            nb, why = read_notebook(matched[stem])
            if nb is None:
                notes.append(why)
                continue
            seed = secrets.randbelow(2**31 - 1)
            run = run_notebook(
                nb, chapter, matched[stem].parent, timeout, seed
            )
            seconds += run.seconds
            notes += run.notes
            got, score_notes = score_chapter(chapter, run.values, seed)
            points.update(got)
            if run.values:
                notes += score_notes
            elif not any("timed out" in n for n in run.notes):
                notes.append(f"{stem}: the grader's cell wrote no values")
    except Exception as e:  # noqa: BLE001
        # one student's failure must not stop the class
        notes.append(f"grader error: {type(e).__name__}: {str(e)[:120]}")
    return Row(name, points, seconds, notes)


def _fmt(x: float) -> str:
    return f"{x:g}"


def columns_of(chapters: dict[str, Chapter]) -> list[str]:
    return [ex.exercise for ch in chapters.values() for ex in ch.exercises]


def csv_header(columns: list[str]) -> list[str]:
    return ["student"] + columns + ["total", "max", "seconds", "note"]


def csv_row(row: Row, columns: list[str], maximum: float) -> list[str]:
    total = sum(row.points.get(c, 0.0) for c in columns)
    return (
        [row.student]
        + [_fmt(row.points.get(c, 0.0)) for c in columns]
        + [
            _fmt(total),
            _fmt(maximum),
            f"{row.seconds:.1f}",
            "; ".join(row.notes),
        ]
    )


def format_table(columns: list[str], rows: list[Row], maximum: float) -> str:
    """A plain-text table: one row per student, one column per exercise, total,
    time."""
    header = (
        ["student"] + [c.removeprefix("ex-") for c in columns] + ["total", "s"]
    )
    body = []
    for r in sorted(rows, key=lambda r: r.student):
        total = sum(r.points.get(c, 0.0) for c in columns)
        body.append(
            [r.student]
            + [_fmt(r.points.get(c, 0.0)) for c in columns]
            + [f"{_fmt(total)}/{_fmt(maximum)}", f"{r.seconds:.0f}"]
        )
    widths = [
        max(len(x[i]) for x in [header] + body) for i in range(len(header))
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(x, widths)) for x in body]
    for r in sorted(rows, key=lambda r: r.student):
        for n in r.notes:
            lines.append(f"note: {r.student}: {n}")
    return "\n".join(lines)


def grade(
    folder: Path,
    tests: Path,
    out: Path | None,
    timeout: float,
    jobs: int | None = None,
    echo: bool = True,
) -> tuple[list[Row], list[str], float]:
    """Grade every student of ``folder``; write CSV rows to ``out`` as students
    finish.

    Returns the rows (in the order they finished), the exercise columns and the
    maximum.
    """
    if timeout <= 0:
        raise ValueError(
            f"timeout must be a positive number of seconds, got {timeout}"
        )
    chapters = load_tests(tests)
    students = students_in(folder)
    columns = columns_of(chapters)
    maximum = sum(ex.points for ch in chapters.values() for ex in ch.exercises)
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(students)))
    lock = threading.Lock()
    rows: list[Row] = []
    handle = open(out, "w", newline="", encoding="utf-8") if out else None
    try:
        writer = csv.writer(handle) if handle else None
        if writer:
            writer.writerow(csv_header(columns))
            handle.flush()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {
                pool.submit(
                    grade_student, name, files, chapters, timeout
                ): name
                for name, files in students.items()
            }
            for fut in as_completed(futures):
                row = fut.result()
                with lock:
                    rows.append(row)
                    if writer:
                        writer.writerow(csv_row(row, columns, maximum))
                        handle.flush()
                    if echo:
                        total = sum(row.points.values())
                        print(
                            f"graded {row.student}: "
                            f"{_fmt(total)}/{_fmt(maximum)} in "
                            f"{row.seconds:.0f} s"
                            + (
                                f" ({'; '.join(row.notes)})"
                                if row.notes
                                else ""
                            ),
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        if handle:
            handle.close()
    return rows, columns, maximum


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_execute"]:
        return _worker(*argv[1:5])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "dir", type=Path, help="folder of submissions (one folder per student)"
    )
    ap.add_argument(
        "--tests",
        type=Path,
        default=DEFAULT_TESTS,
        help="the hidden tests, one NN_name.py per chapter "
        "(default: instructor/tests)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("grades.csv"),
        help="CSV file written row by row (default: grades.csv)",
    )
    ap.add_argument(
        "--timeout",
        type=float,
        default=300,
        help="wall-clock seconds per notebook before its kernel is killed",
    )
    ap.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="students graded at once (default: the number of cores)",
    )
    args = ap.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        print(
            f"--jobs must be a positive number of students, got {args.jobs}",
            file=sys.stderr,
        )
        return 2
    try:
        rows, columns, maximum = grade(
            args.dir, args.tests, args.out, args.timeout, args.jobs
        )
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    print(format_table(columns, rows, maximum))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
