"""Representation similarity between layers and models.

:func:`linear_cka` (debiased by default: the unbiased HSIC of Song et al.
2012, as used for CKA by Nguyen, Raghu & Kornblith 2021; Kornblith et al.
2019's biased estimator with ``debiased=False``), :func:`cka_interval` (CKA
pooled over many tasks with a bootstrap interval over tasks) and
:func:`layer_cka`, layer by layer before and after the inner loop (Raghu et
al. 2020).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ._checks import (
    _check_flag,
    _check_positive_int,
    _check_seed,
    _check_tensor,
    _flat64,
)
from .activations import (
    layer_activations,
)

__all__ = [
    "linear_cka",
    "CKAInterval",
    "cka_interval",
    "layer_cka",
]


def _gram(name: str, x: object) -> Tensor:
    """The linear Gram matrix of ``x``'s column-centred rows, in float64."""
    a = _flat64(name, x)
    if not torch.isfinite(a).all():
        raise ValueError(f"{name} must be finite (no NaN or inf)")
    a = a - a.mean(0, keepdim=True)
    return a @ a.T


def _check_pair(x: object, y: object, minimum: int) -> tuple[Tensor, Tensor]:
    k, l_ = _gram("x", x), _gram("y", y)
    if k.shape[0] != l_.shape[0]:
        raise ValueError(
            f"x and y must describe the same examples: x has "
            f"{k.shape[0]}, y has {l_.shape[0]}"
        )
    if k.shape[0] < minimum:
        raise ValueError(
            f"x must hold at least {minimum} examples for "
            f"this estimator, got {k.shape[0]}"
        )
    return k, l_


def _hsic_terms(k: Tensor, l_: Tensor, w: Tensor) -> Tensor:
    """Song et al. (2012)'s unbiased HSIC of two Gram matrices whose
    diagonals are zeroed, each row ``i`` counted ``w[i]`` times (a bootstrap
    resample; copies of one example never form a pair)."""
    n = w.sum()
    kw, lw = k @ w, l_ @ w
    trace = w @ ((k * l_) @ w)
    return (
        trace
        + (w @ kw) * (w @ lw) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (w * kw) @ lw
    ) / (n * (n - 3))


def _debiased(k: Tensor, l_: Tensor, w: Tensor) -> float:
    k = k - torch.diag(torch.diagonal(k))
    l_ = l_ - torch.diag(torch.diagonal(l_))
    kk, ll = _hsic_terms(k, k, w), _hsic_terms(l_, l_, w)
    if kk <= 0 or ll <= 0:
        raise ValueError(
            "x and y must each vary across examples (the "
            "unbiased HSIC of x or y with itself is not "
            "positive)"
        )
    return float(_hsic_terms(k, l_, w) / torch.sqrt(kk * ll))


def linear_cka(x: Tensor, y: Tensor, debiased: bool = True) -> float:
    """Linear centred kernel alignment of two representations of the same
    ``n`` examples.

    ``x`` is ``(n, ...)`` and ``y`` is ``(n, ...)`` (flattened to ``(n, p)``
    and ``(n, q)``: a conv layer's whole feature map is one vector per
    example). With column-centred ``X`` and ``Y``, ``K = X X^T`` and
    ``L = Y Y^T``,

    $$\\mathrm{CKA}(K, L) = \\frac{\\mathrm{HSIC}(K, L)}
    {\\sqrt{\\mathrm{HSIC}(K, K)\\,\\mathrm{HSIC}(L, L)}}.$$

    ``debiased=True`` (the default) uses the unbiased HSIC estimator of
    Song, Smola, Gretton, Bedo & Borgwardt (2012), with ``K~`` and ``L~`` the
    Gram matrices with zeroed diagonals,

    $$\\mathrm{HSIC}_1 = \\frac{1}{n(n-3)}\\Big[\\mathrm{tr}(\\tilde K
    \\tilde L) + \\frac{1^\\top \\tilde K 1\\, 1^\\top \\tilde L 1}
    {(n-1)(n-2)} - \\frac{2}{n-2} 1^\\top \\tilde K \\tilde L 1\\Big],$$

    as used for CKA by Nguyen, Raghu & Kornblith (2021) and analysed by
    Murphy, Zylberberg & Fyshe (2024): it needs ``n >= 4``, lies in
    ``[-1, 1]`` and is near 0 for independent representations even when the
    number of features is far larger than ``n``. ``debiased=False`` gives
    Kornblith, Norouzi, Lee & Hinton (2019)'s estimator
    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``, in ``[0, 1]`` but close
    to 1 for *unrelated* wide representations of few examples. Both equal 1
    for ``Y = c X Q`` (``Q`` orthogonal, ``c != 0``) and are unchanged by
    isotropic scaling and orthogonal transforms of either argument, not by
    general invertible maps. Computed through the ``n x n`` Gram matrices in
    float64.
    """
    _check_flag("debiased", debiased)
    k, l_ = _check_pair(x, y, 4 if debiased else 2)
    if debiased:
        return _debiased(k, l_, torch.ones(k.shape[0], dtype=k.dtype))
    nk, nl = k.norm(), l_.norm()
    if nk == 0 or nl == 0:
        raise ValueError(
            "x and y must each vary across examples (a "
            "constant representation has no CKA)"
        )
    return float((k * l_).sum() / (nk * nl))


