"""Tests of the grader (tools/grade.py, tools/grading.py) on the fixture class.

The fixture class (tests/fixtures/grading/make_class.py) holds one small
chapter with two exercises and one submission of every kind an instructor
meets: correct, the untouched student edition, one that raises, one that loops
and ignores interrupts, four forgeries, a truncated file, JSON that is not a
notebook, a renamed file and a missing one. Grading it runs about ten small
kernels in parallel (well under a minute).
"""

import csv
import importlib.util
import shutil
import sys
import threading
import tomllib
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "grading"
HIDDEN = FIXTURE / "instructor" / "tests"


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


grade = _load("grade", ROOT / "tools" / "grade.py")
grading = sys.modules["grading"]
make_class = _load("make_class", FIXTURE / "make_class.py")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade the fixture class once: (rows by student, CSV rows by student,
    CSV header)."""
    out = tmp_path_factory.mktemp("fixture")
    cls = make_class.write_class(out)
    # the looping student runs beside the class with a short limit, so that
    # the test does not wait a full minute for it
    loops = out / "loops-only"
    loops.mkdir()
    shutil.move(str(cls / "loops"), str(loops / "loops"))
    slow: dict = {}
    chapters = grade.load_tests(HIDDEN)
    thread = threading.Thread(
        target=lambda: slow.update(
            row=grade.grade_student(
                "loops",
                sorted((loops / "loops").glob("*.ipynb")),
                chapters,
                make_class.TIMEOUT,
            )
        )
    )
    thread.start()
    csv_path = out / "grades.csv"
    rows, columns, maximum = grade.grade(
        cls, HIDDEN, csv_path, timeout=60, jobs=4, echo=False
    )
    thread.join()
    rows.append(slow["row"])
    with open(csv_path, newline="", encoding="utf-8") as f:
        table = list(csv.reader(f))
    return (
        {r.student: r for r in rows},
        {r[0]: r for r in table[1:]},
        table[0],
        columns,
    )


@pytest.mark.parametrize("student", sorted(make_class.EXPECTED))
def test_each_submission_gets_the_expected_score_and_note(graded, student):
    rows, _, _, _ = graded
    first, second, notes = make_class.EXPECTED[student]
    row = rows[student]
    assert (row.points["ex-demo-1"], row.points["ex-demo-2"]) == (
        first,
        second,
    ), row.notes
    text = "; ".join(row.notes)
    for n in notes:
        assert n in text, (student, text)
    if not notes:
        assert text == ""


def test_forgeries_score_no_more_than_the_student_edition(graded):
    rows, _, _, _ = graded
    blank = sum(rows["blank"].points.values())
    for name in make_class.FORGERIES:
        assert sum(rows[name].points.values()) <= blank, name


def test_csv_has_a_row_per_student_and_the_columns(graded):
    rows, table, header, columns = graded
    assert header == [
        "student",
        "ex-demo-1",
        "ex-demo-2",
        "total",
        "max",
        "seconds",
        "note",
    ]
    assert columns == ["ex-demo-1", "ex-demo-2"]
    assert set(table) == set(make_class.EXPECTED) - {"loops"}
    assert table["correct"][1:5] == ["1", "1", "2", "2"]
    assert table["renamed"][6].startswith("renamed file")


def test_terminal_table(graded):
    rows, _, _, columns = graded
    text = grade.format_table(columns, list(rows.values()), 2)
    assert text.splitlines()[0].split() == [
        "student",
        "demo-1",
        "demo-2",
        "total",
        "s",
    ]
    assert any(
        line.split()[:4] == ["correct", "1", "1", "2/2"]
        for line in text.splitlines()
    )
    assert "note: loops: 09_demo: timed out after 6 s" in text


def test_main_writes_csv_without_kernels(tmp_path, capsys):
    """The command line on submissions that never reach a kernel (seconds)."""
    out = tmp_path / "fx"
    cls = make_class.write_class(out)
    subs = tmp_path / "subs"
    for name in ("truncated", "not_a_notebook", "missing"):
        shutil.copytree(cls / name, subs / name)
    csv_path = tmp_path / "g.csv"
    assert (
        grade.main([str(subs), "--tests", str(HIDDEN), "--out", str(csv_path)])
        == 0
    )
    lines = csv_path.read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith(
        "student,ex-demo-1,ex-demo-2,total"
    )
    assert "truncated" in capsys.readouterr().out


def test_bad_arguments(tmp_path, capsys):
    assert grade.main([str(tmp_path / "none"), "--tests", str(HIDDEN)]) == 2
    assert "DIR must" in capsys.readouterr().err
    assert grade.main([str(tmp_path), "--tests", str(tmp_path)]) == 2
    assert "--tests must" in capsys.readouterr().err
    assert (
        grade.main([str(tmp_path), "--tests", str(HIDDEN), "--jobs", "0"]) == 2
    )
    with pytest.raises(ValueError, match="timeout must"):
        grade.grade(tmp_path, HIDDEN, None, timeout=0)


def test_match_files_renamed_and_duplicates(tmp_path):
    stems = ["03_maml", "04_siamese"]
    files = []
    for name in ("03_maml (1).ipynb", "alice_04_siamese.ipynb", "notes.ipynb"):
        (tmp_path / name).write_text("{}")
        files.append(tmp_path / name)
    chosen, notes = grade.match_files(files, stems)
    assert chosen == {"03_maml": files[0], "04_siamese": files[1]}
    assert "renamed file '03_maml (1).ipynb' matched to 03_maml" in notes
    (tmp_path / "03_maml.ipynb").write_text("{}")
    chosen, notes = grade.match_files(
        files + [tmp_path / "03_maml.ipynb"], stems
    )
    assert chosen["03_maml"].name == "03_maml.ipynb"
    assert "2 files for 03_maml, graded '03_maml.ipynb'" in notes
    chosen, _ = grade.match_files([tmp_path / "notes.ipynb"], stems)
    assert chosen == {}


def test_values_travel_as_data_only(tmp_path):
    """The collect cell writes JSON that the grader decodes; nothing is
    unpickled."""
    ex = grading.Exercise(
        "ex-x-1",
        {"a": "a", "d": "d", "f": "f", "bad": "nope"},
        lambda v, s, ns: (1, ""),
    )
    path = tmp_path / "v.json"
    cell = grading.collect_cell([ex], "", 3, str(path))
    ns = {"a": [1.0, float("nan")], "d": {1: 2.0, "k": (3, 4)}, "f": print}
    exec(cell, ns)
    values = grading.read_values(str(path))
    assert values["ex-x-1/a"].ok and values["ex-x-1/a"].value[1] == "nan"
    assert values["ex-x-1/d"].value == {1: 2.0, "k": [3, 4]}
    assert isinstance(values["ex-x-1/f"].value, grading.Opaque)
    assert (
        not values["ex-x-1/bad"].ok
        and "NameError" in values["ex-x-1/bad"].error
    )
    assert grading.compare(values["ex-x-1/a"].value, [1.0, 2.0]) == (
        False,
        "holds NaN or infinite values",
    )
    path.write_text("{broken")
    assert grading.read_values(str(path)) == {}


def test_compare_gives_no_value_away():
    assert grading.compare(3.0, 2.0) == (False, "too large")
    assert grading.compare(1.0, 2.0) == (False, "too small")
    assert grading.compare([1.0], [[1.0]])[1].startswith("wrong shape")
    assert grading.compare(2.0, 2.0)[0]


def test_read_notebook_notes(tmp_path):
    (tmp_path / "a.ipynb").write_text('{"cells": [', encoding="utf-8")
    (tmp_path / "b.ipynb").write_text("[1, 2]", encoding="utf-8")
    assert grade.read_notebook(tmp_path / "a.ipynb")[1].endswith(
        "(truncated or not JSON)"
    )
    assert grade.read_notebook(tmp_path / "b.ipynb")[1].endswith(
        "(JSON, but not a notebook)"
    )
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "c.ipynb")
    assert grade.read_notebook(tmp_path / "c.ipynb")[1] == ""


def test_hidden_tests_do_not_ship_in_the_wheel():
    """instructor/ (hidden tests, rubrics) is no package of the
    distribution."""
    config = tomllib.loads(
        (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    )
    packages = config["tool"]["setuptools"]["packages"]
    assert not any(p.startswith("instructor") for p in packages)
    assert not (ROOT / "instructor" / "__init__.py").exists()
    assert not (ROOT / "mlkit" / "instructor").exists()


def test_the_books_hidden_tests_resist_forgery(tmp_path):
    """Chapter 6's real hidden test of ex-ch6-1 (my_cka): a right function
    scores, and a notebook that rewrites mlkit.exercises in its kernel
    (inputs, references, checks) and types a constant in does not."""
    tests = tmp_path / "tests"
    tests.mkdir()
    for name in ("_common.py", "_references.py"):
        shutil.copy2(ROOT / "instructor" / "tests" / name, tests / name)
    (tests / "06_opening_the_box.py").write_text(
        "from _common import KERNEL, spec_exercise  # noqa: F401\n"
        'EXERCISES = [spec_exercise("ex-ch6-1")]\n',
        encoding="utf-8",
    )
    right = (
        "import torch\n\n\ndef my_cka(X, Y):\n"
        "    X, Y = X.double() - X.double().mean(0), "
        "Y.double() - Y.double().mean(0)\n"
        "    return float((Y.T @ X).norm() ** 2 / "
        "((X.T @ X).norm() * (Y.T @ Y).norm()))\n"
    )
    forged = (
        "from mlkit import exercises\n"
        "exercises.exercise_inputs = lambda exercise, seed: "
        "(torch.eye(3), torch.eye(3))\n"
        "exercises.SPECS.clear()\n"
        "exercises._REGISTRY.clear()\n"
        "def my_cka(X, Y):\n    return 1.0\n"
    )
    for name, code in (
        ("right", right),
        ("forged", "import torch\n" + forged),
    ):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(code)]
        (tmp_path / "class" / name).mkdir(parents=True)
        nbformat.write(
            nb, tmp_path / "class" / name / "06_opening_the_box.ipynb"
        )
    rows, _, _ = grade.grade(
        tmp_path / "class", tests, None, timeout=120, jobs=2, echo=False
    )
    got = {r.student: r.points["ex-ch6-1"] for r in rows}
    assert got == {"right": 1.0, "forged": 0.0}, [r.notes for r in rows]
