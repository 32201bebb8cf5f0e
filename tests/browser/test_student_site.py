"""The built student site (``make student-book``) gives no checked answer away.

``tests/test_exercises.py`` searches the student edition, the student site's
notebooks and the installed package; this builds the student site's HTML
itself (a full Jupyter Book build of the student edition, about a minute) and
searches every page's text, and the notebooks its download buttons serve, for
the lines of every solution and the printed output of every solution cell.
It runs with the browser tests, after the book's own build.
"""

from __future__ import annotations

import html
import importlib.util
import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_built_student_site_holds_no_answer(tmp_path):
    helpers = _load(ROOT / "tests" / "test_exercises.py", "exercise_tests")
    student, student_book = helpers.student, helpers._load_tool("student_book")
    assert student_book.main([str(tmp_path / "site")]) == 0
    site = tmp_path / "site" / "src" / "_build" / "html"
    pages = {p: html.unescape(re.sub(r"<[^>]+>", "", p.read_text("utf-8")))
             for p in site.rglob("*.html")}
    downloads = {p: p.read_text("utf-8")
                 for p in (site / "_sources").rglob("*.ipynb")}
    assert pages and downloads, "the student site was not built"
    for path in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")):
        solved = nbformat.read(path, as_version=4)
        shared = "\n".join(
            c.source for c in solved.cells
            if c.cell_type == "markdown" or not (
                student.is_solution(c) or student.has_markers(c.source)))
        secrets = helpers._answer_lines(helpers._solution_texts(solved)) - {
            line.strip() for line in shared.splitlines()}
        for cell in solved.cells:
            if cell.cell_type == "code" and student.is_solution(cell):
                for out in cell.get("outputs", []):
                    secrets |= {line.strip()
                                for line in out.get("text", "").splitlines()
                                if len(line.strip()) >= 12}
        for secret in secrets:
            for where, text in {**pages, **downloads}.items():
                assert secret not in text, (path.name, where.name, secret)
        # Control: the book's own site (built before the browser tests) shows
        # these solutions, so the search above can find them.
        solved_page = ROOT / "_build" / "html" / "chapters" / (
            path.stem + ".html")
        if secrets and solved_page.is_file():
            text = html.unescape(re.sub(r"<[^>]+>", "",
                                        solved_page.read_text("utf-8")))
            assert any(secret in text for secret in secrets), path.name
