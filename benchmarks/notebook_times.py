"""How long each chapter takes to execute on this machine: a benchmark, \
not a test.

Executes every notebook in ``chapters/`` (or those named) with nbclient in a
scratch copy, so the stored outputs are untouched, and prints a markdown table
of wall-clock seconds. ``--write`` replaces the table in
``benchmarks/RESULTS.md`` between the markers ``<!-- notebook-times -->`` and
``<!-- /notebook-times -->``. The table says whether mlkit's cache of
downsampled images (``mlkit.data.cache_root()``) was warm; ``--cold`` also
runs every notebook with an empty cache of its own (a reader's first run on a
new machine) and adds that column.

    MLKIT_DATA=../shared/data .venv/bin/python benchmarks/notebook_times.py \
        [--write] [NAMES...]
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path
from unittest import mock

import nbformat
from nbclient import NotebookClient

from mlkit.checkpoints import machine_description
from mlkit.data import cache_root

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def time_notebook(path: Path, timeout: int = 900) -> float:
    """Seconds to execute ``path`` from a fresh kernel (start-up included)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "names", nargs="*", help="notebook file names (default: all chapters)"
    )
    p.add_argument(
        "--write", action="store_true", help="update benchmarks/RESULTS.md"
    )
    p.add_argument(
        "--cold",
        action="store_true",
        help="also run each notebook with an empty image cache",
    )
    args = p.parse_args()
    warm = any((cache_root() / "resized").glob("*.npy"))
    # nbclient can stall on live widgets
    os.environ.setdefault("MLKIT_NO_LIVE_WIDGETS", "1")
    paths = (
        [ROOT / "chapters" / n for n in args.names]
        if args.names
        else sorted((ROOT / "chapters").glob("*.ipynb"))
    )
    rows = []
    for path in paths:
        seconds = [time_notebook(path)]
        if args.cold:  # the kernel inherits the environment
            with tempfile.TemporaryDirectory() as empty, mock.patch.dict(
                os.environ, {"MLKIT_CACHE": empty}
            ):
                seconds.append(time_notebook(path))
        rows.append((path.name, seconds))
        print(
            f"{path.name}: " + ", ".join(f"{s:.1f} s" for s in seconds),
            flush=True,
        )
    table = [
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_description()}; "
        f"load from other processes: {os.getloadavg()[0]:.1f} "
        "(1-minute load average at the end); "
        f"image cache {'warm' if warm else 'empty at the start'}.",
        "",
    ]
    if args.cold:
        table += [
            "| chapter | seconds to execute | with an empty image cache |",
            "|---|---|---|",
        ]
    else:
        table += ["| chapter | seconds to execute |", "|---|---|"]
    table += [
        f"| {name} | " + " | ".join(f"{s:.0f}" for s in seconds) + " |"
        for name, seconds in rows
    ]
    text = "\n".join(table)
    print(text)
    if args.write:
        old = RESULTS.read_text() if RESULTS.exists() else ""
        block = f"<!-- notebook-times -->\n{text}\n<!-- /notebook-times -->"
        if "<!-- notebook-times -->" in old:
            new = re.sub(
                r"<!-- notebook-times -->.*?<!-- /notebook-times -->",
                block,
                old,
                flags=re.S,
            )
        else:
            new = old + "\n## Notebook execution times\n\n" + block + "\n"
        RESULTS.write_text(new)


if __name__ == "__main__":
    main()
