"""Tests for mlkit.exercises (the readers' self-checks) and the editions
(tools/student.py, tools/instructor.py); the grader has tests/test_grade.py."""

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from mlkit import exercises
from mlkit.exercises import SPECS, Result, check, close, register

ROOT = Path(__file__).resolve().parents[1]


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "tools" / f"{name}.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


student = _load_tool("student")
_refs = importlib.util.spec_from_file_location(
    "_references", ROOT / "instructor" / "tests" / "_references.py"
)
references = importlib.util.module_from_spec(_refs)
_refs.loader.exec_module(references)


def _answer(exercise):
    """The book's code for ``exercise``: the library's, or the instructor's
    reference."""
    spec = SPECS[exercise]
    return (
        spec.answer
        if spec.answer is not None
        else references.REFERENCES[exercise]
    )


@pytest.fixture
def demo_check():
    @register("ex-test-1", hint="Multiply the two numbers.")
    def _(answer):
        return close(answer, 6.0)

    yield "ex-test-1"
    exercises._REGISTRY.pop("ex-test-1")


def test_check_pass_and_fail_print_and_return(demo_check, capsys):
    r = check(demo_check, 6)
    assert isinstance(r, Result) and r and r.passed
    assert capsys.readouterr().out.startswith("PASS ex-test-1")
    r = check(demo_check, 5)
    assert not r
    out = capsys.readouterr().out
    assert (
        out.startswith("FAIL ex-test-1: too small")
        and "Hint: Multiply the two numbers." in out
    )
    # the expected value is never printed
    assert "6" not in out.split("Hint")[0]


def test_wrong_kind_of_answer_is_a_fail_not_a_traceback(demo_check, capsys):
    assert not check(demo_check, "six")
    assert not check(demo_check, None)
    assert not check(demo_check, [6, 6])  # wrong shape
    assert not check(demo_check, float("nan"))
    assert capsys.readouterr().out.count("FAIL") == 4


def test_exception_in_check_counts_as_fail(capsys):
    @register("ex-test-2", hint="h")
    def _(a):
        raise KeyError("boom")

    try:
        r = check("ex-test-2", 1)
    finally:
        exercises._REGISTRY.pop("ex-test-2")
    assert not r and "KeyError" in r.message


def test_close_accepts_tensors_and_arrays():
    assert close(torch.tensor([1.0, 2.0]), np.array([1.0, 2.0]))[0]
    assert not close(torch.tensor([1.0, 2.1]), [1.0, 2.0])[0]


def test_bad_input(demo_check):
    with pytest.raises(ValueError, match="exercise must be one of"):
        check("ex-nope", 1)
    with pytest.raises(ValueError, match="exercise must be an id"):
        register("ch3-1", hint="x")
    with pytest.raises(ValueError, match="hint must be"):
        register("ex-test-9", hint=" ")
    with pytest.raises(ValueError, match="already has a check"):
        register(demo_check, hint="again")(lambda a: True)


# --- tools/student.py on a small two-exercise notebook -----------------------

SETUP = """from mlkit.exercises import check, close, register
@register("ex-demo-1", hint="2 times 3.")
def _a(answer):
    return close(answer, 6)
@register("ex-demo-2", hint="A list of the first three squares.")
def _b(answer):
    return close(answer, [0, 1, 4])"""

SOLUTION_MD = """```{exercise} Squares
:label: ex-demo-2
List the first three squares.
```

```{solution} ex-demo-2
:class: dropdown
`[i * i for i in range(3)]`
```
After the solution."""


