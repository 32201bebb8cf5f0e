"""Siamese networks (chapter 4): one embedding network, two inputs, a distance,
a contrastive loss.

The source's section 3.2 builds a Siamese network in four steps, and this
module follows them:

1. *two identical networks sharing parameters*: :class:`SiameseNet` holds
   **one** embedding network ``f`` and applies it to both inputs (there is no
   second copy whose weights could drift apart);
2. *same-class and different-class pairs*: :class:`PairSampler` draws balanced
   pairs from an Omniglot :class:`~mlkit.data.ClassPool`, optionally with
   negatives from the same alphabet and Koch et al. (2015)'s random affine
   distortions (:func:`affine_augment`);
3. *the distance between the two embeddings*: :func:`euclidean_distance`,
   written so that its gradient stays finite when the two embeddings coincide;
4. *updates that pull same-class pairs together and push different-class pairs
   apart*: :func:`contrastive_loss` in the source's form (section 4.2)
   ``sum_S d + sum_D max(0, m - d)`` and in Hadsell, Chopra & LeCun (2006)'s
   ``1/2 d^2`` / ``1/2 max(0, m - d)^2``, minimised by :func:`train_siamese`.

Evaluation (shared with :mod:`mlkit.protonet`): embed a whole split once with
the network in ``eval()`` mode (its BatchNorm then uses running statistics, so
an image's embedding does not depend on its batch), then score verification
pairs (:func:`verification_accuracy`), N-way K-shot episodes by the nearest
support embedding (:func:`few_shot_accuracy`) and Lake et al. (2015)'s 20
official 20-way within-alphabet runs (:func:`lake_runs_accuracy`).

Split: training uses Lake's 30 background alphabets; every reported number
comes from the 20 evaluation alphabets or from Lake's 20 runs (which are drawn
from the evaluation alphabets).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import (
    ResumableRun,
    load_checkpoint,
    load_state,
    manifest,
    promote,
    record_metrics,
    run_dir,
    save_checkpoint,
)
from .data import (
    DRAWINGS,
    SPLITS,
    ClassPool,
    Episode,
    _check_count,
    _check_tensor,
    _merge_config,
    check_test_shots,
    load_lake_runs,
    omniglot_classes,
)
from .nets import InductiveConvEmbedding
from .stats import mean_ci95

__all__ = [
    "DISTANCE_EPS",
    "LOSS_FORMS",
    "euclidean_distance",
    "contrastive_loss",
    "SiameseNet",
    "PairBatch",
    "PairSampler",
    "affine_augment",
    "embed_images",
    "train_embedding_cli",
    "balanced_pair_loss",
    "halving_rate",
    "save_embedding_checkpoint",
    "embed_pool",
    "episode_indices",
    "few_shot_accuracy",
    "few_shot_predictions",
    "lake_runs_accuracy",
    "best_threshold",
    "nearest_neighbours",
    "margin_report",
    "loss_gradient_curves",
    "fit_2d_embedding",
    "eval_subset",
    "training_curves",
    "verification_accuracy",
    "SIAMESE_CONFIG",
    "build_siamese",
    "train_siamese",
    "load_siamese",
    "LAKE_ANCHORS",
    "recipe_seeds",
    "EnsembleEmbedding",
    "ENSEMBLE_SEEDS",
    "seed_checkpoint",
    "load_siamese_ensemble",
    "measure_ensemble",
    "seed_report",
    "RECIPES",
]

# sqrt(s + eps): the gradient of the plain sqrt(sum sq) at a - b = 0 is inf * 0
# = NaN; with eps it is (a - b) / sqrt(eps) = 0 there (torch.linalg.vector_norm
# special-cases zero to the same subgradient 0, but a hand-written formula does
# not), and the distance is off by at most sqrt(eps) = 1e-4, far below any
# margin the book uses (0.25 .. 4).
DISTANCE_EPS = 1e-8
LOSS_FORMS = ("source", "hadsell")


# -----------------------------------------------------------------------------
# Steps 3 and 4: distance and contrastive loss
# -----------------------------------------------------------------------------


# -----------------------------------------------------------------------------
# Argument checks
# -----------------------------------------------------------------------------


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def _check_positive(name: str, value: Any) -> float:
    if not (math.isfinite(_check_number(name, value)) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def _check_seed(seed: Any) -> None:
    if seed is None or isinstance(seed, np.random.Generator):
        return
    _check_count("seed", seed, 0)


def _check_embed(embed: Any) -> None:
    if not callable(embed):
        raise ValueError(
            f"embed must be an embedding network or a callable, "
            f"got {embed!r}"
        )


def _check_pool(pool: Any) -> ClassPool:
    if not isinstance(pool, ClassPool):
        raise ValueError(
            f"pool must be a mlkit.data.ClassPool, got "
            f"{type(pool).__name__}"
        )
    return pool


def _pairs(distance: Any, same: Any) -> tuple[np.ndarray, np.ndarray]:
    """Distances ``(n,)`` (finite, n >= 1) and same/different labels (0/1)."""
    try:
        d = np.asarray(distance, np.float64)
        y = np.asarray(same)
    except (TypeError, ValueError):
        raise ValueError(
            f"distance and same must be (n,) arrays of numbers, "
            f"got {distance!r} and {same!r}"
        ) from None
    if d.shape != y.shape or d.ndim != 1 or len(d) == 0:
        raise ValueError(
            f"distance and same must be (n,) with n >= 1, got "
            f"{d.shape}, {y.shape}"
        )
    if not np.isfinite(d).all():
        raise ValueError("distance must hold finite numbers (no NaN or inf)")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError(
            "same must hold only 0 (different class) and 1 (same class)"
        )
    return d, y.astype(bool)


def euclidean_distance(
    a: torch.Tensor, b: torch.Tensor, eps: float = DISTANCE_EPS
) -> torch.Tensor:
    """Row-wise Euclidean distance ``d = sqrt(sum_k (a_k - b_k)^2 + eps)``.

    ``a`` and ``b`` are ``(n, D)``; the result is ``(n,)``. The ``eps`` inside
    the root keeps the gradient finite (zero) at ``a == b``, where
    ``torch.norm``'s gradient is NaN.
    """
    _check_tensor("a", a)
    _check_tensor("b", b)
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"a and b must both be (n, D) with the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if not (a.is_floating_point() and b.is_floating_point()):
        raise ValueError(
            f"a and b must be floating-point, got {a.dtype} and {b.dtype}"
        )
    _check_positive("eps", eps)
    return torch.sqrt((a - b).pow(2).sum(dim=1) + eps)


def _check_margin(margin: float) -> float:
    if (
        isinstance(margin, bool)
        or not isinstance(margin, (int, float, np.floating))
        or not (math.isfinite(margin) and margin > 0)
    ):
        raise ValueError(f"margin must be positive and finite, got {margin!r}")
    return float(margin)


def contrastive_loss(
    distance: torch.Tensor,
    same: torch.Tensor,
    margin: float = 1.0,
    *,
    form: str = "source",
    reduction: str = "mean",
) -> torch.Tensor:
    """The contrastive loss of pair distances ``d`` with labels ``same`` (1
    same class, 0 not).

    * ``form="source"`` (the source's section 4.2):
      ``same * d + (1 - same) * max(0, m - d)``;
    * ``form="hadsell"`` (Hadsell, Chopra & LeCun 2006):
      ``same * d^2 / 2 + (1 - same) * max(0, m - d)^2 / 2``.

    ``reduction`` is ``"mean"`` (over pairs), ``"sum"`` (the source's sums over
    S and D) or ``"none"`` (one value per pair). ``margin`` must be positive
    and finite.
    """
    margin = _check_margin(margin)
    if form not in LOSS_FORMS:
        raise ValueError(
            f"form must be one of {list(LOSS_FORMS)}, got {form!r}"
        )
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(
            f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
        )
    _check_tensor("distance", distance)
    _check_tensor("same", same)
    if not distance.is_floating_point():
        raise ValueError(
            f"distance must be a floating-point tensor, got "
            f"{distance.dtype}"
        )
    if distance.shape != same.shape or distance.dim() != 1:
        raise ValueError(
            "distance and same must both be (n,), got "
            f"{tuple(distance.shape)} and {tuple(same.shape)}"
        )
    s = same.to(distance.dtype)
    if not bool(((s == 0) | (s == 1)).all()):
        raise ValueError(
            "same must hold only 0 (different class) and 1 (same class)"
        )
    gap = F.relu(margin - distance)
    if form == "source":
        per_pair = s * distance + (1 - s) * gap
    else:
        per_pair = 0.5 * s * distance.pow(2) + 0.5 * (1 - s) * gap.pow(2)
    if reduction == "none":
        return per_pair
    return per_pair.sum() if reduction == "sum" else per_pair.mean()


# -----------------------------------------------------------------------------
# Step 1: one network, two inputs
# -----------------------------------------------------------------------------


class SiameseNet(nn.Module):
    """A Siamese network: one embedding network ``f`` applied to both members
    of each pair.

    ``forward(x1, x2)`` returns ``d(f(x1), f(x2))`` per pair. Both inputs go
    through ``f`` in one call (concatenated), so they share the parameters
    *and*, in training mode, the same BatchNorm batch statistics. The default
    ``f`` is :class:`~mlkit.nets.InductiveConvEmbedding` (28x28 -> 64).
    """

    def __init__(self, embedding: nn.Module | None = None) -> None:
        super().__init__()
        if embedding is not None and not isinstance(embedding, nn.Module):
            raise ValueError(
                f"embedding must be None or a torch.nn.Module, "
                f"got {type(embedding).__name__}"
            )
        self.embedding = (
            InductiveConvEmbedding() if embedding is None else embedding
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``: ``(n, 1, S, S)`` images -> ``(n, D)`` embeddings."""
        return self.embedding(x)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        if x1.shape != x2.shape:
            raise ValueError(
                f"x1 and x2 must have the same shape, got {tuple(x1.shape)} "
                f"and {tuple(x2.shape)}"
            )
        z = self.embed(torch.cat([x1, x2]))
        z1, z2 = z.split(len(x1))
        return euclidean_distance(z1, z2)

    def pair_distances(
        self, images: torch.Tensor, left: torch.Tensor, right: torch.Tensor
    ) -> torch.Tensor:
        """Distances of pairs ``(images[left[i]], images[right[i]])``, each
        image embedded once.

        Same result as ``forward(images[left], images[right])`` (up to
        BatchNorm batch statistics in training mode), at the cost of one pass
        over the distinct images.
        """
        z = self.embed(images)
        return euclidean_distance(z[left], z[right])


# -----------------------------------------------------------------------------
# Step 2: balanced pairs
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PairBatch:
    """Pairs over a set of images: pair ``i`` is
    ``(images[left[i]], images[right[i]])``.

    ``images`` is ``(m, 1, S, S)``; ``classes`` and ``drawings`` give each
    image's pool class and drawing (0..19), so that precomputed embeddings
    ``z[classes, drawings]`` (from :func:`embed_pool`) can stand in for the
    images; ``left`` and ``right`` are ``(n_pairs,)`` int64, ``same`` is
    ``(n_pairs,)`` float32 (1.0 same class).
    """

    images: torch.Tensor
    classes: np.ndarray
    left: torch.Tensor
    right: torch.Tensor
    same: torch.Tensor
    drawings: np.ndarray | None = None

    def distances(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The pairs' distances read from precomputed ``embeddings``
        ``(classes, 20, D)``."""
        if self.drawings is None:
            raise ValueError("this PairBatch holds no drawing indices")
        z = embeddings[
            torch.from_numpy(self.classes), torch.from_numpy(self.drawings)
        ]
        return euclidean_distance(z[self.left], z[self.right])

    @property
    def x1(self) -> torch.Tensor:
        return self.images[self.left]

    @property
    def x2(self) -> torch.Tensor:
        return self.images[self.right]

    def __len__(self) -> int:
        return len(self.same)


def _check_fraction(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not (0.0 <= value <= 1.0)
    ):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


class PairSampler:
    """An endless, reproducible stream of balanced same/different pairs from
    one class pool.

    Each :meth:`batch` of ``n_pairs`` pairs (even, >= 4) draws ``n_pairs / 2``
    distinct classes and two distinct drawings ``a_i, b_i`` of each. The
    same-class pairs are ``(a_i, b_i)``; the different-class pairs are
    ``(a_i, b_j)`` with ``j`` the next class in a random cycle. So exactly half
    the pairs are same-class and every image is used twice. With probability
    ``within_alphabet`` a batch draws its classes in groups of up to ``group``
    from one alphabet and cycles inside each group, so that its negatives share
    an alphabet (harder, as in Lake's within-alphabet runs). ``augment=True``
    applies :func:`affine_augment` to every image (Koch et al. 2015).
    """

    def __init__(
        self,
        pool: ClassPool,
        n_pairs: int = 128,
        *,
        within_alphabet: float = 0.0,
        augment: bool = False,
        group: int = 4,
        seed: int | None = 0,
    ) -> None:
        _check_pool(pool)
        _check_seed(seed)
        if (
            isinstance(n_pairs, bool)
            or not isinstance(n_pairs, (int, np.integer))
            or (n_pairs < 4 or n_pairs % 2 or n_pairs // 2 > len(pool))
        ):
            raise ValueError(
                f"n_pairs must be an even integer in [4, {2 * len(pool)}] "
                f"(two per pool class at most), got {n_pairs!r}"
            )
        if (
            isinstance(group, bool)
            or not isinstance(group, (int, np.integer))
            or group < 2
        ):
            raise ValueError(f"group must be an integer >= 2, got {group!r}")
        self.pool, self.n_pairs, self.group = pool, int(n_pairs), int(group)
        self.within_alphabet = _check_fraction(
            "within_alphabet", within_alphabet
        )
        self.augment = bool(augment)
        self.rng = np.random.default_rng(seed)
        alphabets = np.array([pool.alphabet(c) for c in range(len(pool))])
        self._by_alphabet = [
            np.flatnonzero(alphabets == a) for a in np.unique(alphabets)
        ]
        self._by_alphabet = [ix for ix in self._by_alphabet if len(ix) >= 2]

    def _groups(self, n: int) -> list[np.ndarray]:
        rng = self.rng
        if self.within_alphabet == 0 or rng.random() >= self.within_alphabet:
            return [rng.choice(len(self.pool), size=n, replace=False)]
        sizes, rest = [], n
        # chunks of 2..group classes (group + 1 once, if group is 2)
        while rest > 0:
            size = min(self.group, rest)
            if rest - size == 1:
                size = size - 1 if size > 2 else size + 1
            sizes.append(size)
            rest -= size
        groups, free = [], np.ones(len(self.pool), dtype=bool)
        for size in sizes:
            fits = [ix for ix in self._by_alphabet if free[ix].sum() >= size]
            if fits:
                members = fits[rng.integers(len(fits))]
                pick = rng.choice(
                    members[free[members]], size=size, replace=False
                )
            else:
                # no alphabet has that many unused classes left: mix alphabets
                pick = rng.choice(
                    np.flatnonzero(free), size=size, replace=False
                )
            free[pick] = False
            groups.append(pick)
        return groups

    def batch(self) -> PairBatch:
        """The next batch of ``n_pairs`` pairs, half same-class, half
        different-class."""
        n = self.n_pairs // 2
        groups = self._groups(n)
        classes = np.concatenate(groups)
        # Negative partner of class i: the next class in its group's cycle.
        partner = np.concatenate(
            [
                np.roll(np.arange(len(g)), -1) + off
                for g, off in zip(
                    groups, np.cumsum([0] + [len(g) for g in groups[:-1]])
                )
            ]
        )
        s = self.pool.image_size
        images = np.empty((n, 2, s, s), np.float32)
        drawings = np.empty((n, 2), np.int64)
        for i, c in enumerate(classes):
            drawings[i] = self.rng.choice(DRAWINGS, 2, replace=False)
            images[i] = self.pool.drawings(int(c), drawings[i])
        # a_i at 2i, b_i at 2i + 1
        x = torch.from_numpy(images.reshape(2 * n, 1, s, s))
        if self.augment:
            x = affine_augment(x, seed=self.rng)
        a = torch.arange(n) * 2
        left = torch.cat([a, a])
        right = torch.cat([a + 1, torch.from_numpy(partner) * 2 + 1])
        same = torch.cat([torch.ones(n), torch.zeros(n)])
        return PairBatch(
            x,
            np.repeat(classes, 2).astype(np.int64),
            left,
            right,
            same,
            drawings.reshape(-1),
        )


def affine_augment(
    x: torch.Tensor,
    *,
    seed: int | np.random.Generator | None = None,
    p: float = 0.5,
) -> torch.Tensor:
    """Koch et al. (2015)'s random affine distortion of each image in ``x``
    ``(n, 1, S, S)``.

    Each image gets ``T = (theta, rho_x, rho_y, s_x, s_y, t_x, t_y)`` with
    rotation ``theta ~ U[-10, 10]`` degrees, shears ``rho ~ U[-0.3, 0.3]``,
    scales ``s ~ U[0.8, 1.2]`` and translations ``t ~ U[-2, 2]`` pixels of a
    105x105 drawing (scaled to ``S``); as in Koch et al., each of the four
    components is applied with probability ``p``.
    """
    _check_tensor("x", x)
    if x.dim() != 4 or not x.is_floating_point():
        raise ValueError(
            f"x must be floating-point (n, channels, S, S), got "
            f"{tuple(x.shape)} {x.dtype}"
        )
    p = _check_fraction("p", p)
    _check_seed(seed)
    rng = (
        seed
        if isinstance(seed, np.random.Generator)
        else np.random.default_rng(seed)
    )
    n = len(x)
    on = rng.random((n, 4)) < p
    theta = np.deg2rad(rng.uniform(-10, 10, n)) * on[:, 0]
    rho = rng.uniform(-0.3, 0.3, (n, 2)) * on[:, 1:2]
    scale = np.where(on[:, 2:3], rng.uniform(0.8, 1.2, (n, 2)), 1.0)
    # normalised coordinates
    shift = rng.uniform(-2, 2, (n, 2)) * on[:, 3:4] * (2.0 / 105.0)
    c, s_ = np.cos(theta), np.sin(theta)
    rot = np.stack([np.stack([c, -s_], -1), np.stack([s_, c], -1)], -2)
    shear = np.stack(
        [
            np.stack([np.ones(n), rho[:, 0]], -1),
            np.stack([rho[:, 1], np.ones(n)], -1),
        ],
        -2,
    )
    lin = rot @ shear @ (np.eye(2)[None] * scale[:, None, :])
    theta_mat = torch.from_numpy(
        np.concatenate([lin, shift[:, :, None]], -1)
    ).to(x.dtype)
    grid = F.affine_grid(theta_mat, list(x.shape), align_corners=False)
    return F.grid_sample(
        x, grid, mode="bilinear", padding_mode="zeros", align_corners=False
    )


# -----------------------------------------------------------------------------
# Evaluation on embeddings (shared with mlkit.protonet)
# -----------------------------------------------------------------------------


@torch.no_grad()
def embed_images(
    embed: Callable[[torch.Tensor], torch.Tensor] | nn.Module,
    images: torch.Tensor | np.ndarray,
    *,
    batch_size: int = 128,
) -> torch.Tensor:
    """``embed`` applied to ``images`` ``(n, 1, S, S)`` in chunks, without
    gradients, on the module's device; the result is on the CPU.

    A module is put in ``eval()`` mode first (BatchNorm running statistics), so
    the result does not depend on ``batch_size``; its previous mode is restored
    afterwards.
    """
    _check_embed(embed)
    _check_count("batch_size", batch_size)
    try:
        x = torch.as_tensor(images)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"images must be a tensor or array (n, channels, "
            f"S, S), got {type(images).__name__}"
        ) from None
    if x.dim() != 4 or min(x.shape) == 0 or not x.is_floating_point():
        raise ValueError(
            f"images must be floating-point (n, channels, S, "
            f"S), every size >= 1, got {tuple(x.shape)} "
            f"{x.dtype}"
        )
    was_training = isinstance(embed, nn.Module) and embed.training
    device = torch.device("cpu")
    if isinstance(embed, nn.Module):
        embed.eval()
        device = next(embed.parameters(), torch.empty(0)).device
    try:
        with torch.no_grad():
            return torch.cat(
                [
                    embed(x[i : i + batch_size].to(device)).cpu()
                    for i in range(0, len(x), batch_size)
                ]
            )
    finally:
        if was_training:
            embed.train()


def embed_pool(
    embed: Callable[[torch.Tensor], torch.Tensor] | nn.Module,
    pool: ClassPool,
    *,
    batch_size: int = 128,
) -> torch.Tensor:
    """Embeddings of every drawing of every class of ``pool``:
    ``(classes, 20, D)``."""
    _check_pool(pool)
    s = pool.image_size
    if (pool.rotation == 0).all():
        imgs = pool.images[pool.char_index]
    else:
        imgs = np.stack(
            [pool.drawings(c, np.arange(DRAWINGS)) for c in range(len(pool))]
        )
    z = embed_images(
        embed,
        np.ascontiguousarray(imgs).reshape(-1, 1, s, s),
        batch_size=batch_size,
    )
    return z.reshape(len(pool), DRAWINGS, -1)


def episode_indices(
    n_classes: int,
    n_way: int,
    k_shot: int,
    q_queries: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """The classes ``(n_way,)`` and drawings ``(n_way, k_shot + q_queries)`` of
    one episode.

    Draws exactly as :func:`mlkit.data.sample_episode` does from the same
    generator, so an episode scored on precomputed embeddings is the episode
    ``sample_episode`` would give.
    """
    n_classes = _check_count("n_classes", n_classes)
    _check_count("n_way", n_way, 1, n_classes)
    _check_count("k_shot", k_shot, 1, DRAWINGS)
    _check_count("q_queries", q_queries, 0, DRAWINGS - k_shot)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy Generator, got {rng!r}")
    classes = rng.choice(n_classes, size=n_way, replace=False)
    which = np.stack(
        [
            rng.choice(DRAWINGS, size=k_shot + q_queries, replace=False)
            for _ in classes
        ]
    )
    return classes, which


def _check_episode(
    n_classes: int, n_way: int, k_shot: int, q_queries: int
) -> None:
    for name, v, lo, hi in (
        ("n_way", n_way, 2, n_classes),
        ("k_shot", k_shot, 1, DRAWINGS - 1),
        ("q_queries", q_queries, 1, None),
    ):
        hi = DRAWINGS - k_shot if hi is None else hi  # k_shot checked by then
        if (
            isinstance(v, bool)
            or not isinstance(v, (int, np.integer))
            or not lo <= v <= hi
        ):
            raise ValueError(
                f"{name} must be an integer in [{lo}, {hi}], got {v!r}"
            )


def few_shot_predictions(
    embeddings: torch.Tensor,
    n_way: int,
    k_shot: int,
    n_tasks: int = 600,
    *,
    q_queries: int = 15,
    method: str = "nearest",
    seed: int | np.random.Generator | None = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Classify the queries of ``n_tasks`` N-way K-shot episodes drawn over
    ``embeddings``.

    ``embeddings`` is ``(classes, 20, D)`` (from :func:`embed_pool`).
    ``method="nearest"`` gives each query the label of its nearest support
    embedding (Euclidean; Koch et al.'s one-shot rule), ``"prototype"`` the
    label of the nearest class mean (Snell et al. 2017). Returns
    ``(classes, which, predicted, true)``: per task the pool classes
    ``(T, n_way)``, the drawings ``(T, n_way, k_shot + q_queries)``, and the
    predicted and true labels of the queries ``(T, n_way * q_queries)``.
    """
    _check_tensor("embeddings", embeddings)
    if embeddings.dim() != 3 or embeddings.shape[1] != DRAWINGS:
        raise ValueError(
            "embeddings must be (classes, 20, D), got "
            f"{tuple(embeddings.shape)}"
        )
    _check_episode(embeddings.shape[0], n_way, k_shot, q_queries)
    _check_seed(seed)
    if (
        isinstance(n_tasks, bool)
        or not isinstance(n_tasks, (int, np.integer))
        or n_tasks < 1
    ):
        raise ValueError(f"n_tasks must be an integer >= 1, got {n_tasks!r}")
    if method not in ("nearest", "prototype"):
        raise ValueError(
            f"method must be 'nearest' or 'prototype', got {method!r}"
        )
    rng = (
        seed
        if isinstance(seed, np.random.Generator)
        else np.random.default_rng(seed)
    )
    cls, wh = zip(
        *(
            episode_indices(embeddings.shape[0], n_way, k_shot, q_queries, rng)
            for _ in range(n_tasks)
        )
    )
    classes, which = np.stack(cls), np.stack(wh)
    # T,N,K+Q,D
    z = embeddings[
        torch.from_numpy(classes)[..., None], torch.from_numpy(which)
    ]
    support, query = z[:, :, :k_shot], z[:, :, k_shot:]
    q = query.reshape(n_tasks, n_way * q_queries, -1)
    if method == "prototype":
        d = torch.cdist(q, support.mean(2))  # T, NQ, N
    else:
        d = torch.cdist(q, support.reshape(n_tasks, n_way * k_shot, -1))
        d = d.reshape(n_tasks, -1, n_way, k_shot).amin(-1)
    predicted = d.argmin(-1).numpy()
    true = np.repeat(np.arange(n_way), q_queries)[None].repeat(n_tasks, 0)
    return classes, which, predicted, true


def few_shot_accuracy(
    embeddings: torch.Tensor,
    n_way: int,
    k_shot: int,
    n_tasks: int = 600,
    *,
    q_queries: int = 15,
    method: str = "nearest",
    seed: int | np.random.Generator | None = 1,
) -> np.ndarray:
    """Per-task query accuracy in percent, ``(n_tasks,)``; see
    :func:`few_shot_predictions`."""
    _, _, pred, true = few_shot_predictions(
        embeddings,
        n_way,
        k_shot,
        n_tasks,
        q_queries=q_queries,
        method=method,
        seed=seed,
    )
    return 100.0 * (pred == true).mean(1)


def lake_runs_accuracy(
    embed: Callable[[torch.Tensor], torch.Tensor] | nn.Module,
    runs: Sequence[Episode],
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Accuracy in percent on each of Lake et al.'s runs, by the nearest
    support embedding.

    ``runs`` come from :func:`mlkit.data.load_lake_runs` (20 runs, 20-way
    1-shot, 20 queries each: 400 trials). Returns
    ``(per-run accuracy (runs,), per-run predicted labels)``. Pass
    ``embed=lambda x: x.flatten(1)`` for the 1-nearest-neighbour baseline on
    pixels.
    """
    _check_embed(embed)
    if isinstance(runs, (str, bytes)) or not isinstance(runs, Sequence):
        raise ValueError(
            f"runs must be a list of episodes, got {type(runs).__name__}"
        )
    if len(runs) == 0:
        raise ValueError("runs must hold at least one episode, got none")
    for run in runs:
        fields = [
            getattr(run, f, None)
            for f in ("support_x", "support_y", "query_x", "query_y")
        ]
        if not all(isinstance(t, torch.Tensor) for t in fields) or (
            len(fields[0]) != len(fields[1])
            or len(fields[0]) == 0
            or len(fields[2]) != len(fields[3])
        ):
            raise ValueError(
                f"runs must hold episodes with support_x, "
                f"support_y, query_x and query_y (support and "
                f"query labels one per image), got {run!r}"
            )
    acc, preds = [], []
    for run in runs:
        zs, zq = embed_images(embed, run.support_x), embed_images(
            embed, run.query_x
        )
        pred = torch.cdist(zq, zs).argmin(1)
        preds.append(run.support_y[pred].numpy())
        acc.append(
            100.0 * float((run.support_y[pred] == run.query_y).float().mean())
        )
    return np.array(acc), preds


def best_threshold(
    distance: torch.Tensor | np.ndarray, same: torch.Tensor | np.ndarray
) -> float:
    """The distance threshold that best separates same from different pairs
    (``d <= t``: same).

    Chosen on pairs the test never sees (the training split), then applied
    unchanged to held-out pairs by :func:`verification_accuracy`.
    """
    d, y = _pairs(distance, same)
    order = np.argsort(d, kind="stable")
    ds, ys = d[order], y[order]
    # accuracy when the first i pairs (smallest distances) are called "same"
    correct = np.concatenate([[0], np.cumsum(ys)]) + np.concatenate(
        [[(~ys).sum()], (~ys).sum() - np.cumsum(~ys)]
    )
    i = int(np.argmax(correct))
    if i == 0:
        return float(ds[0] - 1e-6)
    return float(ds[i - 1] if i == len(ds) else 0.5 * (ds[i - 1] + ds[i]))


def verification_accuracy(
    distance: torch.Tensor | np.ndarray,
    same: torch.Tensor | np.ndarray,
    threshold: float,
) -> float:
    """Share of pairs (percent) that ``d <= threshold`` labels correctly as
    same/different."""
    d, y = _pairs(distance, same)
    if math.isnan(_check_number("threshold", threshold)):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    return float(100.0 * ((d <= threshold) == y).mean())


def nearest_neighbours(
    embeddings: torch.Tensor, queries: Sequence[int] | np.ndarray, k: int = 5
) -> np.ndarray:
    """Indices of the ``k`` nearest rows of ``embeddings`` ``(n, D)`` to each
    query row, the query itself excluded: ``(len(queries), k)``, nearest first
    (Euclidean).
    """
    q = np.asarray(queries)
    if q.size == 0 or q.dtype.kind not in "iu":
        raise ValueError(
            f"queries must be a non-empty list of row indices, "
            f"got {queries!r}"
        )
    q = q.astype(np.int64)
    _check_tensor("embeddings", embeddings)
    if embeddings.dim() != 2 or not embeddings.is_floating_point():
        raise ValueError(
            f"embeddings must be floating-point (n, D), got "
            f"{tuple(embeddings.shape)} {embeddings.dtype}"
        )
    if (
        isinstance(k, bool)
        or not isinstance(k, (int, np.integer))
        or not (1 <= k < len(embeddings))
    ):
        raise ValueError(
            f"k must be an integer in [1, {len(embeddings) - 1}], got {k!r}"
        )
    if q.ndim != 1 or len(q) == 0 or q.min() < 0 or q.max() >= len(embeddings):
        raise ValueError(
            f"queries must be row indices in [0, {len(embeddings) - 1}]"
        )
    d = torch.cdist(embeddings[torch.from_numpy(q)], embeddings)
    d[torch.arange(len(q)), torch.from_numpy(q)] = float("inf")
    return torch.topk(d, k, largest=False).indices.numpy()


def margin_report(
    distance: torch.Tensor | np.ndarray,
    same: torch.Tensor | np.ndarray,
    margin: float,
    *,
    form: str = "source",
) -> dict[str, float]:
    """What a margin ``m`` does to a fixed set of pairs with distances ``d``.

    Returns the mean contrastive loss (``form``), the share of different-class
    pairs still inside the margin (``d < m``, the ones that push), and the mean
    same-class and different-class parts of the loss. The distances are fixed:
    this measures the loss a trained model would feel at ``m``, without
    retraining it.
    """
    d, y = (
        torch.as_tensor(a, dtype=torch.float64) for a in _pairs(distance, same)
    )
    per = contrastive_loss(d, y, margin, form=form, reduction="none")
    diff = y == 0
    if not bool(diff.any()) or bool(diff.all()):
        raise ValueError(
            "same must hold both same-class (1) and different-class (0) pairs"
        )
    return {
        "loss": float(per.mean()),
        "inside_margin": float((d[diff] < margin).double().mean()),
        "loss_same": float(per[~diff].mean()),
        "loss_different": float(per[diff].mean()),
    }


def loss_gradient_curves(
    distance: torch.Tensor | np.ndarray, margin: float = 1.0
) -> dict[str, dict[str, np.ndarray]]:
    """Per-pair loss and its derivative ``dL/dd`` over a grid of distances, for
    both forms and both pair kinds:
    ``{form: {"same", "different", "grad_same", "grad_different"}}``.

    The derivatives come from autograd through :func:`contrastive_loss`: the
    source's form pulls every same pair with the same force 1 and pushes every
    different pair inside the margin with force 1; Hadsell's pulls with force
    ``d`` and pushes with ``m - d``.
    """
    _check_margin(margin)
    try:
        grid = np.asarray(distance, np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"distance must be an (n,) array of numbers, got {distance!r}"
        ) from None
    if grid.ndim != 1 or not np.isfinite(grid).all():
        raise ValueError(
            f"distance must be (n,) and finite, got shape {grid.shape}"
        )
    out: dict[str, dict[str, np.ndarray]] = {}
    for form in LOSS_FORMS:
        out[form] = {}
        for kind, label in (("same", 1.0), ("different", 0.0)):
            d = torch.as_tensor(
                np.asarray(distance), dtype=torch.float64
            ).clone()
            d.requires_grad_(True)
            per = contrastive_loss(
                d,
                torch.full_like(d, label),
                margin,
                form=form,
                reduction="none",
            )
            (g,) = torch.autograd.grad(per.sum(), d)
            out[form][kind] = per.detach().numpy()
            out[form]["grad_" + kind] = g.numpy()
    return out


def fit_2d_embedding(
    features: torch.Tensor,
    labels: torch.Tensor | np.ndarray,
    margin: float,
    *,
    form: str = "source",
    steps: int = 150,
    lr: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """A small 2-D Siamese embedding trained in well under a second, for the
    margin slider.

    A linear map ``g: R^D -> R^2`` (one set of weights for both members of a
    pair) is fitted with Adam on all pairs of the rows of ``features`` (e.g.
    frozen 64-d embeddings of a few characters) under :func:`contrastive_loss`
    at ``margin``; the loss is the mean over the same pairs plus the mean over
    the different pairs, so that the many different pairs do not drown the few
    same ones. Returns the 2-D points ``(n, 2)``.
    """
    _check_margin(margin)
    if form not in LOSS_FORMS:
        raise ValueError(
            f"form must be one of {list(LOSS_FORMS)}, got {form!r}"
        )
    _check_count("steps", steps)
    _check_positive("lr", lr)
    _check_count("seed", seed, 0)
    try:
        x = torch.as_tensor(features, dtype=torch.float32)
        y = torch.as_tensor(np.asarray(labels))
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"features must be (n, D) and labels (n,) arrays, "
            f"got {type(features).__name__} and "
            f"{type(labels).__name__}"
        ) from None
    if x.dim() != 2 or y.shape != x.shape[:1] or x.shape[1] == 0:
        raise ValueError(
            f"features must be (n, D) and labels (n,), got {tuple(x.shape)} "
            f"and {tuple(y.shape)}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError("features must be finite (no NaN or inf)")
    _, counts = np.unique(y.numpy(), return_counts=True)
    if len(counts) < 2 or counts.max() < 2:
        raise ValueError(
            f"labels must hold at least two classes, one of them "
            f"twice (same and different pairs), got {y.tolist()}"
        )
    gen = torch.Generator().manual_seed(seed)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    w = (
        torch.randn(x.shape[1], 2, generator=gen) / math.sqrt(x.shape[1])
    ).requires_grad_(True)
    i, j = torch.triu_indices(len(x), len(x), 1)
    same = (y[i] == y[j]).float()
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        z = x @ w
        per = contrastive_loss(
            euclidean_distance(z[i], z[j]),
            same,
            margin,
            form=form,
            reduction="none",
        )
        loss = per[same == 1].mean() + per[same == 0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (x @ w).detach().numpy()


# -----------------------------------------------------------------------------
# Training
# -----------------------------------------------------------------------------

SIAMESE_CONFIG: dict[str, Any] = {
    # Lake's 30 background alphabets; tests use evaluation
    "split": "background",
    "rotations": True,  # each character under 4 quarter turns as 4 classes
    # channels per block (the variants measured: benchmarks/RESULTS.md)
    "hidden": 128,
    "margin": 1.0,
    "form": "hadsell",
    "n_pairs": 256,
    "within_alphabet": 0.5,
    "augment": True,
    # train on every pair within a batch, not only its n_pairs
    "all_pairs": True,
    # average the different-class term over all pairs ("all")
    "negatives": "active",
    # or over those still inside the margin ("active")
    "normalize": True,  # embeddings on the unit sphere
    "lr": 1e-3,
    "lr_halvings": 3,  # the rate halves 3 times, evenly over the run
    "eval_every": 500,
    "eval_tasks": 200,
}


def halving_rate(
    base: float, iteration: int, iterations: int, halvings: int
) -> float:
    """Step decay: the rate ``base`` halved ``halvings`` times at evenly spaced
    iterations of a run of ``iterations`` (the schedule of the Siamese and
    prototypical recipes).
    """
    _check_positive("base", base)
    _check_count("iteration", iteration, 0)
    _check_count("iterations", iterations)
    _check_count("halvings", halvings, 0)
    step = max(1, iterations // (halvings + 1))
    return base * 0.5 ** min(iteration // step, halvings)


def _check_negatives(negatives: str) -> None:
    if negatives not in ("all", "active"):
        raise ValueError(
            f"negatives must be 'all' or 'active', got {negatives!r}"
        )


def balanced_pair_loss(
    per_pair: torch.Tensor, same: torch.Tensor, *, negatives: str = "all"
) -> torch.Tensor:
    """Half the mean per-pair loss over same-class pairs plus half over
    different-class pairs.

    A batch of ``n`` images has about ``n/2`` same-class pairs and ``n(n-1)/2``
    different-class ones; averaging each kind on its own lets both weigh the
    same. ``negatives="active"`` averages the different-class term over the
    pairs with a nonzero loss only (those still inside the margin; all of them
    when none is), the "batch-all" averaging of Hermans, Beyer & Leibe 2017,
    "In defense of the triplet loss": otherwise the many easy pairs, which
    contribute zero, dilute the gradient of the few that still push.
    """
    _check_negatives(negatives)
    _check_tensor("per_pair", per_pair)
    _check_tensor("same", same)
    if not per_pair.is_floating_point():
        raise ValueError(
            f"per_pair must be a floating-point tensor, got "
            f"{per_pair.dtype}"
        )
    if per_pair.shape != same.shape or per_pair.dim() != 1:
        raise ValueError(
            "per_pair and same must both be (n,), got "
            f"{tuple(per_pair.shape)} and {tuple(same.shape)}"
        )
    pos, neg = per_pair[same == 1], per_pair[same == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError(
            "same must hold both same-class (1) and different-class (0) pairs"
        )
    if len(pos) + len(neg) != len(same):
        raise ValueError(
            "same must hold only 0 (different class) and 1 (same class)"
        )
    if negatives == "active" and bool((neg > 0).any()):
        neg = neg[neg > 0]
    return 0.5 * (pos.mean() + neg.mean())


def eval_subset(stride: int = 3) -> ClassPool:
    """Every ``stride``-th character of the evaluation alphabets (all 20
    alphabets stay in): a cheaper pool for the accuracy curves recorded during
    training."""
    _check_count("stride", stride)
    full = omniglot_classes("evaluation")
    keep = np.arange(0, len(full.char_ids), stride)
    return ClassPool(
        "evaluation-subset",
        full.images[keep],
        full.char_ids[keep],
        np.arange(len(keep)),
        np.zeros(len(keep), dtype=int),
    )


def build_siamese(config: dict[str, Any]) -> SiameseNet:
    """A fresh :class:`SiameseNet` with the embedding width that ``config``
    names."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict, got {type(config).__name__}")
    _check_count("hidden", config.get("hidden", 64))
    if not isinstance(config.get("normalize", False), bool):
        raise ValueError(
            f"normalize must be True or False, got {config['normalize']!r}"
        )
    return SiameseNet(
        InductiveConvEmbedding(
            hidden=int(config.get("hidden", 64)),
            normalize=bool(config.get("normalize", False)),
        )
    )


def _check_flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _check_training(
    config: Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """``defaults`` updated with ``config``, every entry checked (before any
    data loads), for :func:`train_siamese` and
    :func:`mlkit.protonet.train_protonet`."""
    cfg = _merge_config(config, defaults)
    counts = {
        "hidden": 1,
        "n_pairs": 4,
        "train_way": 2,
        "k_shot": 1,
        "q_queries": 1,
        "lr_halvings": 0,
        "eval_every": 0,
        "eval_tasks": 1,
    }
    for key, value in cfg.items():
        if key == "split" and value not in SPLITS:
            raise ValueError(
                f"split must be one of {list(SPLITS)}, got {value!r}"
            )
        if key in ("augment", "all_pairs", "normalize") or (
            key == "rotations" and value is not None
        ):
            _check_flag(key, value)
        if key in counts:
            _check_count(key, value, counts[key])
        if key in ("lr", "margin"):
            _check_positive(key, value)
        if key == "within_alphabet":
            _check_fraction(key, value)
        if key == "form" and value not in LOSS_FORMS:
            raise ValueError(
                f"form must be one of {list(LOSS_FORMS)}, got {value!r}"
            )
        if key == "negatives":
            _check_negatives(value)
    return cfg


def _check_run_args(
    iterations: Any, seed: Any, resume: Any, run_name: Any, progress: Any
) -> None:
    _check_count("iterations", iterations)
    _check_count("seed", seed, 0)
    _check_flag("resume", resume)
    _check_flag("progress", progress)
    if run_name is not None and not isinstance(run_name, str):
        raise ValueError(
            f"run_name must be None or a string, got {run_name!r}"
        )


def _eval_snapshot(
    net: SiameseNet, pool: ClassPool, tasks: int, method: str
) -> dict[str, float]:
    z = embed_pool(net.embedding, pool)
    out = {}
    for n_way in (5, 20):
        out[f"{n_way}way1shot"] = float(
            few_shot_accuracy(
                z, n_way, 1, tasks, q_queries=5, method=method, seed=123
            ).mean()
        )
    return out


def train_siamese(
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
) -> tuple[SiameseNet, dict[str, Any]]:
    """Train a Siamese network on balanced pairs with the contrastive loss
    (Adam).

    Minimises :func:`contrastive_loss` (``config["form"]``,
    ``config["margin"]``) over :class:`PairSampler` batches from
    ``config["split"]``. With ``config["all_pairs"]`` the loss covers every
    pair of the batch's images (``n_pairs/2`` same-class pairs and all
    different-class ones), the mean over same pairs and the mean over different
    pairs weighing one half each; otherwise only the sampler's balanced pairs.
    With ``config["negatives"] == "active"`` the different-class mean is taken
    over the pairs still inside the margin only (those with a nonzero loss), so
    that the many easy negatives of a large batch do not dilute the gradient of
    the hard ones (the "batch-all" averaging of Hermans, Beyer & Leibe 2017).
    Every ``eval_every`` iterations it records 5- and 20-way 1-shot accuracy on
    a third of the evaluation characters (:func:`eval_subset`; for the curves
    only, nothing is selected on them). With ``run_name`` the state is saved
    every ``save_every`` seconds and ``resume=True`` continues from it; with
    ``time_limit_s`` the loop stops after that many seconds and saves the
    iteration it reached. Returns ``(net, history)``.
    """
    # fail before the data loads, not at the first step
    cfg = _check_training(config, SIAMESE_CONFIG)
    _check_run_args(iterations, seed, resume, run_name, progress)
    torch.manual_seed(seed)
    pool = omniglot_classes(cfg["split"], rotations=cfg["rotations"])
    test_pool = eval_subset()
    # channels_last: the oneDNN convolutions run about 1.5-2x faster on this
    # CPU
    net = build_siamese(cfg).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    sampler = PairSampler(
        pool,
        cfg["n_pairs"],
        within_alphabet=cfg["within_alphabet"],
        augment=cfg["augment"],
        seed=seed,
    )
    history: dict[str, Any] = {
        "iteration": [],
        "loss": [],
        "d_same": [],
        "d_diff": [],
        "inside_margin": [],
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
        desc="siamese",
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
        b = sampler.batch()
        images = b.images.to(device).contiguous(
            memory_format=torch.channels_last
        )
        if cfg["all_pairs"]:
            # every pair in the batch: n/2 same-class pairs and many more
            # different-class ones, each kind averaged on its own so that both
            # weigh the same (balanced)
            left, right = (
                t.to(device)
                for t in torch.triu_indices(len(images), len(images), 1)
            )
            cls = torch.from_numpy(b.classes).to(device)
            same = (cls[left] == cls[right]).float()
            d = net.pair_distances(images, left, right)
            per = contrastive_loss(
                d, same, cfg["margin"], form=cfg["form"], reduction="none"
            )
            loss = balanced_pair_loss(per, same, negatives=cfg["negatives"])
        else:
            d = net.pair_distances(
                images, b.left.to(device), b.right.to(device)
            )
            same = b.same.to(device)
            loss = contrastive_loss(d, same, cfg["margin"], form=cfg["form"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        dd = d.detach()
        history["iteration"].append(it + 1)
        history["loss"].append(loss.item())
        history["d_same"].append(float(dd[same == 1].mean()))
        history["d_diff"].append(float(dd[same == 0].mean()))
        history["inside_margin"].append(
            float((dd[same == 0] < cfg["margin"]).float().mean())
        )
        if cfg["eval_every"] and (
            (it + 1) % cfg["eval_every"] == 0 or it + 1 == iterations
        ):
            history["eval_iteration"].append(it + 1)
            history["eval"].append(
                _eval_snapshot(net, test_pool, cfg["eval_tasks"], "nearest")
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
    net.eval()
    return net, history


def load_siamese(
    name: str = "siamese-omniglot",
) -> tuple[SiameseNet, dict[str, Any]]:
    """The trained Siamese network of checkpoint ``name`` (in ``eval()`` mode)
    and its entry."""
    if not isinstance(name, str):
        raise ValueError(
            f"name must be a checkpoint name (a string), got {name!r}"
        )
    state, entry = load_checkpoint(name)
    net = build_siamese(entry["config"])
    net.load_state_dict(state)
    return net.eval(), entry


class EnsembleEmbedding(nn.Module):
    r"""Several trained embedding networks used as one.

    ``f(x) = [f_1(x) / |f_1(x)|, ..., f_k(x) / |f_k(x)|] / sqrt(k)``: each
    member's embedding on the unit sphere, concatenated and scaled so that the
    squared distance of the ensemble is the mean of the members' squared
    distances,
    :math:`d^2(f(a), f(b)) = \frac1k \sum_j d^2(\hat f_j(a), \hat f_j(b))`.
    Every function that takes an embedding network (nearest-support
    classification, Lake's runs) then uses the averaged distance unchanged. The
    members are trained apart (usually one recipe from different seeds), so
    this averages out the noise of any one run; it costs ``k`` times the
    embedding time.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if isinstance(members, nn.Module) or not isinstance(
            members, (Sequence, nn.ModuleList)
        ):
            raise ValueError(
                f"members must be a list of embedding networks, "
                f"got {type(members).__name__}"
            )
        members = list(members)
        if not members:
            raise ValueError(
                "members must hold at least one embedding network, got none"
            )
        if not all(isinstance(m, nn.Module) for m in members):
            raise ValueError(
                f"members must hold torch.nn.Modules, got "
                f"{[type(m).__name__ for m in members]}"
            )
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = [F.normalize(m(x), dim=1) for m in self.members]
        return torch.cat(z, dim=1) / math.sqrt(len(z))


# The recipe trained from three seeds: seed 0 is siamese-omniglot, the others
# have their own checkpoints (trained as variants v5 and v11 of
# benchmarks/siamese_variants.py).
ENSEMBLE_SEEDS = (0, 1, 2)


def seed_checkpoint(seed: int) -> str:
    """The checkpoint name of the Siamese recipe trained from ``seed``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    return "siamese-omniglot" if seed == 0 else f"siamese-omniglot-seed{seed}"


def load_siamese_ensemble(
    seeds: Sequence[int] = ENSEMBLE_SEEDS,
) -> tuple[EnsembleEmbedding, list[dict[str, Any]]]:
    """The Siamese recipe's checkpoints from ``seeds`` as one
    :class:`EnsembleEmbedding` (in ``eval()`` mode), and their manifest
    entries."""
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
        raise ValueError(f"seeds must be a list of seeds, got {seeds!r}")
    if not seeds:
        raise ValueError("seeds must name at least one seed, got none")
    names = [seed_checkpoint(s) for s in seeds]  # every seed checked first
    loaded = [load_siamese(name) for name in names]
    return (
        EnsembleEmbedding([net.embedding for net, _ in loaded]).eval(),
        [entry for _, entry in loaded],
    )


# -----------------------------------------------------------------------------
# Command line (python -m mlkit train|evaluate siamese-omniglot)
# -----------------------------------------------------------------------------

# Lake's 20 runs, accuracy in percent (Koch et al. 2015, table 2; Lake et al.
# 2015).
LAKE_ANCHORS: dict[str, float] = {
    "humans (Lake et al. 2015)": 95.5,
    "convolutional Siamese net (Koch et al. 2015)": 92.0,
    "1-NN on pixels (Koch et al. 2015, table 2)": 21.7,
}

SIAMESE_ITERATIONS = 10000
# kept in the manifest
SIAMESE_CURVES = ("loss", "d_same", "d_diff", "inside_margin")


def _check_variants(variants: Any, keys: Sequence[str]) -> None:
    if isinstance(variants, (str, bytes)) or not isinstance(
        variants, Sequence
    ):
        raise ValueError(
            f"variants must be a list of rows (dicts), got "
            f"{type(variants).__name__}"
        )
    for v in variants:
        if not isinstance(v, Mapping) or not all(k in v for k in keys):
            raise ValueError(
                f"variants must hold rows with the keys "
                f"{list(keys)}, got {v!r}"
            )


def recipe_seeds(
    variants: Sequence[dict[str, Any]], recipe: str = "v4"
) -> list[str]:
    """The tags of the recorded ``variants`` that train ``recipe``'s
    configuration (its ``changes``), that is, the recipe itself and its runs
    from other seeds."""
    _check_variants(variants, ("tag", "changes"))
    if not isinstance(recipe, str):
        raise ValueError(
            f"recipe must be a variant's tag (a string), got {recipe!r}"
        )
    by_tag = {v["tag"]: v for v in variants}
    if recipe not in by_tag:
        raise ValueError(
            f"recipe must be one of the variants' tags {list(by_tag)}, "
            f"got {recipe!r}"
        )
    return [
        t
        for t, v in by_tag.items()
        if v["changes"] == by_tag[recipe]["changes"]
    ]


def seed_report(
    variants: Sequence[dict[str, Any]],
    recipe: str = "v4",
    target: float = LAKE_ANCHORS[
        "convolutional Siamese net (Koch et al. 2015)"
    ],
) -> list[str]:
    """Read recorded recipe variants against the spread between seeds of one
    recipe.

    ``variants`` are the rows of ``metrics["variants"]`` (``tag``, ``what``,
    ``changes``, ``seed``, ``lake_runs`` and ``evaluation_20way1shot`` as
    ``[mean, ci95]``). The runs whose ``changes`` equal those of ``recipe`` are
    that recipe from other seeds. Returns one line with the seeds' range on
    both measures, then one line for each other run that reaches ``target`` on
    Lake's runs, saying whether it also beats the best seed on the 600 20-way
    episodes (the measure with the narrower interval)."""
    _check_variants(
        variants,
        ("tag", "what", "changes", "lake_runs", "evaluation_20way1shot"),
    )
    for v in variants:
        for key in ("lake_runs", "evaluation_20way1shot"):
            row = v[key]
            if (
                isinstance(row, (str, bytes))
                or not isinstance(row, Sequence)
                or not row
                or not all(
                    isinstance(x, (int, float))
                    and not isinstance(x, bool)
                    and math.isfinite(x)
                    for x in row
                )
            ):
                raise ValueError(
                    f"variants' {key} must be [mean, ci95], got {row!r}"
                )
    if math.isnan(_check_number("target", target)):
        raise ValueError(f"target must be a number, got {target!r}")
    by_tag = {v["tag"]: v for v in variants}
    seeds = recipe_seeds(variants, recipe)

    def spread(key: str) -> str:
        values = [by_tag[t][key][0] for t in seeds]
        return f"{min(values):.2f}–{max(values):.2f}"

    named = ", ".join(f"{t}: seed {by_tag[t].get('seed', 0)}" for t in seeds)
    lines = [
        f"{recipe} from {len(seeds)} seeds ({named}): "
        f"Lake's runs {spread('lake_runs')}, 20-way episodes "
        f"{spread('evaluation_20way1shot')}"
    ]
    best = max(by_tag[t]["evaluation_20way1shot"][0] for t in seeds)
    for t, v in by_tag.items():
        if t in seeds or v["lake_runs"][0] < target:
            continue
        episodes = v["evaluation_20way1shot"][0]
        lines.append(
            f"{t} ({v['what']}): {v['lake_runs'][0]:.2f} on Lake's runs, "
            f"{episodes:.2f} on the 20-way episodes, "
            f"{'above' if episodes > best else 'not above'} the best seed's "
            f"{best:.2f}"
        )
    return lines


def final_metrics(
    embed: nn.Module, *, method: str, tasks: int = 600, seed: int = 1
) -> dict[str, Any]:
    """Lake runs and 5-/20-way 1-shot accuracy (evaluation alphabets) with 95%
    CIs."""
    runs = load_lake_runs()
    lake, _ = lake_runs_accuracy(embed, runs)
    z = embed_pool(embed, omniglot_classes("evaluation"))
    out: dict[str, Any] = {"lake_runs": list(mean_ci95(lake))}
    for n_way in (5, 20):
        acc = few_shot_accuracy(z, n_way, 1, tasks, method=method, seed=seed)
        out[f"evaluation_{n_way}way1shot"] = list(mean_ci95(acc))
    return {k: [round(v[0], 2), round(v[1], 2)] for k, v in out.items()}


def training_curves(
    history: dict[str, Any], keys: Sequence[str], points: int = 100
) -> dict[str, list]:
    """A compact copy of a training history for the manifest: ``keys`` averaged
    over about ``points`` equal windows, plus the evaluation snapshots."""
    _check_count("points", points)
    if not isinstance(history, Mapping) or not all(
        k in history for k in ("iteration", "eval_iteration", "eval")
    ):
        raise ValueError(
            "history must be a training history with the keys "
            "'iteration', 'eval_iteration' and 'eval'"
        )
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
        raise ValueError(f"keys must be a list of history keys, got {keys!r}")
    n = len(history["iteration"])
    if n == 0:
        raise ValueError("history must hold at least one iteration, got none")
    for k in keys:
        if k not in history or len(history[k]) != n:
            raise ValueError(
                f"keys must name history entries with one value "
                f"per iteration ({n}), got {k!r}"
            )
    evals = history["eval"]
    if len(evals) != len(history["eval_iteration"]) or not all(
        isinstance(e, Mapping) and set(e) == set(evals[0]) for e in evals
    ):
        raise ValueError(
            "history['eval'] must hold one dict (with the same "
            "keys) per history['eval_iteration']"
        )
    edges = np.linspace(0, n, min(points, n) + 1).astype(int)
    out: dict[str, list] = {
        "iteration": [int(history["iteration"][e - 1]) for e in edges[1:]]
    }
    for k in keys:
        v = np.asarray(history[k], np.float64)
        out[k] = [
            round(float(v[a:b].mean()), 4) for a, b in zip(edges, edges[1:])
        ]
    out["eval_iteration"] = list(history["eval_iteration"])
    for k in (history["eval"][0] if history["eval"] else {}):
        out["eval_" + k] = [round(e[k], 2) for e in history["eval"]]
    return out


def train_embedding_cli(
    args: argparse.Namespace,
    name: str,
    train: Callable[..., Any],
    iterations: int,
    config: dict[str, Any],
    *,
    method: str,
    curve_keys: Sequence[str],
    embedding: Callable[[nn.Module], nn.Module] = lambda net: net,
    command: str | None = None,
    keep: Sequence[str] = (),
) -> None:
    """The ``train`` command for an embedding learner (Siamese or
    prototypical): run ``train(iterations, ...)`` with the command line's seed,
    resume, device and time budget, measure the trained ``embedding(net)``
    (:func:`final_metrics` with ``method``) and write the checkpoint with the
    iteration reached and which machine trained which iterations. ``command``
    is the manifest's command (default: ``train name`` with the seed); ``keep``
    names measurements of the old entry to carry over (see
    :func:`save_embedding_checkpoint`).
    """
    # one thread unless --threads says otherwise: the CPU is shared with other
    # runs
    torch.set_num_threads(getattr(args, "threads", None) or 1)
    net, history = train(
        iterations,
        seed=args.seed,
        resume=args.resume,
        run_name=name,
        save_every=args.save_every,
        device=args.device,
        time_limit_s=(
            None if args.max_minutes is None else 60.0 * args.max_minutes
        ),
    )
    if not history["iteration"]:
        print(
            f"{name}: already at {history['sessions'][-1]['to_iteration']} "
            "iterations; nothing trained, checkpoint left as it is"
        )
        return
    save_embedding_checkpoint(
        name,
        net,
        history,
        iterations,
        config,
        seed=args.seed,
        method=method,
        curve_keys=curve_keys,
        embedding=embedding,
        command=command,
        keep=keep,
        directory=run_dir(name),
    )


def save_embedding_checkpoint(
    name: str,
    net: nn.Module,
    history: dict[str, Any],
    iterations: int,
    config: dict[str, Any],
    *,
    seed: int,
    method: str,
    curve_keys: Sequence[str],
    embedding: Callable[[nn.Module], nn.Module] = lambda net: net,
    command: str | None = None,
    keep: Sequence[str] = (),
    directory: Path | None = None,
) -> dict[str, Any]:
    """Measure a trained embedding learner on the CPU (:func:`final_metrics`
    with ``method``) and write checkpoint ``name``: weights, ``config``, the
    command that reproduces it (``command``; default
    ``python -m mlkit train name --iterations N --seed S``), the iteration
    reached and the training history's sessions and curves. The metrics named
    in ``keep`` are carried over from the entry being replaced (measurements of
    other runs kept beside this one, such as the Siamese recipe variants).
    ``directory`` is where the checkpoint goes (default: the book's
    ``checkpoints/``; ``train`` gives its run folder). Returns the metrics."""
    reached = history["sessions"][-1]["to_iteration"]
    net = net.cpu().eval()
    metrics = final_metrics(embedding(net), method=method)
    metrics["final_loss"] = round(float(np.mean(history["loss"][-100:])), 4)
    metrics["sessions"] = history["sessions"]
    metrics["curves"] = training_curves(history, list(curve_keys))
    old = manifest().get(name, {}).get("metrics", {})
    metrics.update({k: old[k] for k in keep if k in old})
    cmd = command or (
        f"python -m mlkit train {name} --iterations {iterations} "
        f"--seed {seed}"
    )
    path = save_checkpoint(
        name,
        net.state_dict(),
        config={**config},
        command=cmd,
        seed=seed,
        iterations=reached,
        wall_time_s=history["wall_time_s"],
        metrics=metrics,
        directory=directory,
    )
    print(f"{name}: saved {path}; {metrics}")
    return metrics


def _train_cli(args: argparse.Namespace) -> None:
    train_embedding_cli(
        args,
        "siamese-omniglot",
        train_siamese,
        args.iterations or SIAMESE_ITERATIONS,
        SIAMESE_CONFIG,
        method="nearest",
        curve_keys=SIAMESE_CURVES,
        embedding=lambda net: net.embedding,
        # the variants are other runs: still true after a retraining
        keep=("variants",),
    )


def evaluate_embedding(
    args: argparse.Namespace, embed: nn.Module, method: str, label: str
) -> dict[str, Any]:
    """The ``evaluate`` command for an embedding learner (Siamese or
    prototypical)."""
    if getattr(args, "threads", None) is None:
        torch.set_num_threads(1)  # small embeddings: one thread is the faster
    if args.lake_runs:
        runs = load_lake_runs()
        acc, _ = lake_runs_accuracy(embed, runs)
        pixels, _ = lake_runs_accuracy(lambda x: x.flatten(1), runs)
        mean, ci = mean_ci95(acc)
        print(
            "Lake et al.'s 20 runs (20-way 1-shot within an alphabet, 400 "
            "trials):"
        )
        for k, v in LAKE_ANCHORS.items():
            print(f"  {k:<48s} {v:5.1f}")
        print(f"  {'1-NN on 28x28 pixels (ours)':<48s} {pixels.mean():5.1f}")
        print(f"  {label + ' (ours)':<48s} {mean:5.1f} ± {ci:.1f}")
        return {
            "metric": "accuracy",
            "mean": mean,
            "ci95": ci,
            "tasks": len(runs),
        }
    split = args.split or "evaluation"
    n_way, k_shot = args.ways or 5, args.shots or 1
    check_test_shots(k_shot)
    pool = omniglot_classes(split)
    z = embed_pool(embed, pool)
    acc = few_shot_accuracy(
        z,
        n_way,
        k_shot,
        args.tasks,
        q_queries=min(15, DRAWINGS - k_shot),
        method=method,
        seed=args.seed,
    )
    mean, ci = mean_ci95(acc)
    return {
        "metric": "accuracy",
        "mean": mean,
        "ci95": ci,
        "tasks": args.tasks,
    }


def _evaluate_cli(args: argparse.Namespace) -> dict[str, Any]:
    net, _ = load_siamese("siamese-omniglot")
    return evaluate_embedding(
        args, net.embedding, "nearest", "Siamese net, contrastive loss"
    )


def _train_ensemble_cli(args: argparse.Namespace) -> None:
    """Train the recipe from the ensemble's other seeds, one checkpoint each
    (seed 0 is ``train siamese-omniglot``); ``--max-minutes`` bounds both runs
    together.
    """
    import time
    from types import SimpleNamespace

    if args.seed != 0:
        raise ValueError(
            f"siamese-omniglot-ensemble trains its fixed seeds "
            f"{ENSEMBLE_SEEDS[1:]}; --seed {args.seed} is not used"
        )
    iterations = args.iterations or SIAMESE_ITERATIONS
    deadline = (
        None
        if args.max_minutes is None
        else time.monotonic() + 60.0 * args.max_minutes
    )
    for seed in ENSEMBLE_SEEDS[1:]:
        name = seed_checkpoint(seed)
        left = (
            None if deadline is None else (deadline - time.monotonic()) / 60.0
        )
        if left is not None and left <= 0:
            print(f"{name}: no time left; --resume goes on")
            return
        run = SimpleNamespace(
            **{**vars(args), "seed": seed, "max_minutes": left}
        )
        train_embedding_cli(
            run,
            name,
            train_siamese,
            iterations,
            SIAMESE_CONFIG,
            method="nearest",
            curve_keys=SIAMESE_CURVES,
            embedding=lambda net: net.embedding,
            command=f"python -m mlkit train siamese-omniglot-ensemble "
            f"--iterations {iterations}",
        )
        state = load_state(name)
        if state is not None and state["iteration"] < iterations:
            # stopped by the time limit; the next seed waits for --resume
            return


def _promote_ensemble_cli(args: argparse.Namespace) -> list[Path]:
    """Promote the runs of the ensemble's other seeds into ``checkpoints/``,
    then measure the ensemble and keep its metrics under ``siamese-omniglot``'s
    ``metrics.ensemble``.
    """
    paths = [
        promote(seed_checkpoint(seed))["path"] for seed in ENSEMBLE_SEEDS[1:]
    ]
    row = measure_ensemble()
    record_metrics("siamese-omniglot", {"ensemble": row})
    print(f"siamese-omniglot-ensemble: {row}")
    return paths


def measure_ensemble(seeds: Sequence[int] = ENSEMBLE_SEEDS) -> dict[str, Any]:
    """:func:`final_metrics` of the recipe's checkpoints from ``seeds`` as one
    :class:`EnsembleEmbedding`, with the members' names and seeds;
    ``train siamese-omniglot-ensemble`` keeps it under ``siamese-omniglot``'s
    ``metrics.ensemble``.
    """
    ensemble, entries = load_siamese_ensemble(seeds)
    return {
        "members": [seed_checkpoint(s) for s in seeds],
        "seeds": [e["seed"] for e in entries],
        **final_metrics(ensemble, method="nearest"),
    }


def _evaluate_ensemble_cli(args: argparse.Namespace) -> dict[str, Any]:
    ensemble, _ = load_siamese_ensemble()
    return evaluate_embedding(
        args,
        ensemble,
        "nearest",
        f"Siamese nets of {len(ENSEMBLE_SEEDS)} seeds, mean d²",
    )


# The command-line flags an embedding learner's recipes take (see
# mlkit.__main__).
EMBEDDING_FLAGS = frozenset(
    {"tasks", "ways", "shots", "split", "lake_runs", "seed", "allow_seen"}
)
EMBEDDING_TRAIN_FLAGS = frozenset(
    {"iterations", "seed", "device", "max_minutes"}
)


def _recipes() -> dict[str, Any]:
    from .__main__ import Recipe

    return {
        "siamese-omniglot": Recipe(
            "siamese-omniglot",
            "Siamese net with the contrastive loss on Lake's background "
            "alphabets",
            _train_cli,
            _evaluate_cli,
            evaluate_flags=EMBEDDING_FLAGS,
            train_flags=EMBEDDING_TRAIN_FLAGS,
            trained_on="background",
            test_split="evaluation",
        ),
        "siamese-omniglot-ensemble": Recipe(
            "siamese-omniglot-ensemble",
            "the Siamese recipe from seeds 0, 1 and 2, squared distances "
            "averaged (train: seeds 1 and 2)",
            _train_ensemble_cli,
            _evaluate_ensemble_cli,
            evaluate_flags=EMBEDDING_FLAGS,
            train_flags=EMBEDDING_TRAIN_FLAGS,
            promote=_promote_ensemble_cli,
            trained_on="background",
            test_split="evaluation",
            runs=tuple(seed_checkpoint(s) for s in ENSEMBLE_SEEDS[1:]),
        ),
    }


RECIPES = _recipes()
