"""Prototypical networks (Snell, Swersky & Zemel 2017): the metric-learning
reference point.

An embedding network ``f`` maps each support image to a point; the prototype of
class ``c`` is the mean of its support embeddings, ``p_c = 1/K sum_k f(x_ck)``;
a query ``x`` gets the class probabilities ``softmax_c(-||f(x) - p_c||^2)`` and
training minimises their cross-entropy over episodes (Snell et al., eqs. 1-2).
Trained here on Lake's background alphabets with the same episodes as the rest
of the book, evaluated on the evaluation alphabets and on Lake's 20 runs with
the tools of :mod:`mlkit.siamese`.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import ResumableRun, load_checkpoint
from .data import EpisodeSampler, _check_count, omniglot_classes
from .nets import InductiveConvEmbedding
from .siamese import (
    _check_run_args,
    _check_tensor,
    _check_training,
    embed_pool,
    eval_subset,
    evaluate_embedding,
    few_shot_accuracy,
    halving_rate,
    train_embedding_cli,
)

__all__ = [
    "prototypes",
    "prototype_logits",
    "protonet_loss",
    "PROTONET_CONFIG",
    "build_protonet",
    "train_protonet",
    "load_protonet",
    "RECIPES",
]


def prototypes(
    support: torch.Tensor, support_y: torch.Tensor, n_way: int
) -> torch.Tensor:
    """Class means of support embeddings ``(n, D)`` with labels 0..n_way-1:
    ``(n_way, D)``."""
    _check_tensor("support", support)
    _check_labels("support_y", support_y)
    if support.dim() != 2 or support_y.shape != support.shape[:1]:
        raise ValueError(
            f"support must be (n, D) and support_y (n,), got "
            f"{tuple(support.shape)} and {tuple(support_y.shape)}"
        )
    if (
        isinstance(n_way, bool)
        or not isinstance(n_way, (int, np.integer))
        or n_way < 1
    ):
        raise ValueError(f"n_way must be an integer >= 1, got {n_way!r}")
    if len(support_y) and (
        int(support_y.min()) < 0 or int(support_y.max()) >= n_way
    ):
        raise ValueError(f"support_y must hold labels in [0, {n_way - 1}]")
    counts = torch.bincount(support_y, minlength=n_way)
    if bool((counts == 0).any()):
        raise ValueError(
            "support_y must give every class at least one support example"
        )
    sums = torch.zeros(
        n_way, support.shape[1], dtype=support.dtype, device=support.device
    ).index_add_(0, support_y, support)
    return sums / counts[:, None].to(support.dtype)


def prototype_logits(
    query: torch.Tensor, protos: torch.Tensor
) -> torch.Tensor:
    """Snell et al.'s logits: minus the squared Euclidean distance,
    ``(queries, n_way)``."""
    _check_tensor("query", query)
    _check_tensor("protos", protos)
    if not (query.is_floating_point() and protos.is_floating_point()):
        raise ValueError(
            f"query and protos must be floating-point, got "
            f"{query.dtype} and {protos.dtype}"
        )
    if (
        query.dim() != 2
        or protos.dim() != 2
        or query.shape[1] != protos.shape[1]
    ):
        raise ValueError(
            f"query (m, D) and protos (n_way, D) must share D, got "
            f"{tuple(query.shape)} and {tuple(protos.shape)}"
        )
    return -(query[:, None, :] - protos[None, :, :]).pow(2).sum(-1)


def protonet_loss(
    embed: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    n_way: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the queries under the prototype softmax, and their
    accuracy (0..1).

    Support and query go through ``embed`` in one call, as in Snell et al.'s
    code.
    """
    if not callable(embed):
        raise ValueError(
            f"embed must be an embedding network or a callable, "
            f"got {embed!r}"
        )
    for name, x in (("support_x", support_x), ("query_x", query_x)):
        _check_tensor(name, x, 1)
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(
            f"query_x must have support_x's image shape "
            f"{tuple(support_x.shape[1:])}, got "
            f"{tuple(query_x.shape[1:])}"
        )
    _check_labels("query_y", query_y)
    if query_y.shape != query_x.shape[:1] or len(query_y) == 0:
        raise ValueError(
            f"query_y must hold one label per query "
            f"({query_x.shape[0]} >= 1), got shape "
            f"{tuple(query_y.shape)}"
        )
    n_way = _check_count("n_way", n_way)
    if int(query_y.min()) < 0 or int(query_y.max()) >= n_way:
        raise ValueError(f"query_y must hold labels in [0, {n_way - 1}]")
    z = embed(torch.cat([support_x, query_x]))
    zs, zq = z[: len(support_x)], z[len(support_x) :]
    logits = prototype_logits(zq, prototypes(zs, support_y, n_way))
    return (
        F.cross_entropy(logits, query_y),
        (logits.argmax(1) == query_y).float().mean(),
    )


def _check_labels(name: str, value: Any) -> torch.Tensor:
    _check_tensor(name, value)
    if (
        value.is_floating_point()
        or value.is_complex()
        or (value.dtype == torch.bool)
    ):
        raise ValueError(
            f"{name} must be an integer tensor of class "
            f"labels, got {value.dtype}"
        )
    return value


PROTONET_CONFIG: dict[str, Any] = {
    "split": "background",
    # 4 quarter turns of each background character as 4 classes
    "rotations": True,
    "hidden": 64,
    # Snell et al. train with 60 classes per episode; on a shared CPU core
    # more, smaller episodes buy more accuracy per second than fewer, larger
    # ones.
    "train_way": 30,
    "k_shot": 1,
    "q_queries": 5,
    "lr": 1e-3,
    "lr_halvings": 2,
    "eval_every": 200,
    "eval_tasks": 200,
}


