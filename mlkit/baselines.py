r"""A non-meta-learned baseline: pretrain a network, then fine-tune it per
task.

Chen, Liu, Kira, Wang & Huang (2019), *A Closer Look at Few-shot
Classification* ("Baseline"): train a feature extractor
:math:`f_\theta` by ordinary supervised classification on the base classes
(no episodes), then for each test task throw away the base classifier and fit
a new linear head :math:`W, b` on the support set with the features frozen,

.. math::  \min_{W, b} \; \frac{1}{NK} \sum_{(x, y) \in \mathcal{S}}
           -\log \operatorname{softmax}(W f_\theta(x) + b)_y ,

or fine-tune every parameter (``mode="all"``). The network is Finn et al.'s
Omniglot architecture (:class:`~mlkit.nets.ConvNet`, BatchNorm on batch
statistics), so the baseline differs from MAML only in how
:math:`\theta` was trained.

BatchNorm layout at test time (the same as :func:`mlkit.maml.evaluate`):
the support features use the statistics of the support batch (:math:`NK`
images), the query features those of the query batch (:math:`NQ` images).

``python -m mlkit.baselines`` pretrains the book's checkpoint
``pretrained-omniglot`` into ``checkpoints/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_checkpoint, save_checkpoint
from .data import (
    DRAWINGS,
    SPLITS,
    ClassPool,
    _check_choice,
    _check_count,
    _check_tensor,
    _merge_config,
    omniglot_classes,
)
from .maml import compact_history
from .nets import ConvNet
from .siamese import halving_rate

__all__ = [
    "PRETRAIN_CONFIG",
    "PRETRAINED_NAME",
    "FINETUNE_MODES",
    "pretrain",
    "save_pretrained",
    "load_pretrained",
    "episode_features",
    "fit_linear_head",
    "finetune_predict",
]

PRETRAINED_NAME = "pretrained-omniglot"
FINETUNE_MODES = ("head", "all")

PRETRAIN_CONFIG: dict[str, Any] = {
    # 25 of the 30 background alphabets: disjoint from every evaluation
    # alphabet (the test characters) and from the 5 validation alphabets on
    # which the fine-tuning settings are chosen.
    "split": "background-train",
    "rotations": True,  # each character under 4 quarter turns: 4 classes
    "hidden": 64,
    "batch": 64,
    "lr": 1e-3,
    "lr_halvings": 2,
}


# ------------------------------------------------------------------ checks


def _check_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = _merge_config(config, PRETRAIN_CONFIG)
    _check_choice("split", cfg["split"], SPLITS)
    if not isinstance(cfg["rotations"], bool):
        raise ValueError(
            f"rotations must be True or False, got {cfg['rotations']!r}"
        )
    for key, low in (("hidden", 1), ("batch", 2), ("lr_halvings", 0)):
        _check_count(key, cfg[key], low)
    _check_rate("lr", cfg["lr"])
    return cfg


def _check_rate(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not (np.isfinite(value) and value > 0)
    ):
        raise ValueError(
            f"{name} must be a positive finite number, got {value!r}"
        )
    return float(value)


def _check_convnet(net: Any) -> ConvNet:
    if not isinstance(net, ConvNet):
        raise ValueError(
            f"net must be a mlkit.nets.ConvNet (Finn et al.'s "
            f"architecture), got {type(net).__name__}"
        )
    return net


def _check_images(name: str, x: Any) -> torch.Tensor:
    _check_tensor(name, x)
    if x.dim() != 5 or min(x.shape) < 1 or not x.is_floating_point():
        raise ValueError(
            f"{name} must be floating-point (tasks, n, 1, S, S)"
            f" with every size >= 1, got {tuple(x.shape)} "
            f"{x.dtype}"
        )
    return x


def _check_task_labels(
    name: str, y: Any, shape: tuple[int, ...], n_way: int
) -> torch.Tensor:
    _check_tensor(name, y)
    if (
        y.is_floating_point()
        or y.dtype == torch.bool
        or (tuple(y.shape) != shape)
    ):
        raise ValueError(
            f"{name} must be integer labels of shape {shape}, "
            f"got {tuple(y.shape)} {y.dtype}"
        )
    if int(y.min()) < 0 or int(y.max()) >= n_way:
        raise ValueError(
            f"{name} must hold labels in [0, {n_way - 1}], got "
            f"[{int(y.min())}, {int(y.max())}]"
        )
    return y


# ----------------------------------------------------------------- pretraining


def _batch(
    pool: ClassPool, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    classes = rng.integers(len(pool), size=size)
    drawings = rng.integers(DRAWINGS, size=size)
    x = np.stack(
        [
            pool._drawings(int(c), np.array([d]))[0]
            for c, d in zip(classes, drawings)
        ]
    )
    return (
        torch.from_numpy(np.ascontiguousarray(x))[:, None],
        torch.from_numpy(classes),
    )


def pretrain(
    iterations: int,
    *,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    time_limit_s: float | None = None,
    progress: bool = True,
    pool: ClassPool | None = None,
    device: str = "cpu",
) -> tuple[ConvNet, dict[str, Any]]:
    """Train Finn's :class:`~mlkit.nets.ConvNet` to classify every class of
    ``config["split"]`` at once (cross-entropy, Adam), Chen et al.'s
    pretraining stage.

    Each step draws ``batch`` images uniformly over (class, drawing); the
    rate is ``lr`` halved ``lr_halvings`` times at evenly spaced steps.
    Stops early when this process has used ``time_limit_s`` seconds of CPU
    time (on one thread, the time it would take on an idle core; a shared
    machine stretches the wall time, not this). ``pool`` replaces
    the split's classes (for tests); ``device`` is where the steps run (the
    network comes back on the CPU). Returns ``(net, history)``; the history
    holds ``loss`` and ``accuracy`` (training batch, percent) per step, the
    steps reached and the wall time.
    """
    cfg = _check_config(config)
    iterations = _check_count("iterations", iterations)
    seed = _check_count("seed", seed, 0)
    if time_limit_s is not None:
        _check_rate("time_limit_s", time_limit_s)
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be True or False, got {progress!r}")
    if pool is None:
        pool = omniglot_classes(cfg["split"], rotations=cfg["rotations"])
    elif not isinstance(pool, ClassPool):
        raise ValueError(
            f"pool must be None or a ClassPool, got {type(pool).__name__}"
        )
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = ConvNet(len(pool), hidden=cfg["hidden"]).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    history: dict[str, Any] = {"iteration": [], "loss": [], "accuracy": []}
    start, cpu_start = time.monotonic(), time.process_time()
    from tqdm.auto import tqdm

    bar = tqdm(
        range(iterations), desc="pretrain", disable=not progress, mininterval=5
    )
    reached = iterations
    net.train()
    for it in bar:
        if time_limit_s is not None and (
            time.process_time() - cpu_start > time_limit_s
        ):
            reached = it
            break
        for g in opt.param_groups:
            g["lr"] = halving_rate(
                cfg["lr"], it, iterations, cfg["lr_halvings"]
            )
        x, y = _batch(pool, cfg["batch"], rng)
        x, y = x.to(device), y.to(device)
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history["iteration"].append(it + 1)
        history["loss"].append(loss.item())
        history["accuracy"].append(
            100.0 * float((logits.argmax(1) == y).float().mean())
        )
    bar.close()
    history["iterations"] = reached
    history["wall_time_s"] = time.monotonic() - start
    history["cpu_time_s"] = time.process_time() - cpu_start
    history["classes"] = len(pool)
    return net.cpu(), history


def save_pretrained(
    net: ConvNet,
    history: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    seed: int = 0,
    command: str,
    name: str = PRETRAINED_NAME,
    directory: Any = None,
) -> Any:
    """Save the pretrained network as checkpoint ``name`` with its manifest
    entry (config with the class count, seed, steps, wall time, a compact
    loss and accuracy curve)."""
    _check_convnet(net)
    cfg = _check_config(config)
    rows = [
        {"iteration": i, "loss": l, "accuracy": a}
        for i, l, a in zip(
            history["iteration"], history["loss"], history["accuracy"]
        )
    ]
    return save_checkpoint(
        name,
        net.state_dict(),
        config={
            **cfg,
            "n_classes": int(net.head.out_features),
            "architecture": "ConvNet (Finn et al. 2017)",
        },
        command=command,
        seed=seed,
        iterations=int(history["iterations"]),
        wall_time_s=float(history["wall_time_s"]),
        metrics={
            "history": compact_history(rows, 100),
            "final_train_accuracy": float(np.mean(history["accuracy"][-200:])),
            "cpu_time_s": round(
                float(history.get("cpu_time_s", history["wall_time_s"])), 1
            ),
        },
        directory=directory,
    )


def load_pretrained(
    name: str = PRETRAINED_NAME, *, directory: Any = None
) -> tuple[ConvNet, dict[str, Any]]:
    """The pretrained network of checkpoint ``name`` (sha256 checked) and its
    manifest entry (``directory``: default the book's ``checkpoints/``)."""
    if not isinstance(name, str):
        raise ValueError(
            f"name must be a checkpoint name (a string), got {name!r}"
        )
    state, entry = load_checkpoint(name, directory)
    cfg = entry["config"]
    net = ConvNet(int(cfg["n_classes"]), hidden=int(cfg["hidden"]))
    net.load_state_dict(state)
    return net, entry


# ----------------------------------------------------------------- fine-tuning


def episode_features(net: ConvNet, x: torch.Tensor) -> torch.Tensor:
    """Frozen features of a batch of task sets ``(T, n, 1, S, S)`` ->
    ``(T, n, D)``, each task's set through BatchNorm as one batch (its own
    statistics, as MAML sees it)."""
    _check_convnet(net)
    _check_images("x", x)
    with torch.no_grad():
        return torch.stack([net.features(x[t]) for t in range(x.shape[0])])


def fit_linear_head(
    support: torch.Tensor,
    support_y: torch.Tensor,
    n_way: int,
    *,
    steps: int = 100,
    lr: float = 0.01,
    weight_decay: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A new linear head per task on frozen features, Chen et al.'s
    Baseline: ``steps`` full-batch Adam steps on the mean cross-entropy of
    ``softmax(W z + b)`` plus ``weight_decay * |W|^2``, from ``W = 0``.

    ``support`` is ``(T, n, D)``, ``support_y`` ``(T, n)``; the tasks are
    fitted together but independently (the loss is a sum over tasks and
    Adam works element by element). Returns ``W (T, D, n_way)``, ``b (T,
    n_way)``.
    """
    _check_tensor("support", support)
    if (
        support.dim() != 3
        or min(support.shape) < 1
        or (not support.is_floating_point())
    ):
        raise ValueError(
            f"support must be floating-point (tasks, n, D), got "
            f"{tuple(support.shape)} {support.dtype}"
        )
    n_way = _check_count("n_way", n_way, 2)
    _check_task_labels("support_y", support_y, tuple(support.shape[:2]), n_way)
    steps = _check_count("steps", steps)
    lr = _check_rate("lr", lr)
    if (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, (int, float))
        or not (0 <= weight_decay < np.inf)
    ):
        raise ValueError(
            f"weight_decay must be a number >= 0, got {weight_decay!r}"
        )
    z = support.detach()
    t, _, d = z.shape
    w = torch.zeros(t, d, n_way, dtype=z.dtype, requires_grad=True)
    b = torch.zeros(t, n_way, dtype=z.dtype, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            logits = torch.bmm(z, w) + b[:, None, :]
            loss = (
                F.cross_entropy(
                    logits.reshape(-1, n_way), support_y.reshape(-1).long()
                )
                * t
            )
            if weight_decay:
                loss = loss + weight_decay * w.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return w.detach(), b.detach()


def _finetune_all(
    net: ConvNet,
    sx: torch.Tensor,
    sy: torch.Tensor,
    qx: torch.Tensor,
    n_way: int,
    steps: int,
    lr: float,
) -> torch.Tensor:
    import copy

    model = copy.deepcopy(net)
    model.head = nn.Linear(model.head.in_features, n_way)
    nn.init.zeros_(model.head.weight)
    nn.init.zeros_(model.head.bias)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = F.cross_entropy(model(sx), sy.long())
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        return model(qx)


def finetune_predict(
    net: ConvNet,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    n_way: int,
    *,
    mode: str = "head",
    steps: int = 100,
    lr: float = 0.01,
    weight_decay: float = 0.0,
) -> torch.Tensor:
    """Query logits ``(T, m, n_way)`` of the pretrained ``net`` fine-tuned on
    each task's support set (``support_x (T, n, 1, S, S)``, ``support_y
    (T, n)``, ``query_x (T, m, 1, S, S)``).

    ``mode="head"``: a new linear head on frozen features
    (:func:`fit_linear_head`; Chen et al.'s Baseline). ``mode="all"``: a new
    zero head and every parameter fine-tuned with Adam for ``steps`` steps
    at rate ``lr`` (costly: a full network per task). ``weight_decay``
    applies to the head-only fit.
    """
    _check_convnet(net)
    _check_choice("mode", mode, FINETUNE_MODES)
    _check_images("support_x", support_x)
    _check_images("query_x", query_x)
    n_way = _check_count("n_way", n_way, 2)
    _check_task_labels(
        "support_y", support_y, tuple(support_x.shape[:2]), n_way
    )
    if query_x.shape[0] != support_x.shape[0] or (
        query_x.shape[2:] != support_x.shape[2:]
    ):
        raise ValueError(
            f"query_x must hold as many tasks as support_x "
            f"({support_x.shape[0]}) of the same image shape "
            f"{tuple(support_x.shape[2:])}, got "
            f"{tuple(query_x.shape)}"
        )
    if mode == "head":
        w, b = fit_linear_head(
            episode_features(net, support_x),
            support_y,
            n_way,
            steps=steps,
            lr=lr,
            weight_decay=weight_decay,
        )
        return torch.bmm(episode_features(net, query_x), w) + b[:, None, :]
    steps = _check_count("steps", steps)
    lr = _check_rate("lr", lr)
    return torch.stack(
        [
            _finetune_all(
                net, support_x[t], support_y[t], query_x[t], n_way, steps, lr
            )
            for t in range(support_x.shape[0])
        ]
    )


# ---------------------------------------------------------------- command line

PRETRAIN_ITERATIONS = 6000
# the head-only fine-tuning settings when no choice on validation is stored
# (python -m mlkit.compare stores one in checkpoints/head_to_head.json)
FINETUNE_DEFAULTS = {"lr": 0.003, "steps": 50}


def finetune_settings() -> dict[str, Any]:
    """The head-only fine-tuning rate and step count chosen on the validation
    alphabets by :func:`mlkit.compare.choose_finetune_settings`, as stored
    with the head-to-head comparison; :data:`FINETUNE_DEFAULTS` (that
    choice) when the comparison has not been stored."""
    from .compare import RESULT_PATH, load_result

    if RESULT_PATH.exists():
        chosen = load_result().get("finetune_selection") or {}
        if "lr" in chosen and "steps" in chosen:
            return {"lr": float(chosen["lr"]), "steps": int(chosen["steps"]),
                    "chosen_on": chosen.get("split", "validation")}
    return {**FINETUNE_DEFAULTS, "chosen_on": "validation"}


def _train_cli(args: argparse.Namespace) -> None:
    """``python -m mlkit train pretrained-omniglot``: pretrain into
    ``runs/pretrained-omniglot/`` (``--promote`` copies it to checkpoints/)."""
    from .checkpoints import run_dir

    if getattr(args, "threads", None) is None:
        torch.set_num_threads(1)  # a small network: one thread is the faster
    folder = run_dir(PRETRAINED_NAME)
    if args.resume:
        raise ValueError(
            f"--resume is not used by {PRETRAINED_NAME}: pretraining takes "
            f"minutes and starts again (delete {folder} first)"
        )
    if (folder / f"{PRETRAINED_NAME}.pt").exists():
        # never start over a run's work silently
        raise ValueError(
            f"run {folder} exists: promote it with --promote, or delete "
            f"that folder to start again"
        )
    limit = None if args.max_minutes is None else 60.0 * args.max_minutes
    net, history = pretrain(
        args.iterations or PRETRAIN_ITERATIONS, seed=args.seed,
        time_limit_s=limit, device=args.device)
    command = f"python -m mlkit train {PRETRAINED_NAME}"
    if args.iterations:
        command += f" --iterations {args.iterations}"
    if args.max_minutes is not None:
        command += f" --max-minutes {args.max_minutes:g}"
    if args.seed:
        command += f" --seed {args.seed}"
    if args.device != "cpu":
        command += f" --device {args.device}"
    save_pretrained(net, history, seed=args.seed, command=command,
                    directory=folder)
    print(
        f"{PRETRAINED_NAME}: {history['iterations']} steps in "
        f"{history['wall_time_s']:.0f} s ({history['cpu_time_s']:.0f} s of "
        f"CPU time), training accuracy "
        f"{np.mean(history['accuracy'][-200:]):.1f}% (last 200 steps)"
    )


def _evaluate_cli(args: argparse.Namespace) -> dict[str, Any]:
    """``python -m mlkit evaluate pretrained-omniglot``: N-way K-shot tasks
    of the test split, 15 queries per class (fewer when K > 5), a new linear
    head fitted on each support set with the settings chosen on validation
    (:func:`finetune_settings`); the query set is one batch (BatchNorm uses
    its statistics, as in the head-to-head comparison)."""
    from .data import EpisodeSampler, check_test_shots
    from .stats import summary

    if getattr(args, "threads", None) is None:
        torch.set_num_threads(1)
    net, _ = load_pretrained()
    n_way, k_shot = args.ways or 5, args.shots or 1
    check_test_shots(k_shot)
    split = args.split or "evaluation"
    queries = min(15, DRAWINGS - k_shot)
    chosen = finetune_settings()
    sampler = EpisodeSampler(
        omniglot_classes(split, rotations=False), n_way, k_shot, queries,
        seed=np.random.default_rng(args.seed))
    from tqdm.auto import tqdm

    scores = []
    left = args.tasks
    with tqdm(total=args.tasks, desc=f"evaluate {PRETRAINED_NAME}",
              mininterval=1.0) as bar:
        while left:
            ep = sampler.batch(min(50, left))
            logits = finetune_predict(
                net, ep.support_x, ep.support_y, ep.query_x, n_way,
                steps=chosen["steps"], lr=chosen["lr"])
            hits = (logits.argmax(-1) == ep.query_y).float().mean(1)
            scores.extend((100.0 * hits).tolist())
            left -= len(hits)
            bar.update(len(hits))
    return {
        "metric": "accuracy",
        **summary(scores),
        "settings": {"split": split, "n_way": n_way, "k_shot": k_shot,
                     "queries_per_class": queries, "seed": args.seed,
                     "finetune": chosen},
    }


def _recipes() -> dict[str, Any]:
    from .__main__ import Recipe

    return {PRETRAINED_NAME: Recipe(
        PRETRAINED_NAME,
        "baseline: Finn's ConvNet pretrained to classify the background-train "
        "characters, a new linear head fitted per task (Chen et al. 2019)",
        _train_cli, _evaluate_cli,
        evaluate_flags=frozenset(
            {"tasks", "ways", "shots", "split", "seed", "allow_seen"}),
        train_flags=frozenset({"iterations", "seed", "max_minutes", "device"}),
        trained_on="background-train", test_split="evaluation")}


RECIPES = _recipes()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mlkit.baselines [--iterations N] [--max-minutes M]``: the
    same as ``python -m mlkit train pretrained-omniglot`` (kept for the
    commands already recorded)."""
    from .__main__ import main as cli

    args = sys.argv[1:] if argv is None else list(argv)
    return cli(["train", PRETRAINED_NAME, *args])


if __name__ == "__main__":
    sys.exit(main())
