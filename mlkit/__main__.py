"""The book's command line: ``python -m mlkit train NAME`` and ``python -m mlkit evaluate NAME``.

Each learner module offers its recipes in a ``RECIPES`` dict (name -> :class:`Recipe`); this
module only parses arguments and dispatches. ``evaluate --json`` ends with one line
``{"name": ..., "metric": "accuracy" | "mse", "mean": ..., "ci95": ..., "tasks": ...}``
(accuracy in percent).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Recipe", "recipes", "main"]

_LEARNER_MODULES = ("mlkit.maml", "mlkit.siamese", "mlkit.protonet")


@dataclass(frozen=True)
class Recipe:
    """How to train and evaluate one named checkpoint.

    ``train(args)`` trains (resuming when ``args.resume``) and writes the checkpoint;
    ``evaluate(args)`` returns ``{"metric", "mean", "ci95", "tasks"}`` and may print a table.
    """

    name: str
    summary: str
    train: Callable[[argparse.Namespace], None]
    evaluate: Callable[[argparse.Namespace], dict[str, Any]]


def recipes() -> dict[str, Recipe]:
    """Every recipe the learner modules offer, by name."""
    found: dict[str, Recipe] = {}
    for mod in _LEARNER_MODULES:
        try:
            module = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            continue
        found.update(getattr(module, "RECIPES", {}))
    return found


def _parser(names: list[str]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlkit", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a checkpoint (resumable)")
    t.add_argument("name", choices=names)
    t.add_argument("--resume", action="store_true", help="continue from runs/NAME/state.pt")
    t.add_argument("--iterations", type=int, default=None, help="total meta-iterations")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--save-every", type=float, default=120.0, help="seconds between saves")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--workers", type=int, default=1,
                   help="MAML recipes: share each task batch among this many threads")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes, saving the state and the checkpoint "
                        "reached; --resume goes on from there")
    e = sub.add_parser("evaluate", help="evaluate a checkpoint on fresh test tasks")
    e.add_argument("name", choices=names)
    e.add_argument("--tasks", type=int, default=600)
    e.add_argument("--ways", type=int, default=None)
    e.add_argument("--shots", type=int, default=None)
    e.add_argument("--steps", type=int, default=None, help="inner steps at test time")
    e.add_argument("--alpha", type=float, default=None, help="inner learning rate at test time")
    e.add_argument("--split", default=None, help="test split (finn-test, evaluation)")
    e.add_argument("--lake-runs", action="store_true", help="Lake et al.'s 20 official runs")
    e.add_argument("--seed", type=int, default=1)
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    e.add_argument("--json", action="store_true", help="end with one JSON line")
    e.add_argument("--record", action="store_true",
                   help="keep the result in the checkpoint's manifest entry")
    return p


def main(argv: list[str] | None = None) -> int:
    table = recipes()
    args = _parser(sorted(table)).parse_args(argv)
    recipe = table[args.name]
    if getattr(args, "max_minutes", None) is not None and not (
            0 < args.max_minutes < float("inf")):
        raise SystemExit(f"--max-minutes must be positive and finite, got {args.max_minutes}")
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    if args.command == "train":
        recipe.train(args)
        return 0
    if args.record:
        from .checkpoints import manifest

        if args.name not in manifest():  # fail before a long evaluation, not after it
            raise SystemExit(f"--record keeps the result in the checkpoint's manifest entry, "
                             f"and {args.name} has none")
    result = recipe.evaluate(args)
    line = {"name": args.name, "metric": result["metric"], "mean": result["mean"],
            "ci95": result["ci95"], "tasks": result["tasks"]}
    unit = "%" if result["metric"] == "accuracy" else ""
    print(f"{args.name}: {result['metric']} {result['mean']:.2f}{unit} "
          f"± {result['ci95']:.2f}{unit} (95% CI) over {result['tasks']} tasks")
    if args.record:
        from .checkpoints import record_evaluation

        record_evaluation(args.name, result, command="python -m mlkit " + " ".join(
            sys.argv[1:] if argv is None else argv))
    if args.json:
        print(json.dumps(line))
    return 0


if __name__ == "__main__":
    sys.exit(main())
