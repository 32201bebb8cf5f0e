"""Write the instructor edition: solved notebooks, hidden tests and rubrics,
in one folder.

    python tools/instructor.py [SRC] [OUT]
        (defaults: chapters  _build/instructor)
    make instructor [OUT=folder]

OUT/chapters/   the solved chapter notebooks (the answer key, with their
                outputs);
OUT/tests/      the hidden tests that ``make grade`` runs (a copy of
                instructor/tests);
OUT/rubrics.md  the model answers and marking rubrics of the discussion
                exercises and what the hidden test of each checked exercise
                does;
OUT/README.md   how to set, collect and grade the coursework.
None of it belongs in the student edition, the student site or the mlkit
package. The folder is regenerated from the repository each time (it holds no
one's work).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A backslash at the end of a line below joins it with the next one: the file
# holds them as one line.
README = """# Instructor edition

- `chapters/`: the solved notebooks (the answer key). Do not hand these out; \
the student
  edition is `make student` (solutions replaced by stubs, outputs cleared).
- `tests/`: the hidden tests. `make grade DIR=submissions OUT=grades.csv` \
runs them (from
  the repository's `instructor/tests`, or pass `--tests` to `tools/grade.py`).
- `rubrics.md`: model answers and rubrics for the discussion exercises, \
which the grader
  does not mark; what each checked exercise's hidden test does.

Collect one folder per student (`submissions/alice/03_maml.ipynb`); names \
changed by a
learning-management system (`03_maml (1).ipynb`) are matched and noted. \
The grader runs
students' code with your rights: for a class you do not know, grade inside \
a container.
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "src",
        nargs="?",
        default="chapters",
        help="folder of chapter notebooks",
    )
    ap.add_argument(
        "out", nargs="?", default="_build/instructor", help="where to write it"
    )
    ap.add_argument(
        "--instructor",
        default=str(ROOT / "instructor"),
        help="folder holding tests/ and rubrics.md (default: instructor)",
    )
    args = ap.parse_args(argv)
    src, out, instructor = (
        Path(args.src),
        Path(args.out),
        Path(args.instructor),
    )
    notebooks = sorted(src.glob("*.ipynb"))
    if not notebooks:
        print(
            f"src must hold .ipynb notebooks; none in {src}", file=sys.stderr
        )
        return 2
    if (
        not (instructor / "tests").is_dir()
        or not (instructor / "rubrics.md").is_file()
    ):
        print(
            "--instructor must hold tests/ and rubrics.md; "
            f"{instructor} does not",
            file=sys.stderr,
        )
        return 2
    if out.resolve() in (ROOT.resolve(), src.resolve(), instructor.resolve()):
        print(f"out must be a folder of its own, got {out}", file=sys.stderr)
        return 2
    for sub in ("chapters", "tests"):
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "chapters").mkdir(parents=True)
    for path in notebooks:
        shutil.copy2(path, out / "chapters" / path.name)
    shutil.copytree(
        instructor / "tests",
        out / "tests",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy2(instructor / "rubrics.md", out / "rubrics.md")
    (out / "README.md").write_text(README, encoding="utf-8")
    print(
        f"{out}: {len(notebooks)} solved notebook(s), "
        f"{len(list((out / 'tests').glob('[!_]*.py')))} hidden test file(s), "
        "rubrics.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
