"""The appendix's checkpoint table is the manifest's, not a copy gone stale.

``benchmarks/RESULTS.md`` (which the appendix "How the checkpoints were made"
includes) holds a table generated from ``checkpoints/MANIFEST.json`` by
``benchmarks/checkpoints_table.py``. When a checkpoint is trained, promoted or
evaluated again, the manifest changes; this test then fails until
``python benchmarks/checkpoints_table.py --write`` regenerates the table.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_table_module():
    spec = importlib.util.spec_from_file_location(
        "checkpoints_table", ROOT / "benchmarks" / "checkpoints_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_table_is_generated_from_the_manifest():
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    found = re.search(r"<!-- checkpoints -->\n(.*?)\n<!-- /checkpoints -->",
                      text, flags=re.S)
    assert found, "RESULTS.md has no <!-- checkpoints --> table"
    assert found.group(1) == load_table_module().table(), (
        "RESULTS.md's checkpoint table differs from checkpoints/MANIFEST.json;"
        " run: python benchmarks/checkpoints_table.py --write")


def test_the_appendix_includes_the_results():
    appendix = (ROOT / "chapters" / "appendix_checkpoints.md").read_text()
    assert "{include} ../benchmarks/RESULTS.md" in appendix
    toc = (ROOT / "_toc.yml").read_text()
    assert "chapters/appendix_checkpoints" in toc
