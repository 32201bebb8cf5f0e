"""Tests for mlkit.exercises and the coursework tools (tools/student.py, tools/grade.py)."""

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from mlkit import exercises
from mlkit.exercises import LOG_ENV, Result, check, close, register

ROOT = Path(__file__).resolve().parents[1]


def _load_tool(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


student = _load_tool("student")
grade = _load_tool("grade")


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
    assert out.startswith("FAIL ex-test-1: off by up to 1") and "Hint: Multiply the two numbers." in out


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


def test_log_written_when_env_set(demo_check, tmp_path, monkeypatch, capsys):
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(LOG_ENV, str(log))
    check(demo_check, 6)
    check(demo_check, 1)
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines == [{"exercise": "ex-test-1", "passed": True}, {"exercise": "ex-test-1", "passed": False}]


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


# --- tools/student.py and tools/grade.py on a small two-exercise notebook ------------------

SETUP = '''from mlkit.exercises import check, close, register
@register("ex-demo-1", hint="2 times 3.")
def _a(answer):
    return close(answer, 6)
@register("ex-demo-2", hint="A list of the first three squares.")
def _b(answer):
    return close(answer, [0, 1, 4])'''

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
        nbformat.v4.new_code_cell("squares = [i * i for i in range(3)]\nprint(squares)", metadata=sol),
        nbformat.v4.new_code_cell('check("ex-demo-2", squares)'),
    ]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="[0, 1, 4]\n")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_strip_solution_blocks():
    out = student.strip_solution_blocks(SOLUTION_MD)
    assert "{exercise}" in out and "List the first three squares." in out
    assert "{solution}" not in out and "i * i" not in out and "After the solution." in out
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
    assert nbformat.read(src / "09_demo.ipynb", as_version=4).cells[1].source == "answer = 2 * 3"


def test_student_needs_notebooks(tmp_path):
    assert student.main([str(tmp_path), str(tmp_path / "o")]) == 2


def test_exercises_in_finds_check_calls(tmp_path):
    make_book_notebook(tmp_path / "a.ipynb")
    assert grade.exercises_in(nbformat.read(tmp_path / "a.ipynb", as_version=4)) == ["ex-demo-1", "ex-demo-2"]


def test_grade_solved_full_marks_student_zero(tmp_path):
    """End to end (two kernels, a few seconds): solved copy 2/2, student edition 0/2."""
    ref = tmp_path / "chapters"
    ref.mkdir()
    make_book_notebook(ref / "09_demo.ipynb")
    subs = tmp_path / "subs"
    (subs / "solved").mkdir(parents=True)
    make_book_notebook(subs / "solved" / "09_demo.ipynb")
    student.main([str(ref), str(subs / "blank")])
    # a student who deleted a check call is still marked on it (the reference names it)
    half = nbformat.read(subs / "solved" / "09_demo.ipynb", as_version=4)
    del half.cells[5]
    (subs / "half").mkdir()
    nbformat.write(half, subs / "half" / "09_demo.ipynb")
    columns, table, notes = grade.grade(subs, ref, timeout=60)
    assert columns == ["ex-demo-1", "ex-demo-2"]
    assert table == {"blank": {"ex-demo-1": 0, "ex-demo-2": 0},
                     "half": {"ex-demo-1": 1, "ex-demo-2": 0},
                     "solved": {"ex-demo-1": 1, "ex-demo-2": 1}}
    assert any("blank" in n and "NameError" in n for n in notes)
    text = grade.format_table(columns, table)
    assert "solved   1          1          2/2" in text
    assert "blank    0          0          0/2" in text


def test_grade_bad_dir(tmp_path):
    with pytest.raises(ValueError, match="DIR must"):
        grade.students_in(tmp_path / "missing")
    with pytest.raises(ValueError, match="DIR must"):
        grade.students_in(tmp_path)
    with pytest.raises(ValueError, match="timeout must"):
        grade.run_notebook(tmp_path / "x.ipynb", 0)


def test_gated_solution_spanning_cells_is_removed():
    """sphinx-exercise's {solution-start} ... {solution-end}, as chapter 1 uses it."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "## Exercises\n\n```{exercise} Steps\n:label: ex-ch9-1\n\nCount them.\n```\n\n"
            "```{solution-start} ex-ch9-1\n:class: dropdown\n```\n\nThe worked answer says 42."),
        nbformat.v4.new_code_cell("print(42)"),  # untagged, but inside the gate
        nbformat.v4.new_markdown_cell("```{solution-end}\n```\n\nText after the gate."),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    out, emptied = student.student_edition(nb)
    assert emptied == 1
    assert "Count them." in out.cells[0].source and "{exercise}" in out.cells[0].source
    assert "42" not in out.cells[0].source and "solution-start" not in out.cells[0].source
    assert out.cells[1].source == student.PLACEHOLDER
    assert out.cells[2].source.strip() == "Text after the gate."
    assert out.cells[3].source == "x = 1"


def test_ch1_example_check(capsys):
    """The worked chapter-1 check: the right numbers pass, shifted ones and wrong keys fail."""
    from mlkit import data as D
    from mlkit import maml

    torch.manual_seed(0)
    model, _ = maml.train_sinusoid(3, k_shot=5, inner_steps=1, alpha=0.01, seed=0, progress=False)
    task = D.sample_sinusoid_tasks(1, k_shot=5, n_query=20, seed=1)
    right = {s: maml.evaluate(model, [task], loss_fn=maml.mse_loss, inner_steps=s, alpha=0.01,
                              metric=maml.mse_loss)[0] for s in (0, 1, 2, 5, 10, 20)}
    assert check("ex-ch1-1", right, model, task)
    assert not check("ex-ch1-1", {s: v + 0.5 for s, v in right.items()}, model, task)
    assert not check("ex-ch1-1", {1: right[1]}, model, task)
    out = capsys.readouterr().out
    assert out.count("PASS ex-ch1-1") == 1 and out.count("FAIL ex-ch1-1") == 2