def build_protonet(config: dict[str, Any]) -> InductiveConvEmbedding:
    """A fresh embedding network for a prototypical network with ``config``'s
    width."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    _check_count("hidden", config.get("hidden", 64))
    return InductiveConvEmbedding(hidden=int(config.get("hidden", 64)))


def train_protonet(
    iterations: int,
    *,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    resume: bool = False,
    run_name: str | None = None,
    save_every: float = 120.0,
    progress: bool = True,
    device: str = "cpu",
    time_limit_s: float | None = None,
) -> tuple[InductiveConvEmbedding, dict[str, Any]]:
    """Train a prototypical network for ``iterations`` episodes (Adam; Snell et
    al. 2017).

    Episodes are ``train_way``-way ``k_shot``-shot with ``q_queries`` queries
    per class from ``config["split"]``. Every ``eval_every`` episodes it
    records 5- and 20-way 1-shot accuracy on the evaluation alphabets (for the
    curves; nothing is selected on them). Resumable, and stopped by
    ``time_limit_s``, like :func:`mlkit.siamese.train_siamese`. Returns
    ``(embedding, history)``.
    """
    cfg = _check_training(config, PROTONET_CONFIG)
    _check_run_args(iterations, seed, resume, run_name, progress)
    torch.manual_seed(seed)
    pool = omniglot_classes(cfg["split"], rotations=cfg["rotations"])
    test_pool = eval_subset()
    net = build_protonet(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sampler = EpisodeSampler(
        pool, cfg["train_way"], cfg["k_shot"], cfg["q_queries"], seed=seed
    )
    history: dict[str, Any] = {
        "iteration": [],
        "loss": [],
        "accuracy": [],
        "eval_iteration": [],
        "eval": [],
        "wall_time_s": 0.0,
    }
    run = ResumableRun(
        run_name,
        net,
        opt,
        sampler.rng,
        history,
        resume=resume,
        save_every=save_every,
        time_limit_s=time_limit_s,
    )
    history, start_it = run.history, run.iteration

    from tqdm.auto import tqdm

    net.train()
    bar = tqdm(
        range(start_it, iterations),
        initial=start_it,
        total=iterations,
        desc="protonet",
        disable=not progress,
        mininterval=5,
    )
    reached = iterations
    for it in bar:
        if run.out_of_time():
            reached = it
            print(
                f"time limit reached at iteration {it} of {iterations}; "
                "--resume goes on"
            )
            break
        for g in opt.param_groups:
            g["lr"] = halving_rate(
                cfg["lr"], it, iterations, cfg["lr_halvings"]
            )
        ep = sampler.episode()
        loss, acc = protonet_loss(
            net,
            ep.support_x.to(device),
            ep.support_y.to(device),
            ep.query_x.to(device),
            ep.query_y.to(device),
            ep.n_way,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        history["iteration"].append(it + 1)
        history["loss"].append(loss.item())
        history["accuracy"].append(100.0 * float(acc))
        if cfg["eval_every"] and (
            (it + 1) % cfg["eval_every"] == 0 or it + 1 == iterations
        ):
            z = embed_pool(net, test_pool)
            history["eval_iteration"].append(it + 1)
            history["eval"].append(
                {
                    f"{w}way1shot": float(
                        few_shot_accuracy(
                            z,
                            w,
                            1,
                            cfg["eval_tasks"],
                            q_queries=5,
                            method="prototype",
                            seed=123,
                        ).mean()
                    )
                    for w in (5, 20)
                }
            )
            net.train()
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                **{k: f"{v:.1f}" for k, v in history["eval"][-1].items()},
            )
        if run.due():
            run.save(it + 1, cfg)
    bar.close()
    run.save(reached, cfg)
    return net.eval(), history


def load_protonet(
    name: str = "protonet-omniglot",
) -> tuple[InductiveConvEmbedding, dict[str, Any]]:
    """The trained embedding of checkpoint ``name`` (in ``eval()`` mode) and
    its entry."""
    if not isinstance(name, str):
        raise ValueError(
            f"name must be a checkpoint name (a string), got {name!r}"
        )
    state, entry = load_checkpoint(name)
    net = build_protonet(entry["config"])
    net.load_state_dict(state)
    return net.eval(), entry


PROTONET_ITERATIONS = 1200


def _train_cli(args: argparse.Namespace) -> None:
    train_embedding_cli(
        args,
        "protonet-omniglot",
        train_protonet,
        args.iterations or PROTONET_ITERATIONS,
        PROTONET_CONFIG,
        method="prototype",
        curve_keys=["loss", "accuracy"],
    )


def _evaluate_cli(args: argparse.Namespace) -> dict[str, Any]:
    net, _ = load_protonet("protonet-omniglot")
    return evaluate_embedding(args, net, "prototype", "prototypical network")


def _recipes() -> dict[str, Any]:
    from .__main__ import Recipe

    from .siamese import EMBEDDING_FLAGS, EMBEDDING_TRAIN_FLAGS

    return {
        "protonet-omniglot": Recipe(
            "protonet-omniglot",
            "Prototypical network (Snell et al. 2017) on Lake's background "
            "alphabets",
            _train_cli,
            _evaluate_cli,
            evaluate_flags=EMBEDDING_FLAGS,
            train_flags=EMBEDDING_TRAIN_FLAGS,
            trained_on="background",
            test_split="evaluation",
        )
    }


RECIPES = _recipes()