def make_book_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    sol = {"tags": ["solution"]}
    nb.cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("answer = 2 * 3", metadata=sol),
        nbformat.v4.new_code_cell('check("ex-demo-1", answer)'),
        nbformat.v4.new_markdown_cell(SOLUTION_MD),
        nbformat.v4.new_code_cell(
            "squares = [i * i for i in range(3)]\nprint(squares)", metadata=sol
        ),
        nbformat.v4.new_code_cell('check("ex-demo-2", squares)'),
    ]
    nb.cells[4].outputs = [
        nbformat.v4.new_output("stream", text="[0, 1, 4]\n")
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def test_strip_solution_blocks():
    out = student.strip_solution_blocks(SOLUTION_MD)
    assert "{exercise}" in out and "List the first three squares." in out
    assert (
        "{solution}" not in out
        and "i * i" not in out
        and "After the solution." in out
    )
    nested = "````{solution} ex-1\n```python\nx = 1\n```\n````\nkept"
    assert student.strip_solution_blocks(nested) == "kept"


def test_student_edition(tmp_path, capsys):
    src, out = tmp_path / "chapters", tmp_path / "student"
    src.mkdir()
    make_book_notebook(src / "09_demo.ipynb")
    assert student.main([str(src), str(out)]) == 0
    nb = nbformat.read(out / "09_demo.ipynb", as_version=4)
    sols = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert [c.source for c in sols] == [student.PLACEHOLDER] * 2
    assert all(c.outputs == [] for c in nb.cells if c.cell_type == "code")
    assert 'check("ex-demo-1", answer)' in nb.cells[2].source  # checks stay
    assert "{solution}" not in nb.cells[3].source
    assert "2 solution cell(s) emptied" in capsys.readouterr().out
    # the book's copy is untouched
    assert (
        nbformat.read(src / "09_demo.ipynb", as_version=4).cells[1].source
        == "answer = 2 * 3"
    )


def test_student_needs_notebooks(tmp_path):
    assert student.main([str(tmp_path), str(tmp_path / "o")]) == 2


def test_gated_solution_spanning_cells_is_removed():
    """sphinx-exercise's {solution-start} ... {solution-end}, as chapter 1
    uses it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "## Exercises\n\n```{exercise} Steps\n:label: ex-ch9-1\n\n"
            "Count them.\n```\n\n"
            "```{solution-start} ex-ch9-1\n:class: dropdown\n```\n\n"
            "The worked answer says 42."
        ),
        # untagged, but inside the gate
        nbformat.v4.new_code_cell("print(42)"),
        nbformat.v4.new_markdown_cell(
            "```{solution-end}\n```\n\nText after the gate."
        ),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    out, emptied = student.student_edition(nb)
    assert emptied == 1
    assert (
        "Count them." in out.cells[0].source
        and "{exercise}" in out.cells[0].source
    )
    assert (
        "42" not in out.cells[0].source
        and "solution-start" not in out.cells[0].source
    )
    assert out.cells[1].source == student.PLACEHOLDER
    assert out.cells[2].source.strip() == "Text after the gate."
    assert out.cells[3].source == "x = 1"


def test_every_checked_exercise_passes_the_books_code_and_fails_a_wrong_one(
    capsys,
):
    """Each self-check: the book's own code passes; a shifted answer, a
    constant and an unwritten stub fail, and no FAIL line prints a number of
    the reference."""
    for exercise, spec in SPECS.items():
        assert check(exercise, _answer(exercise)), exercise

        def shifted(*args, _f=_answer(exercise)):
            v = _f(*args)
            if isinstance(v, dict):
                return {k: x + 0.5 for k, x in v.items()}
            return v + 1

        def stub(*args):
            raise NotImplementedError("your code here")

        assert not check(exercise, shifted), exercise
        assert not check(exercise, lambda *a: 1.0), exercise
        assert not check(exercise, stub), exercise
        assert not check(exercise, None), exercise
    out = capsys.readouterr().out
    assert out.count("PASS") == len(SPECS)
    for line in out.splitlines():
        if line.startswith("FAIL"):
            assert "off by" not in line and "expected 0" not in line


def test_the_prediction_typed_in_does_not_pass():
    """ex-ch5-2 asks what doubling the margin does; returning the margin
    itself (the prediction, not the computation) must not pass."""
    assert not check("ex-ch5-2", lambda points, labels, margin: margin)
    assert not check("ex-ch3-2", lambda model, tasks, alpha: 0.0)


def test_older_forms_still_accepted_with_tight_tolerances(capsys):
    """The chapters' present check cells (values on the chapter's data) keep
    working."""
    from mlkit import exercises, theory

    tasks = theory.sample_linear_tasks(seed=0)
    answer_1 = exercises._ans_ch5_1(tasks, (0.0, 0.0), 0.2)
    assert check("ex-ch5-1", answer_1)
    answer_3 = exercises._ans_ch5_3(tasks, 0.2, 2)
    assert check("ex-ch5-3", answer_3)
    end = theory.train_linear_maml(
        tasks, alpha=0.2, inner_steps=2, first_order=True
    )[-1]
    # the training endpoint is not the computed point
    assert not check("ex-ch5-3", end)
    model, x, y, _ = exercises.exercise_inputs("ex-ch3-1", 0)
    task = type("T", (), {"support_x": x[None], "support_y": y[None]})()
    fast = exercises._ans_ch3_1(model, x, y, 0.01)
    assert check("ex-ch3-1", fast, model, task)
    assert (
        "PASS ex-ch3-1: your fast weights equal maml.adapt's"
        in capsys.readouterr().out
    )


def test_references_outside_the_package_match_the_digests():
    """The three answers kept out of mlkit (digests only) agree with the
    instructor's code on the self-check's seeds, and mlkit has no reference
    for them."""
    from mlkit import exercises

    for exercise in references.REFERENCES:
        spec = SPECS[exercise]
        assert spec.answer is None and len(spec.digests) == len(spec.seeds)
        for seed, digest in zip(spec.seeds, spec.digests):
            got = references.REFERENCES[exercise](*spec.inputs(seed))
            assert exercises._digest(exercise, seed, got) == digest
        with pytest.raises(ValueError, match="instructor"):
            exercises.reference(exercise, 0)


def test_inputs_are_fresh_copies():
    """A reader's function that changes its inputs cannot change the
    reference."""
    from mlkit import exercises

    a, b = exercises.exercise_inputs("ex-ch6-1", 3)
    a.zero_()
    c, _ = exercises.exercise_inputs("ex-ch6-1", 3)
    assert c.abs().sum() > 0
    with pytest.raises(ValueError, match="exercise must be one of"):
        exercises.exercise_inputs("ex-ch9-9", 0)


def test_no_reference_value_stored_in_the_checks():
    """The checks compute their references: exercises.py holds no number with
    four or more significant digits (a stored answer would be one)."""
    import ast

    tree = ast.parse(
        (ROOT / "mlkit" / "exercises.py").read_text(encoding="utf-8")
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, float):
            digits = (
                f"{node.value:.12g}".lstrip("-0.").replace(".", "").rstrip("0")
            )
            assert len(digits.split("e")[0]) < 4, node.value


MARKED = '''def my_fn(x):
    """Doc."""
    ### BEGIN SOLUTION
    return x * 2
    ### END SOLUTION


n = 10
### BEGIN SOLUTION
total, extra = n * 2, 1
### END SOLUTION'''


def test_marked_solution_regions_become_stubs():
    out = student.strip_marked(MARKED)
    assert "x * 2" not in out and "n * 2" not in out
    assert 'raise NotImplementedError("your code here")' in out
    assert "total = ...\nextra = ..." in out and "n = 10" in out
    namespace = {}
    # the stubbed cell runs; the check cell after it then can too
    exec(out, namespace)
    assert namespace["total"] is Ellipsis
    with pytest.raises(NotImplementedError):
        namespace["my_fn"](1)


def test_make_student_never_overwrites_work(tmp_path, capsys):
    src, out = tmp_path / "chapters", tmp_path / "student"
    src.mkdir()
    make_book_notebook(src / "09_demo.ipynb")
    assert student.main([str(src), str(out)]) == 0
    # unchanged: written again, same bytes
    assert student.main([str(src), str(out)]) == 0
    edited = nbformat.read(out / "09_demo.ipynb", as_version=4)
    edited.cells[1].source = "answer = 6  # my work"
    nbformat.write(edited, out / "09_demo.ipynb")
    capsys.readouterr()
    assert student.main([str(src), str(out)]) == 1
    captured = capsys.readouterr()
    assert "kept" in captured.out and "make student OUT=" in captured.err
    assert "my work" in (out / "09_demo.ipynb").read_text()


def _solution_texts(nb):
    """The solution code of a solved chapter: whole solution cells, or marked
    regions."""
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if student.has_markers(cell.source):
            parts = cell.source.split("### BEGIN SOLUTION")[1:]
            texts += [p.split("### END SOLUTION")[0] for p in parts]
        elif student.is_solution(cell):
            texts.append(cell.source)
    return texts


def _answer_lines(texts):
    """Lines of solution code specific enough to give an answer away."""
    lines = set()
    for text in texts:
        for line in text.splitlines():
            line = line.strip()
            if len(line) >= 30 and not line.startswith(
                ("#", "print(", "import ", "from ", "def ", "return ", '"""')
            ):
                lines.add(line)
    return lines


