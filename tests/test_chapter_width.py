"""Everything a chapter shows fits the page's code box.

The book's code boxes hold 79 characters at the theme's font size (the
project's line length, PEP 8's). A stored code line or a printed text line
wider than that runs off the right edge of the page behind a scroll bar, where
a reader misses it. This test reads the stored notebooks, which is what the
site shows, so it needs no kernel.

Checked: every line of every code cell's source, and every line of its text
outputs (stream output and ``text/plain`` results). Not checked: HTML and image
outputs, which the theme wraps or scales, and ``text/plain`` beside an HTML
or image representation, which the page does not show.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 79
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else (value or "")


def shown_text(output: dict) -> str:
    """The text a reader sees of one output (empty for rich outputs)."""
    kind = output.get("output_type")
    if kind == "stream":
        return _text(output.get("text"))
    if kind in ("execute_result", "display_data"):
        data = output.get("data", {})
        rich = {
            "text/html",
            "image/png",
            "image/svg+xml",
            "text/markdown",
            "application/vnd.jupyter.widget-view+json",
        }
        if rich & set(data):
            return ""
        return _text(data.get("text/plain"))
    if kind == "error":
        return "\n".join(output.get("traceback", []))
    return ""


def wide_lines(notebook: Path) -> list[str]:
    """``cell N source|output: line`` for each line wider than WIDTH."""
    cells = json.loads(notebook.read_text())["cells"]
    found = []
    for number, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        tags = cell.get("metadata", {}).get("tags", [])
        if "remove-cell" in tags:
            continue
        if "remove-input" not in tags:
            for line in _text(cell["source"]).splitlines():
                if len(line) > WIDTH:
                    found.append(f"cell {number} source ({len(line)}): {line}")
        if "remove-output" in tags:
            continue
        for output in cell.get("outputs", []):
            for line in shown_text(output).splitlines():
                if len(line) > WIDTH:
                    found.append(f"cell {number} output ({len(line)}): {line}")
    return found


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_line_fits_the_page(notebook):
    wide = wide_lines(notebook)
    assert not wide, (
        f"{len(wide)} line(s) of {notebook.name} are wider than {WIDTH} "
        "characters:\n" + "\n".join(wide[:20])
    )


def test_the_checker_sees_a_wide_line(tmp_path):
    cell = {
        "cell_type": "code",
        "metadata": {},
        "source": "x = 1\n" + "y" * 80,
        "outputs": [
            {
                "output_type": "stream",
                "name": "stdout",
                "text": "z" * 90 + "\nshort\n",
            }
        ],
        "execution_count": 1,
    }
    notebook = tmp_path / "01_wide.ipynb"
    notebook.write_text(
        json.dumps(
            {
                "cells": [cell],
                "metadata": {},
                "nbformat": 4,
                "nbformat_minor": 5,
            }
        )
    )
    found = wide_lines(notebook)
    assert [line.split(":")[0] for line in found] == [
        "cell 0 source (80)",
        "cell 0 output (90)",
    ]
