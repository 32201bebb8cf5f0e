"""The site's repository links and launch buttons follow repository.url.

Each build test builds a one-notebook book with the book's own _config.yml
(only repository.url changed) and local extensions, strictly (-W -n), and reads
the notebook's page. With an address the page links to the repository and its
issues and offers Binder and Colab; without one it has none of them, and the
build still passes. About 5-20 s a build.
Also: every chapter opens with the same setup cell, which the site leaves
out (remove-cell) and the downloadable notebook keeps. Its text lives in each
chapter's Markdown source (chapters/src/); tests/test_chapter_sources.py checks
that the stored notebooks agree with those sources.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import repository_links  # noqa: E402  tools/repository_links.py

# A placeholder written only here: the book itself ships without an address.
PLACEHOLDER = "https://github.com/example/book"
PAGE = "chapters/demo"
# The chapter notebooks, and the tags of the setup cell that opens each one.
CHAPTERS = sorted((ROOT / "chapters").glob("0*.ipynb"))
SETUP_TAGS = ["setup", "remove-cell"]


def setup_cell(path: Path) -> nbformat.NotebookNode:
    """The first cell of the stored chapter notebook ``path``."""
    return nbformat.read(path, as_version=4).cells[0]


def jupyter_book() -> list[str]:
    script = Path(sys.executable).with_name("jupyter-book")
    if script.is_file():
        return [str(script)]
    found = shutil.which("jupyter-book")
    if found is None:
        pytest.skip("jupyter-book is not installed")
    return [found]


def build_page(tmp_path: Path, url: str) -> str:
    """Build a one-notebook book with repository.url = url; return its page."""
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("repository", {})["url"] = url
    (book / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (book / "_toc.yml").write_text(
        f"format: jb-book\nroot: intro\nchapters:\n  - file: {PAGE}\n")
    (book / "intro.md").write_text("# Demo\n\nA one-page book.\n")
    for name in config.get("bibtex_bibfiles", []):
        shutil.copy(ROOT / name, book / name)
    for folder in set(config["sphinx"].get("local_extensions", {}).values()):
        shutil.copytree(ROOT / folder, book / folder)
    for folder in config["sphinx"]["config"].get("html_static_path", []):
        (book / folder).symlink_to(ROOT / folder)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter\n\nSome text."),
                nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(nb, book / f"{PAGE}.ipynb")
    run = subprocess.run(
        [*jupyter_book(), "build", "-W", "-n", "--keep-going", str(book)],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return (book / "_build" / "html" / f"{PAGE}.html").read_text()


def test_address_set_shows_repository_and_launch_buttons(tmp_path):
    html = build_page(tmp_path, PLACEHOLDER)
    assert f'href="{PLACEHOLDER}"' in html  # the repository link
    assert f"{PLACEHOLDER}/issues/new" in html
    # no edit button: a chapter's source is its Markdown, not this notebook
    assert "/edit/" not in html and "source-edit-button" not in html
    assert (f"https://mybinder.org/v2/gh/example/book/main"
            f"?urlpath=lab/tree/{PAGE}.ipynb") in html
    assert (f"https://colab.research.google.com/github/example/book/blob/main/"
            f"{PAGE}.ipynb") in html


def test_no_address_no_repository_or_launch_buttons(tmp_path):
    html = build_page(tmp_path, "")
    for absent in ('href="https://github.com/', "mybinder.org",
                   "colab.research.google.com", "launch-buttons",
                   "source-repository-button", "source-issues-button",
                   "source-edit-button"):
        assert absent not in html, absent
    assert "download-source-button" in html  # the page's other buttons stay


def test_unset_address_includes_jupyter_books_own():
    """Jupyter Book fills in its own repository when the url key is missing."""
    assert repository_links.repository_url({}) == ""
    assert repository_links.repository_url({"repository_url": ""}) == ""
    assert repository_links.repository_url(
        {"repository_url": repository_links.JUPYTER_BOOK_DEFAULT + "/"}) == ""
    assert repository_links.repository_url(
        {"repository_url": PLACEHOLDER + "/"}) == PLACEHOLDER


def test_chapters_open_with_the_setup_cell():
    """The same setup cell, word for word, opens every chapter: change it in
    every chapters/src/NN_*.md, then jupytext --sync them."""
    assert CHAPTERS
    source = setup_cell(CHAPTERS[0]).source
    assert "find_spec(\"mlkit\")" in source
    for path in CHAPTERS:
        first = setup_cell(path)
        assert first.cell_type == "code", path.name
        assert first.source == source, (
            f"{path.name}'s setup cell differs from {CHAPTERS[0].name}'s")
        assert first.metadata.get("tags") == SETUP_TAGS, path.name
        assert first.outputs == [], path.name  # silent: mlkit is installed
    assert "remove-cell" in SETUP_TAGS  # not on the site


def test_setup_cell_prints_install_line_only_without_mlkit():
    source = setup_cell(CHAPTERS[0]).source
    inside = subprocess.run(
        [sys.executable, "-c", source],
        capture_output=True, text=True, timeout=60)
    assert inside.returncode == 0 and inside.stdout == "", inside.stderr
    # -I -S: no site-packages, so mlkit (and all else installed) is missing
    outside = subprocess.run([sys.executable, "-I", "-S", "-c", source],
                             capture_output=True, text=True, timeout=60)
    assert outside.returncode == 0, outside.stderr
    line = outside.stdout
    assert line.count("\n") == 1
    assert 'pip install "opening-the-box @ git+' in line
    assert "pip install -e ." in line and "MLKIT_DATA" in line
