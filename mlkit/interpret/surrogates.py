"""Model-agnostic explanations: permutation importance and LIME surrogates.

* :func:`permutation_importance`: Breiman's (2001) permutation importance, the
  rise in the loss when one input feature (or one image patch, via
  :func:`patch_mask`) is shuffled across the batch, with Captum's
  ``FeaturePermutation``.
* :func:`lime_surrogate`: a local interpretable surrogate of one prediction
  (LIME, Ribeiro, Singh & Guestrin 2016), fitted with Captum's ``Lime`` and a
  scikit-learn ridge regression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import (
    _check_positive_int,
    _check_tensor,
    _check_input,
    _check_callable,
    _check_number,
    _check_seed,
    _check_baseline,
)

__all__ = [
    "patch_mask",
    "PermutationImportance",
    "permutation_importance",
    "Surrogate",
    "lime_surrogate",
]


def patch_mask(shape: Sequence[int], patch: int) -> Tensor:
    """Label every pixel of an image of ``shape`` (``(..., H, W)``) with its
    square patch.

    Patches are ``patch x patch`` and numbered row-major,
    ``0 .. ceil(H/patch)*ceil(W/patch)-1`` (the last row or column of patches
    is narrower when ``patch`` does not divide the side). The result has
    ``shape`` with leading dimensions of size 1, ready to be a Captum
    ``feature_mask`` for a batch of such images.
    """
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if (
        not isinstance(shape, Sequence)
        or isinstance(shape, str)
        or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape
        )
    ):
        raise ValueError(
            f"shape must be a sequence of sizes ending with "
            f"(H, W), got {shape!r}"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape[-2:]) < 1:
        raise ValueError(
            f"shape must end with two positive sizes (H, W), got {shape}"
        )
    h, w = shape[-2:]
    _check_positive_int("patch", patch)
    if patch > max(h, w):
        raise ValueError(
            f"patch must be in [1, {max(h, w)}] for a {h}x{w} image, got "
            f"{patch}"
        )
    cols = -(-w // patch)
    rows = torch.arange(h) // patch
    labels = rows[:, None] * cols + (torch.arange(w) // patch)[None, :]
    return labels.reshape((1,) * (len(shape) - 2) + (h, w))


def _feature_mask(
    x: Tensor, feature_mask: Tensor | None
) -> tuple[Tensor, int]:
    """A long mask broadcastable to one example of ``x`` (first dim 1) and its
    group count."""
    if feature_mask is None:
        n = int(torch.tensor(x.shape[1:]).prod())
        return torch.arange(n).reshape((1,) + tuple(x.shape[1:])), n
    feature_mask = _check_tensor("feature_mask", feature_mask)
    if feature_mask.dtype not in (
        torch.int64,
        torch.int32,
        torch.int16,
        torch.uint8,
    ):
        raise ValueError(
            "feature_mask must hold integer group labels, got "
            f"{feature_mask.dtype}"
        )
    m = feature_mask.long()
    if m.dim() > x.dim():
        raise ValueError(
            f"feature_mask has more dimensions than x: shapes "
            f"{tuple(feature_mask.shape)} and {tuple(x.shape)}"
        )
    m = m.reshape(
        (1,) * (x.dim() - m.dim()) + tuple(m.shape)
    )  # a mask per image: leading 1s
    try:
        torch.broadcast_shapes(m.shape, (1,) + tuple(x.shape[1:]))
    except RuntimeError:
        raise ValueError(
            f"feature_mask of shape {tuple(feature_mask.shape)} does not "
            f"broadcast to one example of x, shape {tuple(x.shape[1:])}"
        ) from None
    if m.shape[0] != 1:
        raise ValueError(
            "feature_mask must be the same for every example (first dim 1), "
            f"got shape {tuple(feature_mask.shape)}"
        )
    labels = torch.unique(m)
    if labels.min() < 0 or not torch.equal(labels, torch.arange(len(labels))):
        raise ValueError(
            "feature_mask labels must be 0..n_features-1 with none missing"
        )
    return m, len(labels)


def _group_values(values: Tensor, mask: Tensor, n: int) -> Tensor:
    """One value per feature group from a map that is constant on each
    group."""
    flat_mask = mask.expand_as(values).reshape(-1)
    out = torch.zeros(n, dtype=values.dtype)
    out[flat_mask] = values.reshape(-1)
    return out


# -----------------------------------------------------------------------------
# Model-agnostic: permutation importance (Breiman 2001)
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PermutationImportance:
    """Result of :func:`permutation_importance` (names as scikit-learn's).

    ``importances`` is ``(n_repeats, n_features)``: the loss with feature ``j``
    shuffled minus the loss on the intact data, for each repeat.
    ``baseline_loss`` is the intact loss.
    """

    importances: Tensor
    baseline_loss: float

    @property
    def importances_mean(self) -> Tensor:
        return self.importances.mean(0)

    @property
    def importances_std(self) -> Tensor:
        if self.importances.shape[0] < 2:
            return torch.zeros(self.importances.shape[1:])
        return self.importances.std(0)


def _default_loss(y: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    if y.dtype in (torch.int64, torch.int32):
        return F.cross_entropy
    return F.mse_loss


def _check_default_loss(out: object, y: Tensor) -> None:
    """``predict(x)`` fits ``y`` for the default loss, without broadcasting:
    ``(n, C)`` logits for integer labels ``(n,)`` in ``[0, C - 1]``, else
    ``y``'s own shape (mean squared error)."""
    if not isinstance(out, Tensor) or not out.is_floating_point():
        raise ValueError(
            f"predict must return a floating-point tensor, got "
            f"{type(out).__name__}"
        )
    if y.dtype in (torch.int64, torch.int32):
        if y.dim() != 1 or out.dim() != 2 or out.shape[0] != y.shape[0]:
            raise ValueError(
                f"y must be (n,) class labels for "
                f"predict(x)'s (n, classes) logits, got y "
                f"{tuple(y.shape)} and predict(x) "
                f"{tuple(out.shape)}"
            )
        if int(y.min()) < 0 or int(y.max()) >= out.shape[1]:
            raise ValueError(f"y must hold labels in [0, {out.shape[1] - 1}]")
    elif not y.is_floating_point():
        raise ValueError(
            f"y must be float targets or int64/int32 class "
            f"labels, got {y.dtype}"
        )
    elif out.shape != y.shape:
        raise ValueError(
            f"y must have predict(x)'s shape "
            f"{tuple(out.shape)} for the default mean squared "
            f"error (no broadcasting), got {tuple(y.shape)}"
        )


def permutation_importance(
    predict: Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    feature_mask: Tensor | None = None,
    n_repeats: int = 5,
    seed: int = 0,
) -> PermutationImportance:
    """Permutation feature importance (Breiman 2001; Fisher, Rudin & Dominici
    2019).

    For each feature group ``j`` (each input feature, or each patch of
    ``feature_mask``, e.g. from :func:`patch_mask`) the values of that group
    are shuffled across the ``n`` examples of ``x``, breaking its link to ``y``
    while keeping its distribution:

    $$I_j = L(f(x^{\\pi_j}), y) - L(f(x), y).$$

    A feature the model ignores has ``I_j = 0`` exactly.
    ``loss_fn(prediction, y)`` must return one scalar for the batch; it
    defaults to cross-entropy for integer ``y`` and mean squared error
    otherwise. The shuffling is Captum's ``FeaturePermutation`` (which returns
    the loss *drop*, so the sign is flipped here), repeated ``n_repeats`` times
    with seeds ``seed, seed+1, ...`` without touching the global random state.
    """
    from captum.attr import FeaturePermutation

    _check_callable("predict", predict)
    x = _check_input("x", x)
    y = _check_tensor("y", y)
    if x.shape[0] < 2:
        raise ValueError(
            "x must hold at least 2 examples to permute across, got "
            f"{x.shape[0]}"
        )
    if y.shape[0] != x.shape[0]:
        raise ValueError(
            f"y must have one entry per example of x ({x.shape[0]}), got "
            f"{y.shape[0]}"
        )
    _check_positive_int("n_repeats", n_repeats)
    _check_seed(seed)
    for name, t in (("x", x), ("y", y)):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite (no NaN or inf)")
    mask, n = _feature_mask(x, feature_mask)
    default = loss_fn is None
    loss_fn = _default_loss(y) if default else loss_fn
    _check_callable("loss_fn", loss_fn)

    def score(pred: Tensor) -> Tensor:
        out = loss_fn(pred, y)
        if not isinstance(out, Tensor) or out.dim() != 0:
            raise ValueError(
                f"loss_fn must return a scalar for the batch, "
                f"got {getattr(out, 'shape', out)!r}"
            )
        return out.reshape(1)

    def batch_loss(inputs: Tensor) -> Tensor:
        return score(predict(inputs))

    with torch.no_grad():
        pred = predict(x)
        if default:  # the default losses would broadcast a mis-shaped y
            _check_default_loss(pred, y)
        baseline = float(score(pred))
        fp = FeaturePermutation(batch_loss)
        rows = []
        for r in range(n_repeats):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + r)
                attr = fp.attribute(
                    x, feature_mask=mask, perturbations_per_eval=1
                )
            rows.append(-_group_values(attr[0:1], mask, n))
    return PermutationImportance(torch.stack(rows), baseline)


