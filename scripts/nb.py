"""A tiny notebook writer shared by the chapter generator scripts.

A script calls ``md(text)`` and ``code(text, tags)`` in reading order, then ``write(path)``,
which writes an unexecuted notebook (nbformat 4, kernel ``python3``); ``make execute`` or
``jupyter execute --inplace`` then stores its outputs.
"""

from __future__ import annotations

from pathlib import Path

import nbformat


class Notebook:
    """Cells collected in order; ``write`` saves them as an unexecuted notebook."""

    def __init__(self) -> None:
        self.cells: list[nbformat.NotebookNode] = []

    def md(self, text: str) -> None:
        self.cells.append(nbformat.v4.new_markdown_cell(text.strip("\n")))

    def code(self, text: str, tags: list[str] | None = None) -> None:
        cell = nbformat.v4.new_code_cell(text.strip("\n"))
        if tags:
            cell.metadata["tags"] = list(tags)
        self.cells.append(cell)

    def write(self, path: str | Path) -> None:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.metadata["language_info"] = {"name": "python"}
        nb.cells = self.cells
        nbformat.validate(nb)
        nbformat.write(nb, Path(path))
        print(f"wrote {path} ({len(nb.cells)} cells)")
