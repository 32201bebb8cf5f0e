"""Each chapter's Markdown source and its stored notebook say the same thing.

A chapter is written in ``chapters/src/NN_name.md`` (MyST Markdown, jupytext's
``md:myst``) and stored executed as ``chapters/NN_name.ipynb``, which strict
nbval checks and Jupyter Book builds. ``jupytext.toml`` pairs the two. These
tests fail when a pair disagrees (a cell added, removed or changed on one side
only, its type or its tags), when the Markdown is not laid out as jupytext
writes it (``jupytext --sync`` would then rewrite it on a clean tree), or when
a chapter of ``_toc.yml`` has no source. The fix is in CONTRIBUTING.md, "Edit a
chapter".
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml
from jupytext.config import load_jupytext_configuration_file
from jupytext.paired_paths import paired_paths

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "jupytext.toml"
SOURCES = ROOT / "chapters" / "src"
# Cell metadata that jupytext keeps in the notebook only (execution timings and
# the like), as its own _IGNORE_CELL_METADATA lists them.
NOTEBOOK_ONLY_METADATA = {"autoscroll", "collapsed", "scrolled", "trusted",
                          "execution", "ExecuteTime"}


def rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def toc_files(node=None) -> list[str]:
    """Every ``file`` (and the root) that _toc.yml names, in order."""
    if node is None:
        node = yaml.safe_load((ROOT / "_toc.yml").read_text())
    found = []
    if isinstance(node, dict):
        for key in ("root", "file"):
            if isinstance(node.get(key), str):
                found.append(node[key])
        for value in node.values():
            if isinstance(value, (list, dict)):
                found += toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += toc_files(item)
    return found


def toc_notebooks() -> list[Path]:
    """The chapters of _toc.yml that are notebooks (the others are pages)."""
    paths = [ROOT / f"{name}.ipynb" for name in toc_files()]
    return [p for p in paths if p.is_file()]


def config():
    return load_jupytext_configuration_file(str(CONFIG))


def source_of(notebook: Path) -> Path | None:
    """The Markdown file that jupytext.toml pairs with ``notebook``."""
    formats = config().default_formats(str(notebook))
    if not formats:
        return None
    for path, fmt in paired_paths(str(notebook), "ipynb", formats):
        if fmt.get("extension") == ".md":
            return Path(path)
    return None


def fix(markdown: Path, notebook: Path) -> str:
    return (f"Fix: if the Markdown is right (you edited it), run "
            f"`.venv/bin/jupytext --to ipynb --update -o {rel(notebook)} "
            f"{rel(markdown)}` (the notebook keeps its outputs) and "
            f"re-execute the chapter if its code changed; if the notebook is "
            f"right, run "
            f"`.venv/bin/jupytext --to md:myst -o {rel(markdown)} "
            f"{rel(notebook)}`. See CONTRIBUTING.md, 'Edit a chapter'.")


def describe(cell) -> str:
    first = next((line for line in cell.source.splitlines() if line.strip()),
                 "")
    return f"{cell.cell_type} cell {first[:60]!r}"


def kept_metadata(cell) -> dict:
    return {k: v for k, v in cell.metadata.items()
            if k not in NOTEBOOK_ONLY_METADATA}


def first_difference(markdown: Path, notebook: Path) -> str | None:
    """What first differs between the two, or None when they agree.

    Compares every cell's type, source and metadata (tags among them),
    leaving out outputs, execution counts, ids and timings, and the kernel.
    """
    text = jupytext.read(markdown)
    stored = nbformat.read(notebook, as_version=4)
    if text.metadata.get("kernelspec") != stored.metadata.get("kernelspec"):
        return (f"the kernelspec differs: {text.metadata.get('kernelspec')} "
                f"in the Markdown, {stored.metadata.get('kernelspec')} in the "
                f"notebook")
    for i in range(max(len(text.cells), len(stored.cells))):
        if i >= len(text.cells):
            return (f"cell {i} ({describe(stored.cells[i])}) is in the "
                    f"notebook only")
        if i >= len(stored.cells):
            return (f"cell {i} ({describe(text.cells[i])}) is in the "
                    f"Markdown only")
        md_cell, nb_cell = text.cells[i], stored.cells[i]
        where = f"cell {i} ({describe(nb_cell)})"
        if md_cell.cell_type != nb_cell.cell_type:
            return (f"{where}: a {md_cell.cell_type} cell in the Markdown, a "
                    f"{nb_cell.cell_type} cell in the notebook")
        if md_cell.source != nb_cell.source:
            diff = difflib.unified_diff(
                nb_cell.source.splitlines(), md_cell.source.splitlines(),
                "notebook", "markdown", lineterm="", n=1)
            return f"{where}: the source differs\n" + "\n".join(diff)
        if kept_metadata(md_cell) != kept_metadata(nb_cell):
            return (f"{where}: the metadata differs: {kept_metadata(md_cell)} "
                    f"in the Markdown, {kept_metadata(nb_cell)} in the "
                    f"notebook")
    return None


def layout_difference(markdown: Path, notebook: Path) -> str | None:
    """Where ``markdown`` differs from what jupytext writes for the pair."""
    stored = nbformat.read(notebook, as_version=4)
    expected = jupytext.writes(stored, "md:myst", config=config())
    actual = markdown.read_text(encoding="utf-8")
    if actual == expected:
        return None
    diff = difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                "as jupytext writes it", rel(markdown),
                                lineterm="", n=1)
    return "\n".join(list(diff)[:12])


def check_pair(markdown: Path, notebook: Path) -> str | None:
    """None when the pair agrees; else a message naming both and the fix."""
    if not markdown.is_file():
        return (f"{rel(notebook)} has no Markdown source {rel(markdown)}. "
                f"Create it with `.venv/bin/jupytext --sync {rel(notebook)}`.")
    difference = first_difference(markdown, notebook)
    if difference is not None:
        return (f"{rel(markdown)} and {rel(notebook)} are out of sync: "
                f"{difference}\n{fix(markdown, notebook)}")
    layout = layout_difference(markdown, notebook)
    if layout is not None:
        return (f"{rel(markdown)} agrees with {rel(notebook)} cell for cell "
                f"but is not laid out as jupytext writes it, so `jupytext "
                f"--sync` would rewrite it:\n{layout}\nFix: "
                f"`.venv/bin/jupytext --sync {rel(markdown)}`.")
    return None


CHAPTERS = toc_notebooks()


def test_toc_lists_the_chapter_notebooks():
    assert len(CHAPTERS) >= 6, [rel(p) for p in CHAPTERS]
    stored = sorted((ROOT / "chapters").glob("*.ipynb"))
    assert sorted(CHAPTERS) == stored, "a chapter notebook outside _toc.yml"


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_every_toc_chapter_has_its_source(notebook):
    markdown = source_of(notebook)
    assert markdown is not None, f"jupytext.toml pairs {rel(notebook)} with " \
                                 f"no Markdown file"
    assert markdown.resolve() == SOURCES / f"{notebook.stem}.md"
    assert markdown.is_file(), (
        f"{rel(notebook)} has no source {rel(markdown)}: create it with "
        f"`.venv/bin/jupytext --sync {rel(notebook)}`")


def test_sources_folder_holds_only_chapter_sources():
    names = {p.stem for p in CHAPTERS}
    for path in SOURCES.iterdir():
        if path.name.startswith("."):  # .ipynb_checkpoints and the like
            continue
        assert path.suffix == ".md", (
            f"{rel(path)} does not belong in {rel(SOURCES)} (`jupytext --to "
            f"ipynb` without -o writes the notebook there: delete it)")
        assert path.stem in names, (
            f"{rel(path)} is the source of no chapter in _toc.yml")


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_source_and_notebook_agree(notebook):
    problem = check_pair(SOURCES / f"{notebook.stem}.md", notebook)
    assert problem is None, problem


# The checker itself: a pair made here, in sync and then out of it.
def make_pair(folder: Path) -> tuple[Path, Path]:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python",
                                    "pygments_lexer": "ipython3"}
    setup = nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["setup"]})
    nb.cells = [setup, nbformat.v4.new_markdown_cell("# Demo\n\nSome text."),
                nbformat.v4.new_code_cell("print(x)")]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nb.cells[2].metadata["execution"] = {"iopub.status.idle": "2026"}
    (folder / "src").mkdir(parents=True)
    notebook = folder / "99_demo.ipynb"
    markdown = folder / "src" / "99_demo.md"
    nbformat.write(nb, notebook)
    stored = nbformat.read(notebook, as_version=4)  # as the file has it
    markdown.write_text(jupytext.writes(stored, "md:myst", config=config()))
    return markdown, notebook


def test_checker_accepts_a_pair_in_sync(tmp_path):
    markdown, notebook = make_pair(tmp_path)
    assert check_pair(markdown, notebook) is None


def test_checker_reports_an_edited_source(tmp_path):
    markdown, notebook = make_pair(tmp_path)
    markdown.write_text(markdown.read_text().replace("Some text.", "Edited."))
    problem = check_pair(markdown, notebook)
    assert problem is not None
    assert "99_demo.md" in problem and "99_demo.ipynb" in problem
    assert "cell 1 (markdown cell '# Demo')" in problem
    assert "+Edited." in problem and "-Some text." in problem
    assert "jupytext --to ipynb --update -o" in problem
    assert "jupytext --to md:myst -o" in problem


def test_checker_reports_changed_tags_and_missing_cells(tmp_path):
    markdown, notebook = make_pair(tmp_path)
    text = markdown.read_text()
    markdown.write_text(text.replace(":tags: [setup]", ":tags: [solution]"))
    assert "cell 0" in check_pair(markdown, notebook)
    assert "metadata differs" in check_pair(markdown, notebook)
    cut = text[:text.index("```{code-cell} ipython3\nprint(x)")]
    markdown.write_text(cut)
    assert "cell 2 (code cell 'print(x)') is in the notebook only" in \
        check_pair(markdown, notebook)
    markdown.unlink()
    assert "has no Markdown source" in check_pair(markdown, notebook)


def test_checker_reports_a_layout_jupytext_would_rewrite(tmp_path):
    markdown, notebook = make_pair(tmp_path)
    markdown.write_text(markdown.read_text().replace(
        "```{code-cell} ipython3\nprint(x)",
        "\n\n```{code-cell} ipython3\nprint(x)"))
    assert first_difference(markdown, notebook) is None  # same cells
    problem = check_pair(markdown, notebook)
    assert problem is not None and "not laid out as jupytext writes" in problem


def test_a_real_chapter_out_of_sync_is_reported(tmp_path):
    """One deliberate desync of a real chapter, in a scratch copy."""
    notebook = CHAPTERS[0]
    (tmp_path / "src").mkdir()
    copy_nb = tmp_path / notebook.name
    copy_md = tmp_path / "src" / f"{notebook.stem}.md"
    shutil.copy(notebook, copy_nb)
    shutil.copy(SOURCES / f"{notebook.stem}.md", copy_md)
    assert check_pair(copy_md, copy_nb) is None
    stored = nbformat.read(copy_nb, as_version=4)
    last = len(stored.cells) - 1
    stored.cells[last].source += "\nA sentence added to the notebook only."
    nbformat.write(stored, copy_nb)
    problem = check_pair(copy_md, copy_nb)
    assert problem is not None and f"cell {last} " in problem
    assert notebook.name in problem and "jupytext --to" in problem