@dataclass(frozen=True)
class CKAInterval:
    """A pooled debiased CKA with an interval over groups (tasks).

    ``estimate`` on all ``n`` examples; ``low`` and ``high`` the ``level``
    interval by ``method`` ("jackknife" or "bootstrap") over the
    ``n_groups`` groups, from ``n_resamples`` recomputations."""

    estimate: float
    low: float
    high: float
    n: int
    n_groups: int
    n_resamples: int
    level: float
    method: str


METHODS = ("jackknife", "bootstrap")


def cka_interval(
    x: Tensor,
    y: Tensor,
    groups: Tensor,
    *,
    method: str = "jackknife",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> CKAInterval:
    """Debiased linear CKA (:func:`linear_cka`) of all ``n`` examples pooled,
    with an interval that treats whole groups as the unit of sampling.

    ``groups`` gives each example's group (its task: the examples of one
    task share the inner loop and, with batch-statistics BatchNorm, one
    batch, so they are not independent). ``method="jackknife"`` (the
    default) recomputes the CKA without each group in turn and gives
    ``estimate +- t_{G-1} * SE`` with the delete-one-group jackknife's
    standard error ``SE^2 = (G-1)/G * sum_g (theta_(g) - mean)^2`` (Efron &
    Tibshirani 1993, ch. 11). ``method="bootstrap"`` draws ``n_boot``
    resamples of the groups with replacement, counting each example as often
    as its group is drawn, and gives the percentile interval (ch. 13). A
    resample that holds one task twice pairs the images of its two copies as
    if they were independent, which biases the debiased CKA upwards: with a
    dozen tasks the bootstrap interval can miss the estimate itself, so the
    jackknife is the default.
    """
    k, l_ = _check_pair(x, y, 4)
    g = _check_tensor("groups", groups, 1)
    if g.shape != (k.shape[0],) or g.is_floating_point():
        raise ValueError(
            f"groups must be an integer tensor with one group "
            f"per example ({k.shape[0]}), got {g.dtype} of "
            f"shape {tuple(g.shape)}"
        )
    ids, inverse = torch.unique(g, return_inverse=True)
    if len(ids) < 3:
        raise ValueError(f"groups must name at least 3 groups, got {len(ids)}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_positive_int("n_boot", n_boot, 10)
    _check_seed(seed)
    if (
        isinstance(level, bool)
        or not isinstance(level, float)
        or not (0.0 < level < 1.0)
    ):
        raise ValueError(f"level must be a float in (0, 1), got {level!r}")
    return _interval(k, l_, inverse, len(ids), method, n_boot, level, seed)


def _group_cka(
    k: Tensor, l_: Tensor, inverse: Tensor, n_groups: int
) -> Callable[[Tensor], float | None]:
    """The debiased CKA as a function of the groups' counts ``c`` (each
    example counted as often as its group; copies never pair an example
    with itself). Every term of the unbiased HSIC is a polynomial in ``c``
    whose coefficients are sums over groups of the zeroed-diagonal Gram
    matrices, taken once."""
    onehot = torch.nn.functional.one_hot(inverse, n_groups).to(k.dtype)
    sizes = onehot.sum(0)
    k0 = k - torch.diag(torch.diagonal(k))
    l0 = l_ - torch.diag(torch.diagonal(l_))
    ko, lo_ = k0 @ onehot, l0 @ onehot

    def terms(
        m0: Tensor, mo: Tensor, r0: Tensor, ro: Tensor
    ) -> tuple[Tensor, ...]:
        pair = onehot.T @ (m0 * r0) @ onehot
        triple = torch.einsum("ia,ib,id->abd", onehot, mo, ro)
        return pair, onehot.T @ mo, onehot.T @ ro, triple

    parts = [
        terms(k0, ko, l0, lo_),
        terms(k0, ko, k0, ko),
        terms(l0, lo_, l0, lo_),
    ]

    def cka(c: Tensor) -> float | None:
        n = c @ sizes
        h = [
            (
                c @ pair @ c
                + (c @ sk @ c) * (c @ sl @ c) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * torch.einsum("a,b,d,abd->", c, c, c, tri)
            )
            / (n * (n - 3))
            for pair, sk, sl, tri in parts
        ]
        if h[1] > 0 and h[2] > 0:
            return float(h[0] / torch.sqrt(h[1] * h[2]))
        return None

    return cka


def _interval(
    k: Tensor,
    l_: Tensor,
    inverse: Tensor,
    n_groups: int,
    method: str,
    n_boot: int,
    level: float,
    seed: int,
) -> CKAInterval:
    """:func:`cka_interval` from the two centred Gram matrices and each
    example's group index in ``0..n_groups-1`` (checked by the caller)."""
    from scipy.stats import t as student_t

    estimate = _debiased(k, l_, torch.ones(k.shape[0], dtype=k.dtype))
    cka = _group_cka(k, l_, inverse, n_groups)
    values = []
    if method == "jackknife":
        for drop in range(n_groups):
            c = torch.ones(n_groups, dtype=k.dtype)
            c[drop] = 0.0
            v = cka(c)
            if v is None:
                raise ValueError(
                    "x and y vary too little across groups for "
                    "a jackknife interval"
                )
            values.append(v)
        dev = np.asarray(values) - np.mean(values)
        se = float(np.sqrt((n_groups - 1) / n_groups * (dev**2).sum()))
        half = float(student_t.ppf((1 + level) / 2, n_groups - 1)) * se
        return CKAInterval(
            estimate,
            estimate - half,
            estimate + half,
            int(k.shape[0]),
            n_groups,
            n_groups,
            level,
            method,
        )
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        draws = rng.integers(0, n_groups, n_groups)
        c = torch.from_numpy(np.bincount(draws, minlength=n_groups)).to(
            k.dtype
        )
        v = cka(c)
        if v is not None:
            values.append(v)
    if len(values) < n_boot // 2:
        raise ValueError(
            "x and y vary too little across groups for a bootstrap interval"
        )
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return CKAInterval(
        estimate,
        float(lo),
        float(hi),
        int(k.shape[0]),
        n_groups,
        n_boot,
        level,
        method,
    )


def layer_cka(
    model: nn.Module,
    params_before: Mapping[str, Tensor] | None,
    params_after: Mapping[str, Tensor],
    x: Tensor,
    layers: Sequence[str] | None = None,
    *,
    debiased: bool = True,
) -> dict[str, float]:
    """Linear CKA (:func:`linear_cka`), layer by layer, between a model's
    representations of ``x`` under two sets of weights: Raghu, Raghu, Bengio
    & Vinyals (2020)'s test of *feature reuse* (CKA near 1 before and after
    the inner loop: the layer was reused, not relearned).

    ``params_before`` is usually the meta-learned initialisation (``None``:
    the model's own parameters) and ``params_after`` the fast weights; ``x``
    the query images of the task (one batch: with batch-statistics BatchNorm
    the batch is part of the function). A layer name the model does not have
    raises ``ValueError``. The debiased estimator needs ``len(x) >= 4``; a
    CKA of few images says little (see :func:`cka_interval`).
    """
    _check_flag("debiased", debiased)
    before = layer_activations(model, params_before, x, layers)
    after = layer_activations(model, params_after, x, layers)
    return {
        name: linear_cka(before[name], after[name], debiased=debiased)
        for name in before
    }
