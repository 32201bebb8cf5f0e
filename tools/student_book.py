"""Build the student site: the book's pages from the student edition, no
solution in them.

    python tools/student_book.py [OUT]          (default: _build/student-book)
    make student-book

Copies what the site is built from (``_config.yml``, ``_toc.yml``,
``references.bib``, ``tools/``, ``_vendor/`` and ``chapters/`` without
``chapters/src/``, whose MyST sources hold the solutions) to ``OUT/src``,
replaces every chapter notebook by its student edition for the site (solutions
stubbed, ``{solution}`` blocks and gated solutions removed, the outputs of
solution cells cleared; the other cells keep their stored outputs, so figures
stay), and runs ``jupyter-book build`` there. The pages and the download button
then serve the student edition. The HTML lands in ``OUT/src/_build/html``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import student  # noqa: E402


def prepare(out: Path) -> Path:
    """Write the student site's sources to ``out/src``; return that folder."""
    src = out / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("tools", "_vendor", "locale"):
        if not (ROOT / name).is_dir():
            continue
        shutil.copytree(
            ROOT / name,
            src / name,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    shutil.copytree(
        ROOT / "chapters",
        src / "chapters",
        ignore=shutil.ignore_patterns("src", ".ipynb_checkpoints", "*.ipynb"),
    )
    for path in sorted((ROOT / "chapters").glob("*.ipynb")):
        nb, _ = student.student_edition(
            nbformat.read(path, as_version=4), keep_outputs=True
        )
        nbformat.write(nb, src / "chapters" / path.name)
    return src


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "out", nargs="?", default="_build/student-book", help="output folder"
    )
    ap.add_argument(
        "--no-build", action="store_true", help="write the sources only"
    )
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    if (
        ROOT.resolve().is_relative_to(out)
        or out == (ROOT / "_build").resolve()
    ):
        print(f"out must be a folder of its own, got {out}", file=sys.stderr)
        return 2
    src = prepare(out)
    if args.no_build:
        print(src)
        return 0
    book = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(book) if book.exists() else "jupyter-book", "build", str(src)]
    done = subprocess.run(cmd, cwd=src)
    if done.returncode == 0:
        print(f"student site: {src / '_build' / 'html' / 'index.html'}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