# -----------------------------------------------------------------------------
# Model-agnostic: a local interpretable surrogate (LIME, Ribeiro et al. 2016)
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Surrogate:
    """A linear model ``g(z) = intercept + coefficients . z`` that mimics ``f``
    near one input.

    ``z`` is binary: ``z_j = 1`` keeps feature group ``j`` of the input,
    ``z_j = 0`` replaces it by the baseline. ``attribution`` paints each
    coefficient onto the pixels (or features) of its group, with the input's
    shape.
    """

    coefficients: Tensor
    intercept: float
    attribution: Tensor
    fidelity: float = float("nan")


def _fidelity(
    predict: Callable[[Tensor], Tensor],
    x: Tensor,
    mask: Tensor,
    n: int,
    baseline: float | Tensor,
    target: int | None,
    coef: Tensor,
    intercept: float,
    n_samples: int,
) -> float:
    """R^2 of the surrogate against the model on fresh random coalitions
    ``z``."""
    z = torch.bernoulli(torch.full((n_samples, n), 0.5))
    keep = z[:, mask.expand_as(x[:1])[0]]  # (n_samples, *x.shape[1:])
    base = torch.as_tensor(baseline, dtype=x.dtype)
    inputs = keep * x + (1 - keep) * base
    with torch.no_grad():
        out = predict(inputs)
    f = (out[:, target] if target is not None else out.reshape(n_samples)).to(
        torch.float64
    )
    g = intercept + z.to(torch.float64) @ coef.to(torch.float64)
    total = float(((f - f.mean()) ** 2).sum())
    if total == 0.0:
        return 1.0 if float(((f - g) ** 2).sum()) < 1e-12 else float("nan")
    return 1.0 - float(((f - g) ** 2).sum()) / total


