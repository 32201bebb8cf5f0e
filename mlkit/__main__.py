"""The book's command line: ``python -m mlkit train|evaluate|data|explain``.

Each learner module offers its recipes in a ``RECIPES`` dict (name ->
:class:`Recipe`); this module parses arguments, refuses the ones a recipe does
not use, and dispatches. ``evaluate --json`` ends with one line ``{"name",
"metric": "accuracy" | "mse", "mean", "ci95", "tasks", "settings"}`` (accuracy
in percent).

A user error (a bad or irrelevant flag, missing or corrupt data, an unknown
checkpoint, a checksum that does not match) prints one line ``error: ...`` and
exits with status 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

__all__ = ["Recipe", "recipes", "main", "main_exit"]

_LEARNER_MODULES = (
    "mlkit.maml",
    "mlkit.siamese",
    "mlkit.protonet",
    "mlkit.baselines",
)
PROG = "python -m mlkit"

# The flags each subcommand has, by argparse dest; a recipe names the ones
# it uses.
EVALUATE_FLAGS = frozenset(
    {
        "tasks",
        "ways",
        "shots",
        "steps",
        "alpha",
        "split",
        "lake_runs",
        "seed",
        "protocol",
        "allow_seen",
    }
)
TRAIN_FLAGS = frozenset(
    {"iterations", "seed", "device", "max_minutes", "workers"}
)
DEFAULT_TASKS = 600


@dataclass(frozen=True)
class Recipe:
    """How to train, promote and evaluate one named checkpoint.

    ``train(args)`` trains (resuming when ``args.resume``) into ``runs/``;
    ``evaluate(args)`` returns ``{"metric", "mean", "ci95", "tasks",
    "settings"}``. ``evaluate_flags`` and ``train_flags`` name the optional
    flags the recipe uses (by argparse dest; others are refused);
    ``promote(args)`` replaces the default promotion of the run ``name``;
    ``runs`` names the runs ``train`` writes (default: ``name``);
    ``trained_on`` is the split of the training classes (None: no classes, as
    for sinusoids) and ``test_split`` the split ``evaluate`` tests on by
    default.
    """

    name: str
    summary: str
    train: Callable[[argparse.Namespace], None]
    evaluate: Callable[[argparse.Namespace], dict[str, Any]]
    evaluate_flags: frozenset[str] = EVALUATE_FLAGS
    train_flags: frozenset[str] = TRAIN_FLAGS
    promote: Callable[[argparse.Namespace], Any] | None = None
    trained_on: str | None = None
    test_split: str | None = None
    runs: tuple[str, ...] = field(default=())


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


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (``PROG CMD: error: ...``)
    and status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Shows a flag's default where it has one (not for None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.default not in (None, False, argparse.SUPPRESS)
            and "%(default)" not in text
            and action.option_strings
        ):
            text += " (default: %(default)s)"
        return text


def _integer(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {value}"
            )
        return value

    return parse


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a positive number, got {text!r}"
        ) from None
    if not (0 < value < math.inf):
        raise argparse.ArgumentTypeError(
            f"must be a positive, finite number, got {text}"
        )
    return value


def _device(text: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", text):
        raise argparse.ArgumentTypeError(
            f"must be cpu, cuda, cuda:N or mps, got {text!r}"
        )
    return text


def _recipe_list(table: dict[str, Recipe]) -> str:
    width = max(map(len, table)) + 2
    return "recipes:\n" + "\n".join(
        f"  {n:<{width}}{table[n].summary}" for n in sorted(table)
    )


def _parser(table: dict[str, Recipe]) -> argparse.ArgumentParser:
    from .data import SPLITS
    from .maml import PROTOCOLS

    names = sorted(table)
    listing = _recipe_list(table)
    p = _Parser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        epilog=listing,
        formatter_class=_Help,
    )
    p.add_argument(
        "--debug", action="store_true", help="show the traceback of an error"
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(
        name: str, summary: str, description: str
    ) -> argparse.ArgumentParser:
        c = sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog=listing,
            formatter_class=_Help,
        )
        c.add_argument(
            "name", choices=names, metavar="NAME", help="a recipe (below)"
        )
        return c

    t = command(
        "train",
        "train a checkpoint into runs/NAME/ (resumable)",
        "Train recipe NAME into runs/NAME/ (state and checkpoint, saved every "
        "--save-every seconds). The book's checkpoints/ is never written by "
        "training: --promote copies a finished run there.",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue from runs/NAME/state.pt (on a fresh clone: from "
        "the committed checkpoint)",
    )
    t.add_argument(
        "--promote",
        action="store_true",
        help="train nothing: copy the run's checkpoint into checkpoints/, "
        "keeping the evaluations recorded there",
    )
    t.add_argument(
        "--iterations",
        type=_integer(1),
        help="total iterations (default: the recipe's)",
    )
    t.add_argument(
        "--seed",
        type=_integer(0),
        default=0,
        help="seed of the network and the task stream",
    )
    t.add_argument(
        "--device",
        type=_device,
        default="cpu",
        help="cpu, cuda, cuda:N or mps",
    )
    t.add_argument(
        "--save-every",
        type=_positive,
        default=120.0,
        help="seconds between saves",
    )
    t.add_argument(
        "--threads",
        type=_integer(1),
        help="torch CPU threads (default: the recipe's)",
    )
    t.add_argument(
        "--workers",
        type=_integer(1),
        help="MAML recipes: share each task batch among this many "
        "threads (default: 1)",
    )
    t.add_argument(
        "--max-minutes",
        type=_positive,
        help="stop after this many minutes, saving the state and the "
        "checkpoint reached; --resume goes on from there",
    )

    e = command(
        "evaluate",
        "evaluate a checkpoint on fresh test tasks",
        "Evaluate the book's checkpoint NAME: mean and 95%% confidence "
        "interval "
        "over test tasks. Flags left out take the recipe's test settings.",
    )
    e.add_argument(
        "--tasks",
        type=_integer(1),
        help=f"test tasks (default: {DEFAULT_TASKS})",
    )
    e.add_argument("--ways", type=_integer(2), help="classes per task")
    e.add_argument("--shots", type=_integer(1), help="examples per class")
    e.add_argument(
        "--steps", type=_integer(0), help="inner steps at test time"
    )
    e.add_argument(
        "--alpha", type=_positive, help="inner learning rate at test time"
    )
    e.add_argument("--split", choices=SPLITS, help="test split")
    e.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        help="MAML on Omniglot: the test batch's layout, which BatchNorm's "
        "test-time batch statistics see: 'book' scores 15 queries "
        "per class in one batch, 'paper' one per class as Finn et "
        "al.'s code does (default: book)",
    )
    e.add_argument(
        "--lake-runs",
        action="store_true",
        help="Lake et al.'s 20 official runs (20-way 1-shot)",
    )
    e.add_argument(
        "--allow-seen",
        action="store_true",
        help="evaluate on a split that shares characters with the "
        "training classes (a deliberate check; the output says so)",
    )
    e.add_argument(
        "--seed",
        type=_integer(0),
        help="seed of the test tasks (default: 1)",
    )
    e.add_argument("--threads", type=_integer(1), help="torch CPU threads")
    e.add_argument(
        "--json", action="store_true", help="end with one JSON line"
    )
    e.add_argument(
        "--record",
        action="store_true",
        help="keep the result in the checkpoint's manifest entry",
    )

    d = sub.add_parser(
        "data",
        help="check or fetch the data files the book needs",
        description="check: list every Omniglot file the book needs, "
        "which are "
        "present and verified, and for the missing ones the URLs, "
        "checksums and sizes (status 1 when any is missing or "
        "corrupt). fetch: download the missing ones (checked, "
        "atomic; nothing is left behind on failure).",
        formatter_class=_Help,
    )
    d.add_argument("action", choices=("check", "fetch"))
    d.add_argument(
        "--root",
        help="data root holding omniglot/ (default: "
        "$MLKIT_DATA, else ~/.cache/mlkit)",
    )
    _explain_parser(sub)
    return p


# One line per measure for --help (the docstrings give each protocol).
_MEASURE_SUMMARIES = {
    "attention-removal": "does removing the support image a query attends "
    "to most change the decision more than removing a random one?",
    "inner-loop-cka": "which layers change in the inner loop, for MAML, "
    "first-order MAML and ANIL (debiased CKA, intervals over tasks, "
    "random-network and other-task baselines)",
    "metric-randomisation": "do the Siamese and prototypical nets' saliency "
    "and IG maps change when their layers are re-initialised (Adebayo et al. "
    "2018)?",
    "metric-embeddings": "what the metric learners' embeddings encode "
    "(variance explained by character and alphabet, rank, CKA)",
    "siamese-margins": "a Siamese embedding trained with too small a margin "
    "collapses",
    "support-influence": "leave-one-out influence of each support image on a "
    "task MAML gets wrong",
}


def _first_line(name: str) -> str:
    text = _MEASURE_SUMMARIES.get(name, "see mlkit.interpret.measure")
    return text if text.endswith("?") else text + "."


def _explain_parser(sub: Any) -> None:
    """The ``explain`` subcommand: chapter 6's stored measurements."""
    from .interpret.measure import MEASURES

    x = sub.add_parser(
        "explain",
        help="compute and store one of chapter 6's measurements",
        description="Compute measurement MEASURE (CPU, one thread by "
        "default, seconds to minutes) and store it with this command in "
        "checkpoints/explanations/MEASURE.json, which chapter 6 loads. "
        + " ".join(
            f"{name}: {_first_line(name)}" for name in sorted(MEASURES)
        ),
        formatter_class=_Help,
    )
    x.add_argument(
        "measure",
        choices=sorted(MEASURES),
        metavar="MEASURE",
        help=f"one of {', '.join(sorted(MEASURES))}",
    )
    x.add_argument(
        "--tasks",
        type=_integer(3),
        default=None,
        help="test tasks pooled (default: the measure's own)",
    )
    x.add_argument(
        "--seed",
        type=_integer(0),
        default=None,
        help="seed of the first task (default: the measure's own)",
    )
    x.add_argument(
        "--method",
        choices=("jackknife", "bootstrap"),
        default=None,
        help="interval over tasks: delete-one-task jackknife or "
        "percentile bootstrap",
    )
    x.add_argument(
        "--boot",
        type=_integer(10),
        default=None,
        help="bootstrap resamples (with --method bootstrap)",
    )
    x.add_argument(
        "--threads", type=_integer(1), default=1, help="torch threads"
    )
    x.add_argument(
        "--out",
        help="directory to write to (default: checkpoints/explanations)",
    )


