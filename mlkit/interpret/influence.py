"""Which support examples drive a decision.

* :func:`support_attention`, :func:`class_attention`: the softmax over
  similarities of matching networks (Vinyals et al. 2016);
* :func:`loo_influence` (leave-one-out re-adaptation) and
  :func:`gradient_influence` (the query loss's gradient with respect to the
  support images, through the inner loop).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    _check_positive_int,
    _check_input,
    _check_labels,
    _check_callable,
    _check_number,
    _check_episode_tensors,
)

__all__ = [
    "support_attention",
    "class_attention",
    "FitPredict",
    "loo_influence",
    "gradient_influence",
]


_METRICS = ("euclidean", "cosine")


def support_attention(
    query: Tensor,
    support: Tensor,
    *,
    metric: str = "euclidean",
    temperature: float = 1.0,
) -> Tensor:
    """How much each query attends to each support example:
    ``(n_query, n_support)``, rows sum to 1.

    ``query`` ``(n_query, d)`` and ``support`` ``(n_support, d)`` are
    embeddings. As in matching networks (Vinyals et al. 2016),
    ``a(q, s_i) = softmax_i(c(q, s_i) / T)`` where the similarity ``c`` is the
    cosine (``metric="cosine"``) or the negative squared Euclidean distance
    (``metric="euclidean"``, the one prototypical networks use, Snell et al.
    2017).
    """
    query = _check_input("query", query, 2, nonempty=False)
    support = _check_input("support", support, 2, nonempty=False)
    if query.dim() != 2 or support.dim() != 2:
        raise ValueError(
            f"query and support must be 2-D (examples, features), got shapes "
            f"{tuple(query.shape)} and {tuple(support.shape)}"
        )
    if query.shape[1] != support.shape[1]:
        raise ValueError(
            f"support must have the query's feature size {query.shape[1]}, "
            f"got {support.shape[1]}"
        )
    if support.shape[0] < 1:
        raise ValueError("support must hold at least one example")
    if metric not in _METRICS:
        raise ValueError(
            f"metric must be one of {list(_METRICS)}, got {metric!r}"
        )
    _check_number("temperature", temperature)
    if metric == "cosine":
        sim = F.normalize(query, dim=1) @ F.normalize(support, dim=1).T
    else:
        sim = -torch.cdist(query, support).pow(2)
    return torch.softmax(sim / temperature, dim=1)


def class_attention(
    attention: Tensor, support_y: Tensor, n_way: int | None = None
) -> Tensor:
    """Sum attention over each class's support examples: matching networks'
    class probabilities.

    ``attention`` is ``(n_query, n_support)`` from :func:`support_attention`,
    ``support_y`` the support labels ``0..n_way-1``. Returns
    ``(n_query, n_way)``; rows sum to 1.
    """
    attention = _check_input("attention", attention, 2, nonempty=False)
    support_y = _check_labels("support_y", support_y)
    if support_y.shape != (attention.shape[1],) or not len(support_y):
        raise ValueError(
            f"support_y must have shape "
            f"({attention.shape[1]},), one label per support "
            f"example (at least one), got "
            f"{tuple(support_y.shape)}"
        )
    n_way = int(support_y.max()) + 1 if n_way is None else n_way
    _check_positive_int("n_way", n_way)
    if support_y.min() < 0 or support_y.max() >= n_way:
        raise ValueError(f"support_y labels must be in [0, {n_way - 1}]")
    onehot = F.one_hot(support_y.long(), n_way).to(attention.dtype)
    return attention @ onehot


# -----------------------------------------------------------------------------
# Model-specific: neuron activations through forward hooks
# -----------------------------------------------------------------------------


FitPredict = Callable[[Tensor, Tensor, Tensor], Tensor]


def _per_query_loss(logits: Tensor, y: Tensor) -> Tensor:
    if (
        not isinstance(logits, Tensor)
        or logits.dim() != 2
        or (logits.shape[0] != y.shape[0])
        or not logits.is_floating_point()
    ):
        raise ValueError(
            f"fit_predict must return (queries, classes) "
            f"logits, one row per query ({y.shape[0]}), got "
            f"{getattr(logits, 'shape', logits)!r}"
        )
    if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
        raise ValueError(
            f"query_y must hold labels in [0, {logits.shape[1] - 1}]"
        )
    return F.cross_entropy(logits, y.long(), reduction="none")


def loo_influence(
    fit_predict: FitPredict,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
) -> Tensor:
    """Leave-one-out influence of each support example on each query's loss.

    ``fit_predict(support_x, support_y, query_x)`` runs the base learner on a
    support set and returns query logits: MAML's inner loop followed by a
    prediction, or a prototype classifier.
    ``influence[q, i] = L_q(S \\ {i}) - L_q(S)``, the rise of query ``q``'s
    cross-entropy when support example ``i`` is left out and the learner
    re-adapted (Koh & Liang 2017 approximate exactly this quantity; here it is
    computed). Positive: example ``i`` helped query ``q``. Returns
    ``(n_query, n_support)``.
    """
    _check_callable("fit_predict", fit_predict)
    _check_episode_tensors(support_x, support_y, query_x, query_y)
    n = support_x.shape[0]
    with torch.no_grad():
        full = _per_query_loss(
            fit_predict(support_x, support_y, query_x).detach(), query_y
        )
    cols = []
    for i in range(n):
        keep = torch.arange(n) != i
        logits = fit_predict(
            support_x[keep], support_y[keep], query_x
        ).detach()
        cols.append(_per_query_loss(logits, query_y) - full)
    return torch.stack(cols, 1)


def gradient_influence(
    fit_predict: FitPredict,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
) -> tuple[Tensor, Tensor]:
    """The gradient of the query loss with respect to the support *images*,
    through the base learner (for MAML: through the inner loop, second order).

    Returns ``(grad, score)``: ``grad`` has ``support_x``'s shape,
    ``dL_Q / d x_i`` with ``L_Q`` the mean query cross-entropy;
    ``score[i] = -<grad_i, x_i>`` is the first-order estimate of the rise in
    ``L_Q`` when image ``i`` is blanked (set to 0), the differentiable cousin
    of :func:`loo_influence` (positive: the image helped). ``fit_predict`` must
    keep the graph from ``support_x`` to the logits (MAML: adapt with
    ``first_order=False``).
    """
    _check_callable("fit_predict", fit_predict)
    _check_episode_tensors(support_x, support_y, query_x, query_y)
    sx = support_x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = _per_query_loss(
            fit_predict(sx, support_y, query_x), query_y
        ).mean()
        g = (
            torch.autograd.grad(loss, sx, allow_unused=True)[0]
            if loss.requires_grad
            else None
        )
    if g is None:
        raise ValueError(
            "fit_predict's logits do not depend on support_x (no gradient "
            "path): adapt with first_order=False and keep the graph"
        )
    score = -(g * support_x).reshape(len(g), -1).sum(1)
    return g.detach(), score.detach()


# -----------------------------------------------------------------------------
# The inner loop, step by step
# -----------------------------------------------------------------------------
