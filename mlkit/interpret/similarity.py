"""Representation similarity between layers and models.

:func:`linear_cka` (Kornblith et al. 2019) and :func:`layer_cka`, layer by
layer before and after the inner loop (Raghu et al. 2020).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from ._checks import (
    _flat64,
)
from .activations import (
    layer_activations,
)

__all__ = [
    "linear_cka",
    "layer_cka",
]


def linear_cka(x: Tensor, y: Tensor) -> float:
    """Linear centred kernel alignment of two representations of the same ``n`` examples.

    ``x`` is ``(n, ...)`` and ``y`` is ``(n, ...)`` (flattened to ``(n, p)`` and ``(n, q)``:
    a conv layer's whole feature map is one vector per example). Following Kornblith,
    Norouzi, Lee & Hinton (2019), with column-centred ``X`` and ``Y``,

    $$\\mathrm{CKA}(X, Y) = \\frac{\\lVert Y^\\top X \\rVert_F^2}
    {\\lVert X^\\top X \\rVert_F \\, \\lVert Y^\\top Y \\rVert_F},$$

    computed through the ``n x n`` Gram matrices in float64. It lies in ``[0, 1]``, equals 1
    for ``Y = c X Q`` (``Q`` orthogonal, ``c != 0``) and is not changed by isotropic scaling
    or orthogonal transforms of either argument; it *is* changed by general invertible maps.
    """
    a, b = _flat64("x", x), _flat64("y", y)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must describe the same examples: x has {a.shape[0]}, y has "
                         f"{b.shape[0]}")
    if a.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples, got {a.shape[0]}")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("x and y must be finite (no NaN or inf)")
    a = a - a.mean(0, keepdim=True)
    b = b - b.mean(0, keepdim=True)
    k, l_ = a @ a.T, b @ b.T  # centred Gram matrices: <K, L> = ||Y^T X||_F^2
    nk, nl = k.norm(), l_.norm()
    if nk == 0 or nl == 0:
        raise ValueError("x and y must each vary across examples (a constant representation "
                         "has no CKA)")
    return float((k * l_).sum() / (nk * nl))


def layer_cka(
    model: nn.Module,
    params_before: Mapping[str, Tensor] | None,
    params_after: Mapping[str, Tensor],
    x: Tensor,
    layers: Sequence[str] | None = None,
) -> dict[str, float]:
    """Linear CKA, layer by layer, between a model's representations of ``x`` under two sets of
    weights: Raghu, Raghu, Bengio & Vinyals (2020)'s test of *feature reuse* (CKA near 1 before
    and after the inner loop: the layer was reused, not relearned).

    ``params_before`` is usually the meta-learned initialisation (``None``: the model's own
    parameters) and ``params_after`` the fast weights; ``x`` the query images of the task.
    """
    before = layer_activations(model, params_before, x, layers)
    after = layer_activations(model, params_after, x, layers)
    return {name: linear_cka(before[name], after[name]) for name in before}
