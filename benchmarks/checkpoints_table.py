"""The checkpoints, their training cost and their recorded evaluations, \
as a markdown table.

Reads ``checkpoints/MANIFEST.json`` (written by ``python -m mlkit train`` and
``python -m mlkit evaluate --record``). ``--write`` replaces the table in
``benchmarks/RESULTS.md`` between ``<!-- checkpoints -->`` and
``<!-- /checkpoints -->``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mlkit.checkpoints import manifest, training_sessions

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def table() -> str:
    rows = [
        "| checkpoint | iterations | training: wall time on each machine "
        "| evaluation (95% CI) |",
        "|---|---|---|---|",
    ]
    for name, e in manifest().items():
        evs = e.get("evaluations") or []
        text = "<br>".join(
            f"{ev['mean']:.2f} ± {ev['ci95']:.2f}"
            f"{'%' if ev['metric'] == 'accuracy' else ' MSE'} "
            f"""({', '.join(
                f'{k}={v}' for k, v in ev['settings'].items() if k != 'seed'
            )}; """
            f"{ev['tasks']} tasks)"
            for ev in evs
        )
        # the metric learners keep their measured results as [mean, ci95] in
        # "metrics"
        pairs = [
            f"{v[0]:.2f} ± {v[1]:.2f}% ({k.replace('_', ' ')})"
            for k, v in (e.get("metrics") or {}).items()
            if isinstance(v, list)
            and len(v) == 2
            and all(isinstance(x, float) for x in v)
        ]
        text = "<br>".join([t for t in [text] + pairs if t]) or "not recorded"
        cost = "<br>".join(
            f"{r['from_iteration']:,}–{r['to_iteration']:,}: "
            f"{r['wall_time_s'] / 3600:.2f} h on {r['machine']}"
            for r in training_sessions(e)
        )
        rows.append(f"| {name} | {e['iterations']:,} | {cost} | {text} |")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    text = table()
    print(text)
    if args.write:
        old = RESULTS.read_text() if RESULTS.exists() else ""
        block = f"<!-- checkpoints -->\n{text}\n<!-- /checkpoints -->"
        if "<!-- checkpoints -->" in old:
            new = re.sub(
                r"<!-- checkpoints -->.*?<!-- /checkpoints -->",
                block,
                old,
                flags=re.S,
            )
        else:
            new = (
                old
                + "\n## Checkpoints and their training cost\n\n"
                + block
                + "\n"
            )
        RESULTS.write_text(new)


if __name__ == "__main__":
    main()