def _explain(args: argparse.Namespace, argv: list[str]) -> int:
    import shlex

    import torch

    from .interpret import measure

    torch.set_num_threads(args.threads)
    # Only the options given: each measure has its own defaults.
    given = {
        "tasks": args.tasks,
        "method": args.method,
        "n_boot": args.boot,
        "seed": args.seed,
    }
    options = {k: v for k, v in given.items() if v is not None}
    result = measure.MEASURES[args.measure](
        **options, progress=lambda text: print(text, flush=True)
    )
    path = measure.save(
        result,
        shlex.join(["python", "-m", "mlkit", *argv]),
        None if args.out is None else args.out,
    )
    print(f"wrote {path}")
    return 0


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _given(args: argparse.Namespace, dests: frozenset[str]) -> list[str]:
    # 0 is a value the user gave (0 == False, so no `in (None, False)` here)
    return sorted(
        d
        for d in dests
        if getattr(args, d, None) is not None
        and getattr(args, d, None) is not False
    )


def _check_flags(args: argparse.Namespace, table: dict[str, Recipe]) -> None:
    """Refuse flags the recipe does not use, naming the recipes that take
    them."""
    recipe = table[args.name]
    if args.command == "train":
        if args.promote:
            extra = _given(args, TRAIN_FLAGS - {"seed", "device"})
            if extra or args.resume:
                flags = [_flag(d) for d in extra] + (
                    ["--resume"] * args.resume
                )
                raise ValueError(
                    f"--promote copies a finished run and trains "
                    f"nothing; drop {', '.join(flags)}"
                )
            return
        allowed, known = recipe.train_flags, TRAIN_FLAGS
    else:
        allowed, known = recipe.evaluate_flags, EVALUATE_FLAGS
    for dest in _given(args, known - allowed):
        takers = sorted(
            n
            for n, r in table.items()
            if dest
            in (r.train_flags if args.command == "train" else r.evaluate_flags)
        )
        raise ValueError(
            f"{_flag(dest)} is not used by {args.name}; recipes that "
            f"take it: {', '.join(takers) or 'none'}"
        )
    if args.command == "evaluate" and args.lake_runs:
        fixed = _given(
            args, frozenset({"tasks", "ways", "shots", "split", "seed"})
        )
        if fixed:
            raise ValueError(
                f"--lake-runs are Lake et al.'s 20 fixed 20-way 1-shot "
                f"runs; drop {', '.join(map(_flag, fixed))}"
            )


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    import torch

    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= count:
            raise ValueError(
                f"--device {device}: this machine has "
                f"{count} CUDA device(s); use --device cpu"
            )
    elif not torch.backends.mps.is_available():
        raise ValueError("--device mps: no Apple GPU here; use --device cpu")