def test_answers_are_not_in_the_student_edition_the_site_or_the_package(
    tmp_path,
):
    """For every chapter: no solution line and no printed output of a
    solution cell in the student edition or in the student site's notebooks;
    no whole solution in the installed mlkit."""
    import mlkit

    student_book = _load_tool("student_book")
    chapters = sorted((ROOT / "chapters").glob("*.ipynb"))
    assert (
        student.main([str(ROOT / "chapters"), str(tmp_path / "edition")]) == 0
    )
    site = student_book.prepare(tmp_path / "site")
    assert not (site / "chapters" / "src").exists()
    package = "\n".join(
        p.read_text(encoding="utf-8")
        for p in Path(mlkit.__file__).parent.rglob("*.py")
    )
    for path in chapters:
        solved = nbformat.read(path, as_version=4)
        edition = (tmp_path / "edition" / path.name).read_text(
            encoding="utf-8"
        )
        edition_nb = nbformat.reads(edition, as_version=4)
        assert all(
            c.get("outputs", []) == []
            for c in edition_nb.cells
            if c.cell_type == "code"
        )
        pages = (site / "chapters" / path.name).read_text(encoding="utf-8")
        # lines that occur outside the solutions too (the chapter's own code)
        # give nothing away
        shared = "\n".join(
            c.source
            for c in solved.cells
            if c.cell_type == "markdown"
            or not (student.is_solution(c) or student.has_markers(c.source))
        )
        for line in _answer_lines(_solution_texts(solved)) - set(
            x.strip() for x in shared.splitlines()
        ):
            assert line not in edition, (path.name, line)
            assert line not in pages, (path.name, line)
        for text in _solution_texts(solved):
            body = "\n".join(x.strip() for x in text.strip().splitlines())
            if len(body) >= 60:
                assert body not in package, path.name
        for cell in solved.cells:
            if cell.cell_type == "code" and student.is_solution(cell):
                for out in cell.get("outputs", []):
                    for line in out.get("text", "").splitlines():
                        if len(line.strip()) >= 12:
                            assert line.strip() not in edition, (
                                path.name,
                                line,
                            )
                            assert line.strip() not in pages, (path.name, line)


