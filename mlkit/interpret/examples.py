"""Example-based explanations: prototypes and criticisms (MMD-critic).

A data set (or its embedding) is summarised by a few of its own points:
*prototypes* that together look like the data, and *criticisms*, the points
the prototypes represent worst (Kim, Khanna & Koyejo 2016, "Examples are not
enough, learn to criticize!", NeurIPS). Both are chosen with the maximum mean
discrepancy (MMD) of an RBF kernel
``k(a, b) = exp(-gamma * ||a - b||^2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import _check_input, _check_number, _check_positive_int

__all__ = ["MMDCritic", "median_gamma", "mmd2", "mmd_critic", "rbf_kernel"]

REGULARIZERS = ("logdet", None)


def _check_points(name: str, z: object) -> Tensor:
    """A finite floating-point ``(n, d)`` tensor, as float64."""
    z = _check_input(name, z)
    if z.dim() != 2:
        raise ValueError(
            f"{name} must be a 2-d tensor (n points x d "
            f"features), got shape {tuple(z.shape)}"
        )
    if z.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least one feature, got shape "
            f"{tuple(z.shape)}"
        )
    if not bool(torch.isfinite(z).all()):
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    return z.detach().double()


def _squared_distances(a: Tensor, b: Tensor) -> Tensor:
    # the expanded form can go slightly negative by rounding
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return d2.clamp_min(0.0)


def median_gamma(z: Tensor) -> float:
    """The median heuristic: ``1 / median ||z_i - z_j||^2`` over the pairs
    ``i < j`` of the rows of ``z`` (Gretton et al. 2012's choice of
    bandwidth; the default of :func:`mmd_critic`)."""
    z = _check_points("z", z)
    if len(z) < 2:
        raise ValueError(
            f"z must hold at least 2 points for the median "
            f"heuristic, got {len(z)}"
        )
    d2 = _squared_distances(z, z)
    i, j = torch.triu_indices(len(z), len(z), 1)
    med = float(d2[i, j].median())
    if not med > 0:
        raise ValueError(
            "z must have distinct points: the median squared "
            "distance is 0, so gamma cannot be set from it; "
            "pass gamma"
        )
    return 1.0 / med


def rbf_kernel(a: Tensor, b: Tensor, gamma: float) -> Tensor:
    """``K_ij = exp(-gamma * ||a_i - b_j||^2)``, in float64."""
    a, b = _check_points("a", a), _check_points("b", b)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"a and b must have the same number of features, "
            f"got {a.shape[1]} and {b.shape[1]}"
        )
    gamma = _check_number("gamma", gamma)
    return torch.exp(-gamma * _squared_distances(a, b))


def _check_indices(name: str, idx: object, n: int) -> Tensor:
    t = torch.as_tensor(idx)
    if (
        t.dim() != 1
        or t.numel() == 0
        or t.is_floating_point()
        or t.dtype == torch.bool
    ):
        raise ValueError(
            f"{name} must be a non-empty 1-d sequence of "
            f"integer indices, got {idx!r}"
        )
    if int(t.min()) < 0 or int(t.max()) >= n:
        raise ValueError(
            f"{name} must index the {n} points (0 to {n - 1}),"
            f" got values from {int(t.min())} to "
            f"{int(t.max())}"
        )
    return t.long()


def mmd2(z: Tensor, subset: Tensor, *, gamma: float | None = None) -> float:
    """Squared maximum mean discrepancy between all rows of ``z`` and the
    rows ``z[subset]`` (the biased V-statistic of Gretton et al. 2012, as
    Kim et al. 2016 use it):

    ``MMD^2 = mean k(z_i, z_j) - 2 mean k(z_i, p_j) + mean k(p_i, p_j)``

    with ``p = z[subset]`` and the RBF kernel of width ``gamma`` (default
    :func:`median_gamma` of ``z``). 0 when the subset is the data."""
    z = _check_points("z", z)
    subset = _check_indices("subset", subset, len(z))
    gamma = median_gamma(z) if gamma is None else _check_number("gamma", gamma)
    k = rbf_kernel(z, z, gamma)
    return float(
        k.mean() - 2 * k[:, subset].mean() + k[subset][:, subset].mean()
    )


@dataclass(frozen=True)
class MMDCritic:
    """The result of :func:`mmd_critic`.

    ``prototypes`` and ``criticisms`` index the rows of ``z`` in the order
    they were chosen; ``witness`` is the witness function at every row for
    the final prototypes; ``mmd2`` the MMD^2 of the data against the
    prototypes and ``mmd2_path`` its value after each prototype was added;
    ``gamma`` the kernel width used; ``regularizer`` the criticisms'.
    """

    prototypes: Tensor
    criticisms: Tensor
    witness: Tensor
    mmd2: float
    mmd2_path: Tensor
    gamma: float
    regularizer: str | None


def mmd_critic(
    z: Tensor,
    *,
    n_prototypes: int,
    n_criticisms: int,
    gamma: float | None = None,
    regularizer: str | None = "logdet",
) -> MMDCritic:
    """Prototypes and criticisms of the points ``z`` (``n x d``), MMD-critic
    (Kim, Khanna & Koyejo 2016).

    *Prototypes* are chosen greedily: each step adds the point that most
    lowers the MMD^2 between the data and the prototypes (:func:`mmd2`;
    the paper's greedy maximisation of ``J_b(S) = 2/(n|S|) sum_ij k(z_i,
    p_j) - 1/|S|^2 sum_ij k(p_i, p_j)``, the same thing). *Criticisms* are
    then chosen among the other points with the *witness function*

    ``wit(x) = 1/n sum_i k(x, z_i) - 1/m sum_j k(x, p_j)``,

    large in magnitude where the data are denser (> 0) or sparser (< 0)
    than the prototypes. With ``regularizer="logdet"`` (the paper's) the
    criticisms greedily maximise ``sum_{c in C} |wit(c)| + log det K_CC``,
    whose second term keeps them apart; with ``None`` they are simply the
    points of largest ``|wit|``. The first criticism is the same in both
    (``log det`` of one point is ``log k(c, c) = 0``). ``gamma`` is the RBF
    kernel's ``exp(-gamma ||a - b||^2)``; default :func:`median_gamma`, one
    over the median squared distance between the points.
    """
    z = _check_points("z", z)
    n = len(z)
    _check_positive_int("n_prototypes", n_prototypes, 1)
    _check_positive_int("n_criticisms", n_criticisms, 0)
    if n_prototypes > n:
        raise ValueError(
            f"n_prototypes must be at most the number of "
            f"points ({n}), got {n_prototypes}"
        )
    if n_prototypes + n_criticisms > n:
        raise ValueError(
            f"n_prototypes + n_criticisms must be at most the "
            f"number of points ({n}), got {n_prototypes} + "
            f"{n_criticisms}"
        )
    if regularizer not in REGULARIZERS:
        raise ValueError(
            f"regularizer must be one of {REGULARIZERS}, got "
            f"{regularizer!r}"
        )
    gamma = median_gamma(z) if gamma is None else _check_number("gamma", gamma)
    k = rbf_kernel(z, z, gamma)
    data_term = k.mean()
    to_data = k.sum(0)  # sum_i k(z_i, c) for every candidate c
    diag = k.diagonal()
    chosen: list[int] = []
    cross, within = 0.0, 0.0  # sums over data x prototypes, protos x protos
    to_chosen = torch.zeros(n, dtype=k.dtype)  # sum_j k(c, p_j)
    path = []
    free = torch.ones(n, dtype=torch.bool)
    for m in range(1, n_prototypes + 1):
        # MMD^2 if candidate c were added, for every c at once
        cand = (
            data_term
            - 2 * (cross + to_data) / (n * m)
            + (within + 2 * to_chosen + diag) / m**2
        )
        cand[~free] = float("inf")
        c = int(cand.argmin())
        chosen.append(c)
        path.append(float(cand[c]))
        free[c] = False
        cross += float(to_data[c])
        within += float(2 * to_chosen[c] + diag[c])
        to_chosen += k[:, c]
    protos = torch.tensor(chosen)
    witness = to_data / n - k[:, protos].mean(1)
    critics: list[int] = []
    gain = witness.abs().clone()
    for _ in range(n_criticisms):
        score = gain.clone()
        if regularizer == "logdet" and critics:
            # log det K_{C+c} - log det K_C = log of the Schur complement
            kc = k[critics][:, critics]
            kx = k[critics]
            # pinv: duplicate points make K_CC singular
            sol = torch.linalg.pinv(kc, hermitian=True) @ kx
            schur = (diag - (kx * sol).sum(0)).clamp_min(1e-300)
            score = score + torch.log(schur)
        score[~free] = -float("inf")
        c = int(score.argmax())
        critics.append(c)
        free[c] = False
    return MMDCritic(
        prototypes=protos,
        criticisms=torch.tensor(critics, dtype=torch.long),
        witness=witness,
        mmd2=path[-1],
        mmd2_path=torch.tensor(path),
        gamma=float(gamma),
        regularizer=regularizer,
    )