def _train(args: argparse.Namespace, recipe: Recipe) -> None:
    from .checkpoints import CHECKPOINT_DIR, promote, run_dir

    runs = recipe.runs or (recipe.name,)
    if args.promote:
        if recipe.promote is not None:
            for path in recipe.promote(args):
                print(f"promoted: {path}")
            return
        done = promote(recipe.name)
        entry = done["entry"]
        print(
            f"promoted run {run_dir(recipe.name)} ({entry['iterations']:,} "
            f"iterations) to {done['path']}"
        )
        for row in done["stale"]:
            print(
                f"  recorded on other weights, re-measure with: "
                f"{row['command']}"
            )
        return
    if args.workers is None:
        args.workers = 1
    _check_device(args.device)
    if not args.resume:
        from .checkpoints import load_state

        for name in runs:
            state = load_state(name)
            if state is not None:  # never start over a run's work silently
                raise ValueError(
                    f"run {run_dir(name)} exists (iteration "
                    f"{state['iteration']:,}): add --resume to continue it, "
                    f"or delete that folder to start "
                    f"again"
                )
    recipe.train(args)
    for name in runs:
        print(
            f"{name}: the run is in {run_dir(name)}; {CHECKPOINT_DIR} is "
            f"unchanged ({PROG} train {recipe.name} --promote copies it there)"
        )