def lime_surrogate(
    predict: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    target: int | None = None,
    feature_mask: Tensor | None = None,
    baseline: float | Tensor = 0.0,
    n_samples: int = 500,
    kernel_width: float = 1.0,
    ridge_alpha: float = 1e-3,
    seed: int = 0,
    fidelity_samples: int = 100,
) -> Surrogate:
    """Fit LIME's local surrogate for the prediction ``predict(x)[0, target]``
    (Ribeiro et al. 2016).

    ``x`` is one example with a batch dimension of 1. ``n_samples`` binary
    vectors ``z`` are drawn uniformly; each switches feature groups (pixels,
    features, or the patches of ``feature_mask``) off, i.e. to ``baseline``.
    The perturbed inputs are scored by the model and a ridge regression
    (scikit-learn, penalty ``ridge_alpha``) is fitted to the scores, weighting
    each sample by ``exp(-d^2 / kernel_width^2)`` with ``d`` the cosine
    distance to ``x`` (Captum's ``Lime``):

    $$g = \\arg\\min_{g} \\sum_z \\pi_x(z) (f(h_x(z)) - g(z))^2
    + \\gamma \\lVert w \\rVert^2,$$

    with $\\gamma$ = ``ridge_alpha`` (the book's notation: $\\alpha$ is the
    inner-loop step size).

    For a linear ``f(x) = w . x + b`` with a zero baseline the coefficients are
    ``w_j x_j`` exactly (up to the small ridge penalty). ``target`` picks the
    output column; leave it ``None`` when ``predict`` returns one number per
    example.

    ``fidelity`` is the surrogate's local fidelity (Ribeiro et al.'s term): the
    R^2 of ``g`` against the model's scores on ``fidelity_samples`` fresh
    random coalitions, unweighted. Near 1 the linear story is faithful; far
    below 1 the model is not linear in the patches there and the coefficients
    should not be read as its reasons. ``fidelity_samples=0`` skips it
    (``nan``).
    """
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    _check_callable("predict", predict)
    x = _check_input("x", x, 2)
    if x.shape[0] != 1:
        raise ValueError(
            f"x must be one example with a batch dimension of 1, got shape "
            f"{tuple(x.shape)}"
        )
    _check_positive_int("n_samples", n_samples, 2)
    _check_positive_int("fidelity_samples", fidelity_samples, 0)
    _check_number("kernel_width", kernel_width)
    _check_number("ridge_alpha", ridge_alpha, strict=False)
    _check_seed(seed)
    _check_baseline(baseline, x)
    mask, n = _feature_mask(x, feature_mask)
    if target is not None:
        with torch.no_grad():
            out = predict(x)
        width = (
            out.shape[-1] if isinstance(out, Tensor) and out.dim() == 2 else 0
        )
        if (
            isinstance(target, bool)
            or not isinstance(target, int)
            or not 0 <= target < width
        ):
            raise ValueError(
                f"target must be an output index in [0, {width - 1}], got "
                f"{target!r}"
            )

    surrogate_model = SkLearnRidge(alpha=ridge_alpha)
    lime = Lime(
        predict,
        interpretable_model=surrogate_model,
        similarity_func=get_exp_kernel_similarity_function(
            "cosine", kernel_width
        ),
    )
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            coef = lime.attribute(
                x,
                baselines=baseline,
                target=target,
                feature_mask=mask.expand_as(x[:1]),
                n_samples=n_samples,
                return_input_shape=False,
            )
        except AssertionError as e:  # Captum checks outputs with asserts
            raise ValueError(
                f"predict must return one number per example, "
                f"or (examples, outputs) with target naming "
                f"one: {e}"
            ) from None
        coef = coef.reshape(-1).detach().to(torch.float32)
        bias = surrogate_model.bias()
        intercept = float(bias.reshape(-1)[0]) if bias is not None else 0.0
        fidelity = (
            _fidelity(
                predict,
                x,
                mask,
                n,
                baseline,
                target,
                coef,
                intercept,
                fidelity_samples,
            )
            if fidelity_samples
            else float("nan")
        )
    attribution = coef[mask.expand_as(x)]
    return Surrogate(coef, intercept, attribution, fidelity)


# -----------------------------------------------------------------------------
# Model-specific: attention over the support set (matching networks,
# Vinyals et al. 2016)
# -----------------------------------------------------------------------------
