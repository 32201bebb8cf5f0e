"""A tiny notebook writer shared by the chapter generator scripts.

A script calls ``md(text)`` and ``code(text, tags)`` in reading order, then ``write(path)``,
which writes an unexecuted notebook (nbformat 4, kernel ``python3``); ``make execute`` or
``jupyter execute --inplace`` then stores its outputs.

Every chapter opens with ``setup_cell()``: silent where the book's package is
installed, it tells a reader of a downloaded notebook (or one opened on Colab
or Binder) how to install it and where the data goes. Tagged ``remove-cell``,
it is left out of the web pages but kept in the notebooks they offer for
download. ``scripts/add_setup_cell.py`` puts it into the stored chapters.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

SETUP_ID = "setup"
SETUP_TAGS = ["setup", "remove-cell"]
SETUP_SOURCE = r"""
# Setup: silent where the book's package mlkit is installed (its clone);
# elsewhere (a downloaded notebook, Colab) it prints how to install it.
import importlib.util

if importlib.util.find_spec("mlkit") is None:
    print('mlkit is missing: pip install "opening-the-box @ git+<the book\'s '
          'repository URL>" (in a clone: pip install -e .). Omniglot: '
          "$MLKIT_DATA (default ~/.cache/mlkit), downloaded on first use or "
          "by python -m mlkit data fetch.")
""".strip("\n")


def setup_cell() -> nbformat.NotebookNode:
    """The code cell every chapter opens with (unexecuted; silent in a clone)."""
    cell = nbformat.v4.new_code_cell(SETUP_SOURCE)
    cell.id = SETUP_ID
    cell.metadata["tags"] = list(SETUP_TAGS)
    return cell


class Notebook:
    """Cells collected in order; ``write`` saves them as an unexecuted notebook."""

    def __init__(self) -> None:
        self.cells: list[nbformat.NotebookNode] = [setup_cell()]

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