def _seen_characters(args: argparse.Namespace, recipe: Recipe) -> int | None:
    """How many test characters the checkpoint trained on; refuse any without
    --allow-seen, naming the splits that are clean. None for sinusoid recipes.
    """
    from .checkpoints import manifest
    from .data import SPLITS, shared_characters, split_char_ids

    entry = manifest().get(recipe.name, {})
    trained = (entry.get("config") or {}).get("split") or recipe.trained_on
    if not trained:
        return None
    # Lake et al.'s runs are drawn from the evaluation alphabets
    split = (
        "evaluation" if args.lake_runs else (args.split or recipe.test_split)
    )
    seen = shared_characters(trained, split)
    if seen and not args.allow_seen:
        clean = [s for s in SPLITS if not shared_characters(trained, s)]
        raise ValueError(
            f"{seen} of the {len(split_char_ids(split))} characters of split "
            f"{split} are training characters of {recipe.name} (trained on "
            f"{trained}); test on {' or '.join(clean)}, or add --allow-seen "
            f"for a "
            f"deliberate check on seen classes"
        )
    return seen


def _evaluate(
    args: argparse.Namespace, recipe: Recipe, argv: list[str]
) -> None:
    from .checkpoints import manifest

    if args.record and recipe.name not in manifest():
        # fail before a long evaluation, not after it
        raise ValueError(
            f"--record keeps the result in the checkpoint's manifest "
            f"entry, and {recipe.name} has none"
        )
    if args.tasks is None:
        args.tasks = DEFAULT_TASKS
    if args.seed is None:
        args.seed = 1
    seen = _seen_characters(args, recipe)
    if any(n not in manifest() for n in recipe.runs or (recipe.name,)):
        # a recipe whose checkpoint has not been trained and promoted yet
        raise ValueError(
            f"{recipe.name} has no checkpoint yet: train it with "
            f"'{PROG} train {recipe.name}', then '{PROG} train "
            f"{recipe.name} --promote'"
        )
    result = recipe.evaluate(args)
    unit = "%" if result["metric"] == "accuracy" else ""
    label = " on SEEN CLASSES (training characters)" if seen else ""
    print(
        f"{args.name}: {result['metric']} {result['mean']:.2f}{unit} "
        f"± {result['ci95']:.2f}{unit} (95% CI) over {result['tasks']} "
        f"tasks{label}"
    )
    if seen:
        result.setdefault("settings", {})["seen_characters"] = seen
    if "median" in result and result["metric"] == "mse":
        # one diverging task can own a mean of squared errors: show the middle
        low, high = result["iqr"]
        print(
            f"{args.name}: median {result['median']:.3f}, interquartile range "
            f"{low:.3f}-{high:.3f}"
        )
    if args.record:
        from .checkpoints import record_evaluation

        record_evaluation(
            args.name, result, command=f"{PROG} " + " ".join(argv)
        )
    if args.json:
        line = {
            k: result[k]
            for k in ("metric", "mean", "ci95", "median", "iqr", "tasks")
            if k in result
        }
        print(
            json.dumps(
                {
                    "name": args.name,
                    **line,
                    "settings": result.get("settings", {}),
                }
            )
        )


def _data(args: argparse.Namespace) -> int:
    from . import data

    if args.action == "fetch":
        fetched = data.fetch_data(args.root)
        for path in fetched:
            print(f"fetched {path}")
        if not fetched:
            print(
                f"nothing to fetch: {data.omniglot_dir(args.root)} has every "
                f"file the book needs"
            )
    rows = data.check_data(args.root)
    for row in rows:
        print(row["message"])
    return 0 if all(row["verified"] for row in rows) else 1


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv[1:]``); return
    the status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    table = recipes()
    args = _parser(table).parse_args(argv)
    from .checkpoints import CheckpointNotFoundError

    try:
        if args.command == "data":
            return _data(args)
        if args.command == "explain":
            return _explain(args, argv)
        _check_flags(args, table)
        if getattr(args, "threads", None):
            import torch

            torch.set_num_threads(args.threads)
        if args.command == "train":
            _train(args, table[args.name])
        else:
            _evaluate(args, table[args.name], argv)
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, CheckpointNotFoundError) as error:
        if args.debug:
            raise
        print(
            f"{PROG} {args.command}: error: {_one_line(error)}",
            file=sys.stderr,
        )
        return 2
    return 0


def main_exit() -> NoReturn:
    """The ``mlkit`` console script: :func:`main`, then exit with its
    status."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