def test_instructor_edition(tmp_path, capsys):
    """Solved notebooks, hidden tests and rubrics, in one folder outside the
    package."""
    instructor = _load_tool("instructor")
    src = tmp_path / "chapters"
    src.mkdir()
    make_book_notebook(src / "09_demo.ipynb")
    out = tmp_path / "instructor"
    assert instructor.main([str(src), str(out)]) == 0
    assert (out / "chapters" / "09_demo.ipynb").read_bytes() == (
        src / "09_demo.ipynb"
    ).read_bytes()
    assert (out / "tests" / "03_maml.py").is_file() and (
        out / "tests" / "_common.py"
    ).is_file()
    assert "ex-ch6-4" in (out / "rubrics.md").read_text(encoding="utf-8")
    assert instructor.main([str(src), str(out)]) == 0  # regenerated in place
    assert instructor.main([str(tmp_path / "none"), str(out)]) == 2


def test_every_exercise_is_checked_or_has_a_rubric():
    """All 22 exercises of the chapters: a check in mlkit.exercises and a
    hidden test, or a model answer and rubric in instructor/rubrics.md."""
    import re

    labels = set()
    for path in (ROOT / "chapters" / "src").glob("*.md"):
        labels |= set(
            re.findall(
                r":label: (ex-ch\d+-\d+)", path.read_text(encoding="utf-8")
            )
        )
    rubrics = (ROOT / "instructor" / "rubrics.md").read_text(encoding="utf-8")
    hidden = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (ROOT / "instructor" / "tests").glob("0*.py")
    )
    for label in sorted(labels):
        if label in SPECS:
            assert f'"{label}"' in hidden, label
        else:
            assert f"### {label} " in rubrics, label
