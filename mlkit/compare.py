"""Head to head: every learner of the book on the same test episodes.

In the manner of the UvA deep-learning tutorial on meta-learning (Lippe 2022):
MAML, first-order MAML, ANIL, a Siamese net, a prototypical net and a
pretrained network fine-tuned per task (Chen et al. 2019, see
:mod:`mlkit.baselines`) classify the queries of the very same 5-way episodes
at K = 1, 2, 5 and 10 shots. Each number is the mean query accuracy over
tasks with its 95% interval (:func:`mlkit.stats.mean_ci95`).

Test classes. The MAML checkpoints were meta-trained on Finn et al.'s random
character split (``finn-train``), which covers every alphabet; the Siamese
and prototypical nets on Lake's 30 background alphabets; the fine-tuning
baseline on 25 of them (``background-train``). The test classes are the
evaluation-alphabet characters outside ``finn-train`` (173 of 659, drawn as
they are, no rotations): no learner has seen one. :func:`check_unseen`
refuses any learner whose training split shares a character with the test
pool.

``python -m mlkit.compare`` writes ``checkpoints/head_to_head.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from .data import (
    DRAWINGS,
    SPLITS,
    ClassPool,
    Episode,
    EpisodeSampler,
    _check_choice,
    _check_count,
    omniglot_classes,
    split_char_ids,
)
from .checkpoints import CHECKPOINT_DIR
from .stats import mean_ci95

__all__ = [
    "SHOTS",
    "Learner",
    "unseen_pool",
    "check_unseen",
    "sample_episodes",
    "episode_sha256",
    "run_comparison",
    "maml_learner",
    "embedding_learner",
    "pixel_learner",
    "finetune_learner",
    "choose_finetune_settings",
    "default_learners",
    "RESULT_PATH",
    "load_result",
    "summary_table",
    "paired_difference",
]

SHOTS = (1, 2, 5, 10)
# K = 10 leaves 10 of an Omniglot character's 20 drawings: the same number
# of queries at every K keeps the query batch (and BatchNorm's view of it)
# the same size across K.
QUERIES = 10
RESULT_PATH = CHECKPOINT_DIR / "head_to_head.json"

# predict(support_x (T, NK, 1, S, S), support_y (T, NK), query_x (T, NQ, 1,
# S, S), n_way) -> predicted query labels (T, NQ); never sees query labels.
Predict = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, int], torch.Tensor
]


@dataclass(frozen=True)
class Learner:
    """One contestant: a name, a label in words, the split of the classes it
    trained on (or chose settings on: every one of them is checked against
    the test pool), how it adapts at test time, and its predictor."""

    name: str
    label: str
    trained_on: tuple[str, ...]
    test_time: str
    predict: Predict = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(
                f"name must be a non-empty string, got {self.name!r}"
            )
        if isinstance(self.trained_on, str) or not all(
            s in SPLITS for s in self.trained_on
        ):
            raise ValueError(
                f"trained_on must be a tuple of splits from "
                f"{list(SPLITS)}, got {self.trained_on!r}"
            )
        if not callable(self.predict):
            raise ValueError(
                f"predict must be a callable, got {self.predict!r}"
            )


# ---------------------------------------------------------------- test classes


def unseen_pool(
    trained_on: Sequence[str] = ("finn-train", "background"),
    *,
    test_split: str = "evaluation",
    seed: int = 0,
    pool: ClassPool | None = None,
) -> ClassPool:
    """The characters of ``test_split`` that are in none of the
    ``trained_on`` splits, each as one class (no rotations).

    The default gives the 173 evaluation-alphabet characters outside Finn
    et al.'s training split (``seed`` picks that split as in
    :func:`mlkit.data.split_char_ids`). ``pool`` replaces the loaded
    ``test_split`` pool (for tests).
    """
    test_split = _check_choice("test_split", test_split, SPLITS)
    if isinstance(trained_on, str) or not isinstance(trained_on, Sequence):
        raise ValueError(
            f"trained_on must be a list of splits from "
            f"{list(SPLITS)}, got {trained_on!r}"
        )
    for s in trained_on:
        _check_choice("trained_on", s, SPLITS)
    if pool is None:
        pool = omniglot_classes(test_split, rotations=False, seed=seed)
    elif not isinstance(pool, ClassPool):
        raise ValueError(
            f"pool must be None or a ClassPool, got {type(pool).__name__}"
        )
    seen = np.concatenate(
        [split_char_ids(s, seed) for s in trained_on]
        or [np.array([], np.int64)]
    )
    keep = np.flatnonzero(~np.isin(pool.char_ids, seen))
    if len(keep) < 2:
        raise ValueError(
            f"trained_on {list(trained_on)} leave fewer than 2 "
            f"characters of {test_split}"
        )
    return ClassPool(
        name=f"{test_split} minus {'+'.join(trained_on)}",
        images=pool.images[keep],
        char_ids=pool.char_ids[keep],
        char_index=np.arange(len(keep)),
        rotation=np.zeros(len(keep), np.int64),
    )


def check_unseen(
    pool: ClassPool, learners: Sequence[Learner], *, seed: int = 0
) -> None:
    """Raise ``ValueError`` when a learner trained on a character of
    ``pool``, naming the learner, the split and how many are shared."""
    if not isinstance(pool, ClassPool):
        raise ValueError(
            f"pool must be a ClassPool, got {type(pool).__name__}"
        )
    for learner in learners:
        if not isinstance(learner, Learner):
            raise ValueError(
                f"learners must hold Learner objects, got "
                f"{type(learner).__name__}"
            )
        for split in learner.trained_on:
            shared = int(
                np.isin(pool.char_ids, split_char_ids(split, seed)).sum()
            )
            if shared:
                raise ValueError(
                    f"learners: {learner.name} trained on {split}, which "
                    f"holds {shared} of the {len(pool.char_ids)} test "
                    f"characters; test on unseen classes only "
                    f"(unseen_pool)"
                )


# ------------------------------------------------------------------ episodes


def sample_episodes(
    pool: ClassPool,
    shots: Sequence[int] = SHOTS,
    n_tasks: int = 400,
    *,
    n_way: int = 5,
    q_queries: int = QUERIES,
    seed: int = 1,
) -> dict[int, Episode]:
    """One batch of ``n_tasks`` N-way K-shot episodes per K in ``shots``,
    ``q_queries`` queries per class; the stream for K is seeded with
    ``[seed, K]``, so every learner and every rerun gets the same tasks."""
    if (
        isinstance(shots, (str, bytes))
        or not isinstance(shots, Sequence)
        or (len(shots) == 0)
    ):
        raise ValueError(
            f"shots must be a non-empty list of shot counts, got {shots!r}"
        )
    q_queries = _check_count("q_queries", q_queries, 1)
    for k in shots:
        _check_count("shots", k, 1, DRAWINGS - q_queries)
    n_tasks = _check_count("n_tasks", n_tasks)
    seed = _check_count("seed", seed, 0)
    return {
        int(k): EpisodeSampler(
            pool,
            n_way,
            int(k),
            q_queries,
            seed=np.random.default_rng([seed, int(k)]),
        ).batch(n_tasks)
        for k in shots
    }


def episode_sha256(episodes: Episode) -> str:
    """A fingerprint of a batch of episodes (images, labels, classes)."""
    h = hashlib.sha256()
    for t in (
        episodes.support_x,
        episodes.support_y,
        episodes.query_x,
        episodes.query_y,
    ):
        h.update(t.contiguous().numpy().tobytes())
    h.update(np.ascontiguousarray(episodes.classes).tobytes())
    return h.hexdigest()


def _chunks(ep: Episode, size: int):
    for i in range(0, ep.support_x.shape[0], size):
        yield (
            ep.support_x[i : i + size],
            ep.support_y[i : i + size],
            ep.query_x[i : i + size],
            ep.query_y[i : i + size],
        )


def run_comparison(
    learners: Sequence[Learner],
    episodes: Mapping[int, Episode],
    *,
    batch_size: int = 50,
    progress: bool = False,
) -> dict[str, Any]:
    """Every learner on every batch of ``episodes`` (from
    :func:`sample_episodes`): per learner and K the mean query accuracy in
    percent with its 95% interval over tasks, the median, the per-task
    accuracies and the seconds it took.

    Returns ``{learner name: {"accuracy": {K: {...}}, "seconds": {K: s}}}``
    (K as a string, as JSON keys are).
    """
    if (
        isinstance(learners, Learner)
        or not isinstance(learners, Sequence)
        or not learners
    ):
        raise ValueError(
            "learners must be a non-empty list of Learner objects"
        )
    if not isinstance(episodes, Mapping) or not episodes:
        raise ValueError(
            "episodes must be a non-empty dict {K: Episode} "
            "(sample_episodes)"
        )
    batch_size = _check_count("batch_size", batch_size)
    names = [lr.name for lr in learners]
    if len(set(names)) != len(names):
        raise ValueError(f"learners must have distinct names, got {names}")
    out: dict[str, Any] = {}
    for learner in learners:
        if not isinstance(learner, Learner):
            raise ValueError(
                f"learners must hold Learner objects, got "
                f"{type(learner).__name__}"
            )
        acc, secs = {}, {}
        for k, ep in episodes.items():
            if not isinstance(ep, Episode):
                raise ValueError(
                    f"episodes[{k}] must be an Episode batch, "
                    f"got {type(ep).__name__}"
                )
            start = time.process_time()
            scores = []
            for sx, sy, qx, qy in _chunks(ep, batch_size):
                pred = learner.predict(sx, sy, qx, ep.n_way)
                if tuple(pred.shape) != tuple(qy.shape):
                    raise ValueError(
                        f"{learner.name} predicted shape "
                        f"{tuple(pred.shape)}, expected "
                        f"{tuple(qy.shape)}"
                    )
                scores.append(100.0 * (pred == qy).float().mean(1).numpy())
            secs[str(k)] = round(time.process_time() - start, 2)
            s = np.concatenate(scores)
            mean, ci = mean_ci95(s)
            acc[str(k)] = {
                "mean": mean,
                "ci95": ci,
                "median": float(np.median(s)),
                "tasks": int(len(s)),
                "per_task": [round(float(v), 2) for v in s],
            }
            if progress:
                print(
                    f"{learner.name:>10s} K={k:<2d} {mean:6.2f} "
                    f"± {ci:.2f}  ({secs[str(k)]:.1f} s)",
                    flush=True,
                )
        out[learner.name] = {
            "label": learner.label,
            "trained_on": list(learner.trained_on),
            "test_time": learner.test_time,
            "accuracy": acc,
            "seconds": secs,
        }
    return out


# ---------------------------------------------------------------- the learners


def maml_learner(name: str, label: str) -> Learner:
    """A MAML-family checkpoint (:func:`mlkit.maml.load_model`) adapting
    with its recipe's test-time steps and rate on each support set (inner
    loss for K shots: Finn's summed cross-entropy over K), predicting the
    query batch with the adapted weights."""
    from . import maml

    model, config, _ = maml.load_model(name)
    names = maml._adapt_names(model, config)

    def predict(
        sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        inner, outer = maml._losses(config, sx.shape[1] // n_way)
        # the labels of the queries are never read: a placeholder for the
        # query loss that query_loss computes and we drop
        batch = SimpleNamespace(
            support_x=sx,
            support_y=sy,
            query_x=qx,
            query_y=torch.zeros(qx.shape[:2], dtype=torch.long),
        )
        _, out = maml.query_loss(
            model,
            batch,
            loss_fn=outer,
            inner_loss_fn=inner,
            inner_steps=config.test_inner_steps,
            alpha=config.alpha,
            first_order=True,
            adapt_names=names,
        )
        return out.detach().argmax(-1)

    what = "head only" if config.order == "anil" else "all weights"
    return Learner(
        name,
        label,
        (config.split,),
        f"{config.test_inner_steps} gradient steps on "
        f"{what}, alpha {config.alpha:g}",
        predict,
    )


def _embed(
    embed: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    cache: dict[bytes, torch.Tensor],
) -> torch.Tensor:
    """Embeddings ``(T, n, D)`` of ``x (T, n, 1, S, S)``; an image met
    before is looked up (exact: each image is embedded alone, so its
    embedding does not depend on the batch)."""
    from .siamese import embed_images

    t, n = x.shape[:2]
    flat = x.reshape(t * n, *x.shape[2:])
    keys = [img.numpy().tobytes() for img in flat]
    first = dict(zip(keys, range(len(keys))))  # one index per image
    new = [i for i in first.values() if keys[i] not in cache]
    if new:
        z = embed_images(embed, flat[new])
        cache.update(zip((keys[i] for i in new), z))
    return torch.stack([cache[key] for key in keys]).reshape(t, n, -1)


def embedding_learner(
    name: str,
    label: str,
    embed: Callable[[torch.Tensor], torch.Tensor],
    trained_on: Sequence[str],
    method: str,
    *,
    space: str = "the embedding",
) -> Learner:
    """A learner that classifies by distances of embeddings, each image
    embedded alone (``method="nearest"``: the label of the nearest support
    embedding, Koch et al.'s rule; ``"prototype"``: the nearest class mean,
    Snell et al.'s)."""
    method = _check_choice("method", method, ("nearest", "prototype"))
    cache: dict[bytes, torch.Tensor] = {}

    def predict(
        sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        zs, zq = _embed(embed, sx, cache), _embed(embed, qx, cache)
        if method == "prototype":
            onehot = torch.nn.functional.one_hot(sy, n_way).to(zs.dtype)
            protos = onehot.transpose(1, 2) @ zs / onehot.sum(1)[..., None]
            return torch.cdist(zq, protos).argmin(-1)
        nearest = torch.cdist(zq, zs).argmin(-1)
        return torch.gather(sy, 1, nearest)

    rule = (
        "nearest class mean"
        if method == "prototype"
        else "nearest support image"
    )
    return Learner(
        name,
        label,
        tuple(trained_on),
        f"no training: {rule} in {space}",
        predict,
    )


def pixel_learner() -> Learner:
    """The floor: the nearest support image in raw pixels (nothing
    learned)."""
    return embedding_learner(
        "pixels",
        "nearest neighbour on pixels",
        lambda x: x.flatten(1),
        (),
        "nearest",
        space="pixel space",
    )


def finetune_learner(
    net: Any,
    trained_on: Sequence[str],
    *,
    steps: int = 100,
    lr: float = 0.01,
    mode: str = "head",
) -> Learner:
    """The pretrained network fine-tuned on each support set
    (:func:`mlkit.baselines.finetune_predict`)."""
    from .baselines import finetune_predict

    def predict(
        sx: torch.Tensor, sy: torch.Tensor, qx: torch.Tensor, n_way: int
    ) -> torch.Tensor:
        return finetune_predict(
            net, sx, sy, qx, n_way, mode=mode, steps=steps, lr=lr
        ).argmax(-1)

    what = (
        "a new linear head on frozen features"
        if mode == "head"
        else "every weight and a new head"
    )
    return Learner(
        "finetune",
        "pretrained network, fine-tuned",
        tuple(trained_on),
        f"{steps} Adam steps (rate {lr:g}) on {what}",
        predict,
    )


def choose_finetune_settings(
    net: Any,
    *,
    lrs: Sequence[float] = (0.003, 0.01, 0.03, 0.1),
    steps: Sequence[int] = (50, 100, 300),
    shots: Sequence[int] = (1, 5),
    n_tasks: int = 100,
    seed: int = 7,
    pool: ClassPool | None = None,
) -> dict[str, Any]:
    """Choose the head-only fine-tuning rate and step count on the
    validation alphabets (never on test classes): the pair with the best
    mean query accuracy over ``shots``. Returns ``{"lr", "steps", "grid":
    [{"lr", "steps", "accuracy"}], "split", "tasks"}``."""
    from .baselines import episode_features, fit_linear_head

    if pool is None:
        pool = omniglot_classes("validation", rotations=False)
    grid = []
    feats = []
    for k, ep in sample_episodes(pool, shots, n_tasks, seed=seed).items():
        feats.append(
            (
                episode_features(net, ep.support_x),
                ep.support_y,
                episode_features(net, ep.query_x),
                ep.query_y,
            )
        )
    for lr in lrs:
        for n in steps:
            accs = []
            for zs, sy, zq, qy in feats:
                w, b = fit_linear_head(zs, sy, 5, steps=n, lr=lr)
                pred = (torch.bmm(zq, w) + b[:, None]).argmax(-1)
                accs.append(100.0 * float((pred == qy).float().mean()))
            grid.append(
                {
                    "lr": lr,
                    "steps": n,
                    "accuracy": round(float(np.mean(accs)), 2),
                }
            )
    best = max(grid, key=lambda r: r["accuracy"])
    return {
        "lr": best["lr"],
        "steps": best["steps"],
        "grid": grid,
        "split": pool.name,
        "shots": list(shots),
        "tasks": n_tasks,
    }


def default_learners(
    *, finetune: Mapping[str, Any] | None = None
) -> list[Learner]:
    """The book's contestants, loaded from ``checkpoints/``."""
    from . import protonet, siamese
    from .baselines import load_pretrained

    siam, s_entry = siamese.load_siamese("siamese-omniglot")
    proto, p_entry = protonet.load_protonet("protonet-omniglot")
    net, f_entry = load_pretrained()
    ft = dict(finetune or {})
    return [
        maml_learner("maml-omniglot-5w1s", "MAML"),
        maml_learner("fomaml-omniglot-5w1s", "first-order MAML"),
        maml_learner("anil-omniglot-5w1s", "ANIL"),
        # the same recipe meta-trained on the metric learners' classes
        maml_learner("anil-omniglot-5w1s-background", "ANIL, background"),
        embedding_learner(
            "siamese",
            "Siamese net",
            siam.embedding,
            (s_entry["config"]["split"],),
            "nearest",
        ),
        embedding_learner(
            "protonet",
            "prototypical net",
            proto,
            (p_entry["config"]["split"],),
            "prototype",
        ),
        finetune_learner(
            net,
            (f_entry["config"]["split"], "validation"),
            steps=int(ft.get("steps", 100)),
            lr=float(ft.get("lr", 0.01)),
        ),
        pixel_learner(),
    ]


PROTOCOL = (
    "5-way episodes at K = 1, 2, 5, 10 shots, 10 queries per class at every "
    "K, the same episodes for every learner (seed [seed, K]). Test classes: "
    "the evaluation-alphabet characters outside Finn et al.'s training "
    "split (finn-train, seed 0), without rotations: unseen by every "
    "learner (MAML, first-order MAML and ANIL meta-trained on finn-train; "
    "a second ANIL, Siamese and prototypical nets on the 30 background "
    "alphabets; the "
    "pretrained network on 25 of them, background-train, its fine-tuning "
    "rate and steps chosen on the other 5, validation). BatchNorm: the MAML "
    "family and the pretrained network use batch statistics (transductive)"
    ": the support set (5K images) is one batch when adapting, the query "
    "set (50 images) one batch when predicting; the Siamese and "
    "prototypical nets use running statistics (each image embedded alone). "
    "Intervals: 95% over tasks, 1.96 sd / sqrt(tasks)."
)

CAVEATS = (
    "The Siamese recipe was chosen by its score on Lake's 20 runs (drawn "
    "from the evaluation alphabets) before the validation split existed, "
    "so its numbers may be a little optimistic. The MAML family was "
    "meta-trained at K = 1 only and adapts at every K with its recipe's "
    "1-shot test settings (steps, rate). Each learner is one trained run "
    "(one seed): the intervals cover the test tasks, not training runs."
)


def load_result(path: str | Path | None = None) -> dict[str, Any]:
    """The stored comparison (default ``checkpoints/head_to_head.json``)."""
    path = Path(RESULT_PATH if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no stored comparison at {path}: run "
            f"`python -m mlkit.compare`"
        )
    return json.loads(path.read_text())


def paired_difference(
    result: Mapping[str, Any], first: str, second: str, shots: int
) -> tuple[float, float]:
    """Mean of ``first`` minus ``second``'s per-task accuracy at ``shots``,
    with its 95% interval: the two ran on the same episodes, so the paired
    difference has a narrower interval than the two means' intervals
    suggest."""
    table = result.get("learners") if isinstance(result, Mapping) else None
    if not isinstance(table, Mapping):
        raise ValueError("result must hold 'learners' (as stored)")
    for name, value in (("first", first), ("second", second)):
        if value not in table:
            raise ValueError(
                f"{name} must be one of {list(table)}, got {value!r}"
            )
    key = str(shots)
    if key not in table[first]["accuracy"]:
        raise ValueError(
            f"shots must be one of "
            f"{sorted(table[first]['accuracy'], key=int)}, "
            f"got {shots!r}"
        )
    a = np.asarray(table[first]["accuracy"][key]["per_task"])
    b = np.asarray(table[second]["accuracy"][key]["per_task"])
    return mean_ci95(a - b)


def summary_table(result: Mapping[str, Any]) -> str:
    """The comparison as a text table, one row per learner, ``mean ± 95%
    interval`` per K (fits 79 characters for up to four K)."""
    table = result.get("learners") if isinstance(result, Mapping) else None
    if not isinstance(table, Mapping) or not table:
        raise ValueError(
            "result must hold 'learners' (run_comparison's "
            "output under that key, as stored)"
        )
    shots = sorted(
        {k for row in table.values() for k in row["accuracy"]}, key=int
    )
    lines = [f"{'learner':<31}" + "".join(f"{'K = ' + k:>12}" for k in shots)]
    for name, row in table.items():
        acc = row["accuracy"]
        cells = "".join(
            (
                f"{acc[k]['mean']:6.1f} ± {acc[k]['ci95']:3.1f}"
                if k in acc
                else f"{'-':>12}"
            )
            for k in shots
        )
        lines.append(f"{row.get('label', name)[:30]:<31}{cells}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlkit.compare [--tasks N] [--seed S] [--out PATH]``."""
    p = argparse.ArgumentParser(
        prog="python -m mlkit.compare", description=__doc__.splitlines()[0]
    )
    p.add_argument("--tasks", type=int, default=400)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=str(RESULT_PATH))
    args = p.parse_args(sys.argv[1:] if argv is None else list(argv))
    torch.set_num_threads(1)
    torch.manual_seed(0)
    start = time.monotonic()
    from .baselines import load_pretrained
    from .checkpoints import machine_description

    net, _ = load_pretrained()
    t0 = time.process_time()
    chosen = choose_finetune_settings(net)
    chosen["seconds"] = round(time.process_time() - t0, 1)
    print(
        f"fine-tuning settings chosen on validation: lr {chosen['lr']}, "
        f"steps {chosen['steps']}",
        flush=True,
    )
    learners = default_learners(finetune=chosen)
    pool = unseen_pool()
    check_unseen(pool, learners)
    episodes = sample_episodes(pool, SHOTS, args.tasks, seed=args.seed)
    results = run_comparison(learners, episodes, progress=True)
    argv_text = " ".join(sys.argv[1:] if argv is None else list(argv))
    out = {
        "command": f"python -m mlkit.compare {argv_text}".strip(),
        "protocol": PROTOCOL,
        "caveats": CAVEATS,
        "test_pool": {
            "classes": len(pool),
            "name": pool.name,
            "rotations": False,
        },
        "n_way": 5,
        "shots": list(SHOTS),
        "queries_per_class": QUERIES,
        "tasks_per_shot": args.tasks,
        "seed": args.seed,
        "episodes_sha256": {
            str(k): episode_sha256(e) for k, e in episodes.items()
        },
        "finetune_selection": chosen,
        "learners": results,
        "wall_time_s": round(time.monotonic() - start, 1),
        "machine": machine_description() + ", 1 torch thread",
        "date": time.strftime("%Y-%m-%d"),
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} in {out['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
