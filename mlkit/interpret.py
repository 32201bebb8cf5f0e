"""Explaining meta-learners: why a base learner, adapted or not, decided what it decided.

This is the first version of the module (chapter 2 shows each tool on a small model; chapter 6
adds representation similarity, gradient attributions and support influence). Every tool
takes a *callable* (``predict``, ``loss_fn``, a model or ``functools.partial(maml.predict,
model, fast_weights)``), never a training loop: ``interpret`` never trains.

Model-agnostic methods (they only query the model):

* :func:`permutation_importance`: Breiman's (2001) permutation importance, the rise in the
  loss when one input feature (or one image patch, via :func:`patch_mask`) is shuffled across
  the batch, computed with Captum's ``FeaturePermutation``.
* :func:`lime_surrogate`: a local interpretable surrogate of one prediction (LIME, Ribeiro,
  Singh & Guestrin 2016), fitted with Captum's ``Lime`` and a scikit-learn ridge regression.

Model-specific methods (they look inside):

* :func:`support_attention`: which support examples a query attends to, the softmax over
  similarities of matching networks (Vinyals et al. 2016); :func:`class_attention` sums it per
  class.
* :func:`record_activations`: per-layer activations captured with forward hooks, removed on
  exit.
* :func:`weight_change`: how far adaptation moved each parameter tensor, relative to its size.

Chapter 6 (opening the box) adds, each usable on an adapted MAML model given as fast weights
and on a metric learner's scorer:

* representation similarity: :func:`linear_cka` (Kornblith et al. 2019) and
  :func:`layer_cka`, layer by layer before and after the inner loop (Raghu et al. 2020);
  :func:`effective_rank`, :func:`dead_units`, :func:`class_selectivity` and
  :func:`top_activating` describe one representation;
* scorers to explain: :func:`frozen_statistics` (a batch-statistics BatchNorm network with its
  statistics frozen on a real batch, so that attributions explain the classifier and not the
  interpolation batch), :func:`prototype_scorer` (prototypical / nearest-neighbour class
  scores) and :func:`pair_similarity` (a Siamese pair's similarity as a function of one image);
* gradient attributions with Captum: :func:`saliency`, :func:`integrated_gradients`;
* support-example influence: :func:`loo_influence` (leave-one-out re-adaptation) and
  :func:`gradient_influence` (the query loss's gradient with respect to the support images,
  through the inner loop);
* the inner loop step by step: :func:`fast_weight_trajectory` (losses and step size per layer,
  one task or a task batch), :func:`activation_change` (per layer and per unit).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "patch_mask",
    "PermutationImportance",
    "permutation_importance",
    "Surrogate",
    "lime_surrogate",
    "support_attention",
    "class_attention",
    "record_activations",
    "weight_change",
]


def _check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_tensor(name: str, value: object, min_dim: int = 1) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape "
                         f"{tuple(value.shape)}")
    return value


def _check_input(name: str, value: object, min_dim: int = 1,
                 nonempty: bool = True) -> Tensor:
    """A floating-point tensor, by default with at least one example (the input
    of a model)."""
    x = _check_tensor(name, value, min_dim)
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got "
                         f"{x.dtype}")
    if nonempty and x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one example, got shape "
                         f"{tuple(x.shape)}")
    return x


def _check_labels(name: str, value: object) -> Tensor:
    y = _check_tensor(name, value)
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor of class labels, "
                         f"got {y.dtype}")
    return y


def _check_callable(name: str, value: object) -> None:
    if not callable(value):
        raise ValueError(f"{name} must be a callable (a model or a function), "
                         f"got {value!r}")


def _check_number(name: str, value: object, minimum: float = 0.0,
                  strict: bool = True) -> float:
    """A finite number above ``minimum`` (or at least it, ``strict=False``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not ok or not math.isfinite(value) or (
            value <= minimum if strict else value < minimum):
        sign = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {sign} {minimum}, "
                         f"got {value!r}")
    return float(value)


def _check_seed(seed: object) -> int:
    return _check_positive_int("seed", seed, 0)


def _check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _check_layers(layers: object) -> None:
    if layers is None or isinstance(layers, str):
        return
    if not isinstance(layers, Sequence) or not all(
            isinstance(n, str) for n in layers):
        raise ValueError(f"layers must be None or a list of module names, "
                         f"got {layers!r}")


def _check_weights(name: str, params: object) -> None:
    if not isinstance(params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Tensor)
            for k, v in params.items()):
        raise ValueError(f"{name} must be a mapping from parameter names to "
                         f"tensors, got {type(params).__name__}")


def _check_target(target: object) -> None:
    if target is None or (isinstance(target, int)
                          and not isinstance(target, bool)):
        return
    if isinstance(target, Tensor) and not (target.is_floating_point() or
                                           target.dtype == torch.bool):
        return
    raise ValueError(f"target must be None, an output index or an integer "
                     f"tensor of indices, got {target!r}")


# --------------------------------------------------------------------------------------
# Feature groups
# --------------------------------------------------------------------------------------


def patch_mask(shape: Sequence[int], patch: int) -> Tensor:
    """Label every pixel of an image of ``shape`` (``(..., H, W)``) with its square patch.

    Patches are ``patch x patch`` and numbered row-major, ``0 .. ceil(H/patch)*ceil(W/patch)-1``
    (the last row or column of patches is narrower when ``patch`` does not divide the side).
    The result has ``shape`` with leading dimensions of size 1, ready to be a Captum
    ``feature_mask`` for a batch of such images.
    """
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, Sequence) or isinstance(shape, str) or not all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"shape must be a sequence of sizes ending with "
                         f"(H, W), got {shape!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2 or min(shape[-2:]) < 1:
        raise ValueError(f"shape must end with two positive sizes (H, W), got {shape}")
    h, w = shape[-2:]
    _check_positive_int("patch", patch)
    if patch > max(h, w):
        raise ValueError(f"patch must be in [1, {max(h, w)}] for a {h}x{w} image, got {patch}")
    cols = -(-w // patch)
    rows = torch.arange(h) // patch
    labels = rows[:, None] * cols + (torch.arange(w) // patch)[None, :]
    return labels.reshape((1,) * (len(shape) - 2) + (h, w))


def _feature_mask(x: Tensor, feature_mask: Tensor | None) -> tuple[Tensor, int]:
    """A long mask broadcastable to one example of ``x`` (first dim 1) and its group count."""
    if feature_mask is None:
        n = int(torch.tensor(x.shape[1:]).prod())
        return torch.arange(n).reshape((1,) + tuple(x.shape[1:])), n
    feature_mask = _check_tensor("feature_mask", feature_mask)
    if feature_mask.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"feature_mask must hold integer group labels, got {feature_mask.dtype}")
    m = feature_mask.long()
    if m.dim() > x.dim():
        raise ValueError(f"feature_mask has more dimensions than x: shapes "
                         f"{tuple(feature_mask.shape)} and {tuple(x.shape)}")
    m = m.reshape((1,) * (x.dim() - m.dim()) + tuple(m.shape))  # a mask per image: leading 1s
    try:
        torch.broadcast_shapes(m.shape, (1,) + tuple(x.shape[1:]))
    except RuntimeError:
        raise ValueError(f"feature_mask of shape {tuple(feature_mask.shape)} does not broadcast "
                         f"to one example of x, shape {tuple(x.shape[1:])}") from None
    if m.shape[0] != 1:
        raise ValueError(f"feature_mask must be the same for every example (first dim 1), got "
                         f"shape {tuple(feature_mask.shape)}")
    labels = torch.unique(m)
    if labels.min() < 0 or not torch.equal(labels, torch.arange(len(labels))):
        raise ValueError("feature_mask labels must be 0..n_features-1 with none missing")
    return m, len(labels)


def _group_values(values: Tensor, mask: Tensor, n: int) -> Tensor:
    """One value per feature group from a map that is constant on each group."""
    flat_mask = mask.expand_as(values).reshape(-1)
    out = torch.zeros(n, dtype=values.dtype)
    out[flat_mask] = values.reshape(-1)
    return out


# --------------------------------------------------------------------------------------
# Model-agnostic: permutation importance (Breiman 2001)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PermutationImportance:
    """Result of :func:`permutation_importance` (names as scikit-learn's).

    ``importances`` is ``(n_repeats, n_features)``: the loss with feature ``j`` shuffled minus
    the loss on the intact data, for each repeat. ``baseline_loss`` is the intact loss.
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
        raise ValueError(f"predict must return a floating-point tensor, got "
                         f"{type(out).__name__}")
    if y.dtype in (torch.int64, torch.int32):
        if y.dim() != 1 or out.dim() != 2 or out.shape[0] != y.shape[0]:
            raise ValueError(f"y must be (n,) class labels for "
                             f"predict(x)'s (n, classes) logits, got y "
                             f"{tuple(y.shape)} and predict(x) "
                             f"{tuple(out.shape)}")
        if int(y.min()) < 0 or int(y.max()) >= out.shape[1]:
            raise ValueError(f"y must hold labels in [0, {out.shape[1] - 1}]")
    elif not y.is_floating_point():
        raise ValueError(f"y must be float targets or int64/int32 class "
                         f"labels, got {y.dtype}")
    elif out.shape != y.shape:
        raise ValueError(f"y must have predict(x)'s shape "
                         f"{tuple(out.shape)} for the default mean squared "
                         f"error (no broadcasting), got {tuple(y.shape)}")


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
    """Permutation feature importance (Breiman 2001; Fisher, Rudin & Dominici 2019).

    For each feature group ``j`` (each input feature, or each patch of ``feature_mask``, e.g.
    from :func:`patch_mask`) the values of that group are shuffled across the ``n`` examples
    of ``x``, breaking its link to ``y`` while keeping its distribution:

    $$I_j = L(f(x^{\\pi_j}), y) - L(f(x), y).$$

    A feature the model ignores has ``I_j = 0`` exactly. ``loss_fn(prediction, y)`` must return
    one scalar for the batch; it defaults to cross-entropy for integer ``y`` and mean squared
    error otherwise. The shuffling is Captum's ``FeaturePermutation`` (which returns the
    loss *drop*, so the sign is flipped here), repeated ``n_repeats`` times with seeds
    ``seed, seed+1, ...`` without touching the global random state.
    """
    from captum.attr import FeaturePermutation

    _check_callable("predict", predict)
    x = _check_input("x", x)
    y = _check_tensor("y", y)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples to permute across, got {x.shape[0]}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have one entry per example of x ({x.shape[0]}), got "
                         f"{y.shape[0]}")
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
            raise ValueError(f"loss_fn must return a scalar for the batch, "
                             f"got {getattr(out, 'shape', out)!r}")
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
                attr = fp.attribute(x, feature_mask=mask, perturbations_per_eval=1)
            rows.append(-_group_values(attr[0:1], mask, n))
    return PermutationImportance(torch.stack(rows), baseline)


# --------------------------------------------------------------------------------------
# Model-agnostic: a local interpretable surrogate (LIME, Ribeiro et al. 2016)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Surrogate:
    """A linear model ``g(z) = intercept + coefficients . z`` that mimics ``f`` near one input.

    ``z`` is binary: ``z_j = 1`` keeps feature group ``j`` of the input, ``z_j = 0`` replaces it
    by the baseline. ``attribution`` paints each coefficient onto the pixels (or features) of
    its group, with the input's shape.
    """

    coefficients: Tensor
    intercept: float
    attribution: Tensor
    fidelity: float = float("nan")


def _fidelity(predict: Callable[[Tensor], Tensor], x: Tensor, mask: Tensor, n: int,
              baseline: float | Tensor, target: int | None, coef: Tensor, intercept: float,
              n_samples: int) -> float:
    """R^2 of the surrogate against the model on fresh random coalitions ``z``."""
    z = torch.bernoulli(torch.full((n_samples, n), 0.5))
    keep = z[:, mask.expand_as(x[:1])[0]]  # (n_samples, *x.shape[1:])
    base = torch.as_tensor(baseline, dtype=x.dtype)
    inputs = keep * x + (1 - keep) * base
    with torch.no_grad():
        out = predict(inputs)
    f = (out[:, target] if target is not None else out.reshape(n_samples)).to(torch.float64)
    g = intercept + z.to(torch.float64) @ coef.to(torch.float64)
    total = float(((f - f.mean()) ** 2).sum())
    if total == 0.0:
        return 1.0 if float(((f - g) ** 2).sum()) < 1e-12 else float("nan")
    return 1.0 - float(((f - g) ** 2).sum()) / total


def _check_baseline(baseline: object, x: Tensor) -> None:
    if isinstance(baseline, Tensor):
        try:
            torch.broadcast_shapes(baseline.shape, x.shape)
        except RuntimeError:
            raise ValueError(f"baseline must broadcast to x's shape "
                             f"{tuple(x.shape)}, got "
                             f"{tuple(baseline.shape)}") from None
        if not baseline.is_floating_point():
            raise ValueError(f"baseline must be floating-point, got "
                             f"{baseline.dtype}")
    elif isinstance(baseline, bool) or not isinstance(
            baseline, (int, float)) or not math.isfinite(baseline):
        raise ValueError(f"baseline must be a finite number or a tensor, got "
                         f"{baseline!r}")


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
    """Fit LIME's local surrogate for the prediction ``predict(x)[0, target]`` (Ribeiro et al. 2016).

    ``x`` is one example with a batch dimension of 1. ``n_samples`` binary vectors ``z`` are
    drawn uniformly; each switches feature groups (pixels, features, or the patches of
    ``feature_mask``) off, i.e. to ``baseline``. The perturbed inputs are scored by the model
    and a ridge regression (scikit-learn, penalty ``ridge_alpha``) is fitted to the scores,
    weighting each sample by ``exp(-d^2 / kernel_width^2)`` with ``d`` the cosine distance to
    ``x`` (Captum's ``Lime``):

    $$g = \\arg\\min_{g} \\sum_z \\pi_x(z) (f(h_x(z)) - g(z))^2 + \\alpha \\lVert w \\rVert^2.$$

    For a linear ``f(x) = w . x + b`` with a zero baseline the coefficients are ``w_j x_j``
    exactly (up to the small ridge penalty). ``target`` picks the output column; leave it
    ``None`` when ``predict`` returns one number per example.

    ``fidelity`` is the surrogate's local fidelity (Ribeiro et al.'s term): the R^2 of ``g``
    against the model's scores on ``fidelity_samples`` fresh random coalitions, unweighted.
    Near 1 the linear story is faithful; far below 1 the model is not linear in the patches
    there and the coefficients should not be read as its reasons. ``fidelity_samples=0``
    skips it (``nan``).
    """
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    _check_callable("predict", predict)
    x = _check_input("x", x, 2)
    if x.shape[0] != 1:
        raise ValueError(f"x must be one example with a batch dimension of 1, got shape "
                         f"{tuple(x.shape)}")
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
        width = (out.shape[-1] if isinstance(out, Tensor) and out.dim() == 2
                 else 0)
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < width:
            raise ValueError(f"target must be an output index in [0, {width - 1}], got {target!r}")

    surrogate_model = SkLearnRidge(alpha=ridge_alpha)
    lime = Lime(predict, interpretable_model=surrogate_model,
                similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            coef = lime.attribute(x, baselines=baseline, target=target,
                                  feature_mask=mask.expand_as(x[:1]),
                                  n_samples=n_samples,
                                  return_input_shape=False)
        except AssertionError as e:  # Captum checks outputs with asserts
            raise ValueError(f"predict must return one number per example, "
                             f"or (examples, outputs) with target naming "
                             f"one: {e}") from None
        coef = coef.reshape(-1).detach().to(torch.float32)
        bias = surrogate_model.bias()
        intercept = float(bias.reshape(-1)[0]) if bias is not None else 0.0
        fidelity = (_fidelity(predict, x, mask, n, baseline, target, coef, intercept,
                              fidelity_samples) if fidelity_samples else float("nan"))
    attribution = coef[mask.expand_as(x)]
    return Surrogate(coef, intercept, attribution, fidelity)


# --------------------------------------------------------------------------------------
# Model-specific: attention over the support set (matching networks, Vinyals et al. 2016)
# --------------------------------------------------------------------------------------

_METRICS = ("euclidean", "cosine")


def support_attention(
    query: Tensor,
    support: Tensor,
    *,
    metric: str = "euclidean",
    temperature: float = 1.0,
) -> Tensor:
    """How much each query attends to each support example: ``(n_query, n_support)``, rows sum to 1.

    ``query`` ``(n_query, d)`` and ``support`` ``(n_support, d)`` are embeddings. As in
    matching networks (Vinyals et al. 2016), ``a(q, s_i) = softmax_i(c(q, s_i) / T)`` where the
    similarity ``c`` is the cosine (``metric="cosine"``) or the negative squared Euclidean
    distance (``metric="euclidean"``, the one prototypical networks use, Snell et al. 2017).
    """
    query = _check_input("query", query, 2, nonempty=False)
    support = _check_input("support", support, 2, nonempty=False)
    if query.dim() != 2 or support.dim() != 2:
        raise ValueError(f"query and support must be 2-D (examples, features), got shapes "
                         f"{tuple(query.shape)} and {tuple(support.shape)}")
    if query.shape[1] != support.shape[1]:
        raise ValueError(f"support must have the query's feature size {query.shape[1]}, got "
                         f"{support.shape[1]}")
    if support.shape[0] < 1:
        raise ValueError("support must hold at least one example")
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {list(_METRICS)}, got {metric!r}")
    _check_number("temperature", temperature)
    if metric == "cosine":
        sim = F.normalize(query, dim=1) @ F.normalize(support, dim=1).T
    else:
        sim = -torch.cdist(query, support).pow(2)
    return torch.softmax(sim / temperature, dim=1)


def class_attention(attention: Tensor, support_y: Tensor, n_way: int | None = None) -> Tensor:
    """Sum attention over each class's support examples: matching networks' class probabilities.

    ``attention`` is ``(n_query, n_support)`` from :func:`support_attention`, ``support_y`` the
    support labels ``0..n_way-1``. Returns ``(n_query, n_way)``; rows sum to 1.
    """
    attention = _check_input("attention", attention, 2, nonempty=False)
    support_y = _check_labels("support_y", support_y)
    if support_y.shape != (attention.shape[1],) or not len(support_y):
        raise ValueError(f"support_y must have shape "
                         f"({attention.shape[1]},), one label per support "
                         f"example (at least one), got "
                         f"{tuple(support_y.shape)}")
    n_way = int(support_y.max()) + 1 if n_way is None else n_way
    _check_positive_int("n_way", n_way)
    if support_y.min() < 0 or support_y.max() >= n_way:
        raise ValueError(f"support_y labels must be in [0, {n_way - 1}]")
    onehot = F.one_hot(support_y.long(), n_way).to(attention.dtype)
    return attention @ onehot


# --------------------------------------------------------------------------------------
# Model-specific: neuron activations through forward hooks
# --------------------------------------------------------------------------------------


@contextmanager
def record_activations(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    *,
    detach: bool = True,
) -> Iterator[dict[str, Tensor]]:
    """Capture the outputs of ``model``'s sub-modules while the ``with`` block runs.

    ``layers`` names modules as ``model.named_modules()`` does (``"body.0.2"``); by default
    every leaf module. The yielded dict maps each name to the output of that module's latest
    forward call (detached unless ``detach=False``). Hooks also fire when the model runs with
    fast weights through ``torch.func.functional_call``. They are removed on exit, even after
    an exception::

        with record_activations(net, ["body.0", "body.1"]) as acts:
            net(x)
        acts["body.0"].shape
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_layers(layers)
    _check_flag("detach", detach)
    modules = dict(model.named_modules())
    if layers is None:
        layers = [name for name, m in modules.items() if name and not any(True for _ in m.children())]
    else:
        if isinstance(layers, str):
            layers = [layers]
        unknown = [name for name in layers if name not in modules or name == ""]
        if unknown:
            allowed = [name for name in modules if name]
            raise ValueError(f"layers holds unknown module names {unknown}; allowed: {allowed}")
    activations: dict[str, Tensor] = {}
    handles = []

    def hook_for(name: str) -> Callable:
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            activations[name] = output.detach() if detach else output
        return hook

    try:
        for name in layers:
            handles.append(modules[name].register_forward_hook(hook_for(name)))
        yield activations
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------------------
# Model-specific: where adaptation happens in the weights
# --------------------------------------------------------------------------------------


def weight_change(
    before: Mapping[str, Tensor],
    after: Mapping[str, Tensor],
    *,
    relative: bool = True,
) -> dict[str, float]:
    """How far adaptation moved each parameter tensor: ``||theta'_l - theta_l|| / ||theta_l||``.

    ``before`` and ``after`` map parameter names to tensors (e.g. ``dict(model.named_parameters())``
    and the fast weights that :func:`mlkit.maml.adapt` returns). With ``relative=False`` the
    plain Frobenius norm of the change is returned. A tensor of zeros before adaptation gives
    ``inf`` (or ``0.0`` when it did not move) in relative mode. Raghu et al. (2020) ask the
    same question with representations; this is its counterpart in weight space.
    """
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        raise ValueError("before and after must be mappings from parameter names to tensors")
    _check_weights("before", before)
    _check_weights("after", after)
    _check_flag("relative", relative)
    if set(before) != set(after):
        raise ValueError(f"after must have the same parameter names as before; only in before: "
                         f"{sorted(set(before) - set(after))}, only in after: "
                         f"{sorted(set(after) - set(before))}")
    out: dict[str, float] = {}
    for name, b in before.items():
        a = after[name]
        if a.shape != b.shape:
            raise ValueError(f"after[{name!r}] has shape {tuple(a.shape)}, before has "
                             f"{tuple(b.shape)}")
        if not (a.is_floating_point() and b.is_floating_point()):
            raise ValueError(f"before[{name!r}] and after[{name!r}] must be "
                             f"floating-point, got {b.dtype} and {a.dtype}")
        diff = float((a.detach() - b.detach()).norm())
        if relative:
            size = float(b.detach().norm())
            out[name] = diff / size if size > 0 else (0.0 if diff == 0 else float("inf"))
        else:
            out[name] = diff
    return out


# ======================================================================================
# Chapter 6: representation similarity, gradient attributions, support influence, and
# what the inner loop does step by step. Each tool takes either a MAML model with fast
# weights or a metric learner's scorer (:func:`prototype_scorer`, :func:`pair_similarity`).
# ======================================================================================

from dataclasses import field  # noqa: E402

__all__ += [
    "linear_cka",
    "default_layers",
    "layer_activations",
    "layer_cka",
    "frozen_statistics",
    "prototype_scorer",
    "pair_similarity",
    "Attribution",
    "saliency",
    "integrated_gradients",
    "loo_influence",
    "gradient_influence",
    "Trajectory",
    "fast_weight_trajectory",
    "layer_of",
    "activation_change",
    "top_activating",
    "effective_rank",
    "dead_units",
]


def _flat64(name: str, x: object) -> Tensor:
    x = _check_tensor(name, x, 1)
    if x.numel() == 0:
        raise ValueError(f"{name} must hold examples with features, got shape "
                         f"{tuple(x.shape)}")
    if x.dim() == 1:
        x = x[:, None]
    return x.detach().reshape(x.shape[0], -1).to(torch.float64)


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


def default_layers(model: nn.Module) -> list[str]:
    """The layers the chapter compares: each block of ``model.body`` and ``head`` (if any).

    For a model without a ``body`` Sequential, every leaf module.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    body = getattr(model, "body", None)
    if isinstance(body, nn.Sequential):
        names = [f"body.{i}" for i in range(len(body))]
        if isinstance(getattr(model, "head", None), nn.Module):
            names.append("head")
        return names
    return [n for n, m in model.named_modules() if n and not any(True for _ in m.children())]


def _check_params(model: nn.Module, params: object) -> None:
    """``params`` are None or tensors named as ``model``'s parameters or
    buffers."""
    if params is None:
        return
    _check_weights("params", params)
    known = {n for n, _ in model.named_parameters()} | {
        n for n, _ in model.named_buffers()}
    unknown = [n for n in params if n not in known]
    if unknown:
        raise ValueError(f"params holds names that are not parameters of "
                         f"the model: {unknown}")


def layer_activations(
    model: nn.Module,
    params: Mapping[str, Tensor] | None,
    x: Tensor,
    layers: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """Each layer's output for the batch ``x`` under weights ``params`` (default: the model's).

    Runs ``model`` once through ``torch.func.functional_call`` (so fast weights from
    :func:`mlkit.maml.adapt` work) with forward hooks on ``layers`` (default
    :func:`default_layers`). With batch-statistics BatchNorm the activations of one example
    depend on the rest of ``x``: compare representations on the same batch.
    """
    from torch.func import functional_call

    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got "
                         f"{type(model).__name__}")
    _check_params(model, params)
    x = _check_input("x", x, 2)
    _check_layers(layers)
    layers = default_layers(model) if layers is None else (
        [layers] if isinstance(layers, str) else list(layers))
    with torch.no_grad(), record_activations(model, layers) as acts:
        if params is None:
            model(x)
        else:
            functional_call(model, dict(params), (x,))
    return {name: acts[name] for name in layers}


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


def _uses_batch_statistics(m: nn.Module) -> bool:
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and (
        m.training or m.running_mean is None)


def frozen_statistics(
    model: nn.Module,
    params: Mapping[str, Tensor] | None,
    reference_x: Tensor,
) -> Callable[[Tensor], Tensor]:
    """``f(x)``: the model under ``params`` with every batch-statistics BatchNorm *frozen* to the
    statistics it computes on ``reference_x``.

    Finn's network normalises each batch with its own mean and variance, so one example's
    output depends on the rest of the batch. Gradient attributions need a function of one
    example: Integrated Gradients feeds a batch of interpolated copies of one image, whose
    statistics would replace the real batch's. Here the per-channel mean and (biased)
    variance are computed once, on the real batch ``reference_x`` (e.g. the task's query set),
    and every later call normalises with those fixed values. Then ``f(reference_x)`` equals
    the model's ordinary output on ``reference_x``, and ``f`` treats examples independently.
    BatchNorm layers that already use running statistics (``eval()`` mode) are left alone.
    """
    from torch.func import functional_call

    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_params(model, params)
    reference_x = _check_input("reference_x", reference_x, 2)
    if reference_x.shape[0] < 2:
        raise ValueError(f"reference_x must hold at least 2 examples (a batch to take "
                         f"statistics from), got {reference_x.shape[0]}")
    params = dict(model.named_parameters()) if params is None else dict(params)
    bns = {n: m for n, m in model.named_modules() if _uses_batch_statistics(m)}
    stats: dict[str, tuple[Tensor, Tensor]] = {}

    def recorder(name: str) -> Callable:
        def hook(_m: nn.Module, inputs: tuple) -> None:
            h = inputs[0].detach()
            dims = [0] + list(range(2, h.dim()))
            stats[name] = (h.mean(dims), h.var(dims, unbiased=False))
        return hook

    handles = [m.register_forward_pre_hook(recorder(n)) for n, m in bns.items()]
    try:
        with torch.no_grad():
            functional_call(model, params, (reference_x,))
    finally:
        for h in handles:
            h.remove()

    def frozen(name: str) -> Callable:
        def hook(m: nn.Module, inputs: tuple, _output: Tensor) -> Tensor:
            mean, var = stats[name]
            h = inputs[0]
            return F.batch_norm(h, mean.to(h.dtype), var.to(h.dtype), m.weight, m.bias,
                                training=False, eps=m.eps)
        return hook

    def forward(x: Tensor) -> Tensor:
        hs = [m.register_forward_hook(frozen(n)) for n, m in bns.items()]
        try:
            return functional_call(model, params, (x,))
        finally:
            for h in hs:
                h.remove()

    return forward


def prototype_scorer(
    embed: Callable[[Tensor], Tensor],
    support_x: Tensor,
    support_y: Tensor,
    n_way: int | None = None,
    *,
    support_grad: bool = False,
) -> Callable[[Tensor], Tensor]:
    """``f(x)``: a metric learner's class scores for queries ``x``, ``-||embed(x) - p_c||^2``.

    ``p_c`` is the mean support embedding of class ``c`` (Snell et al. 2017); with one shot
    per class it is the support image's embedding, i.e. the Siamese network's nearest-
    neighbour rule on squared distances (Koch et al. 2015). The support set is embedded
    once, without gradients by default, so attributions of ``f`` are with respect to the
    query only; ``support_grad=True`` keeps the graph to ``support_x`` (for
    :func:`gradient_influence`).
    """
    _check_callable("embed", embed)
    support_x = _check_input("support_x", support_x, 2)
    support_y = _check_labels("support_y", support_y)
    _check_flag("support_grad", support_grad)
    if support_y.shape != support_x.shape[:1]:
        raise ValueError(f"support_y must have one label per support example "
                         f"({support_x.shape[0]}), got shape {tuple(support_y.shape)}")
    n_way = int(support_y.max()) + 1 if n_way is None else n_way
    _check_positive_int("n_way", n_way)
    if support_y.min() < 0 or support_y.max() >= n_way:
        raise ValueError(f"support_y labels must be in [0, {n_way - 1}]")
    counts = torch.bincount(support_y.long(), minlength=n_way)
    if bool((counts == 0).any()):
        raise ValueError("support_y must give every class at least one support example")
    with torch.set_grad_enabled(support_grad and torch.is_grad_enabled()):
        z = embed(support_x)
    protos = torch.zeros(n_way, z.shape[1], dtype=z.dtype).index_add_(0, support_y.long(), z)
    protos = protos / counts[:, None].to(z.dtype)

    def forward(x: Tensor) -> Tensor:
        q = embed(x)
        return -(q[:, None, :] - protos[None].to(q.dtype)).pow(2).sum(-1)

    return forward


def pair_similarity(
    embed: Callable[[Tensor], Tensor],
    other: Tensor,
) -> Callable[[Tensor], Tensor]:
    """``s(x) = -d(embed(x), embed(other))``: a Siamese pair's similarity as a function of one image.

    ``other`` is the pair's second image ``(1, C, H, W)`` (or one per row of ``x``); ``d`` is
    the Euclidean distance of :func:`mlkit.siamese.euclidean_distance`. Attributing ``s``
    with respect to ``x`` and then swapping the roles gives each image's share of the
    decision "same" or "different". Put an embedding with BatchNorm in ``eval()`` mode first.
    """
    from .siamese import euclidean_distance

    _check_callable("embed", embed)
    other = _check_input("other", other, 2)
    with torch.no_grad():
        zo = embed(other)

    def forward(x: Tensor) -> Tensor:
        z = embed(x)
        o = zo.to(z.dtype).expand_as(z) if zo.shape[0] == 1 else zo.to(z.dtype)
        return -euclidean_distance(z, o)

    return forward


@dataclass(frozen=True)
class Attribution:
    """A gradient attribution of ``f(x)[target]``: a map with ``x``'s shape per example.

    ``delta`` (Integrated Gradients only) is Captum's completeness error
    ``sum(attribution) - (f(x) - f(baseline))`` per example; ``output`` and
    ``baseline_output`` are ``f(x)[target]`` and ``f(baseline)[target]``.
    """

    attribution: Tensor
    output: Tensor
    baseline_output: Tensor | None = None
    delta: Tensor | None = None


def _target_value(forward: Callable[[Tensor], Tensor], x: Tensor,
                  target: int | Tensor | None) -> Tensor:
    out = forward(x)
    if not isinstance(out, Tensor) or out.dim() not in (1, 2) or (
            out.shape[0] != x.shape[0]) or not out.is_floating_point():
        raise ValueError(f"forward must return floating-point scores "
                         f"(examples,) or (examples, outputs) for x of shape "
                         f"{tuple(x.shape)}, got "
                         f"{getattr(out, 'shape', out)!r}")
    if out.dim() == 1:
        if target is not None:
            raise ValueError("target must be None when the function returns one number per "
                             "example")
        return out
    if target is None:
        raise ValueError(f"target must name an output column in [0, {out.shape[1] - 1}] for "
                         f"a function with {out.shape[1]} outputs")
    t = torch.as_tensor(target).long().reshape(-1)
    if t.numel() not in (1, out.shape[0]) or t.min() < 0 or t.max() >= out.shape[1]:
        raise ValueError(f"target must be an index (or one per example) in "
                         f"[0, {out.shape[1] - 1}], got {target!r}")
    return out.gather(1, t.expand(out.shape[0])[:, None])[:, 0]


def saliency(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    target: int | Tensor | None = None,
    absolute: bool = True,
) -> Attribution:
    """Saliency (Simonyan, Vedaldi & Zisserman 2014) with Captum: ``|d f(x)[target] / d x|``.

    ``forward`` maps a batch to scores, e.g. :func:`frozen_statistics` of an adapted MAML
    model, :func:`prototype_scorer` or :func:`pair_similarity`. With ``absolute=False`` the
    signed gradient is returned.
    """
    from captum.attr import Saliency

    _check_callable("forward", forward)
    x = _check_input("x", x, 2)
    _check_target(target)
    _check_flag("absolute", absolute)
    with torch.no_grad():
        out = _target_value(forward, x, target)
    attr = Saliency(forward).attribute(x.detach().clone().requires_grad_(), target=target,
                                       abs=absolute)
    return Attribution(attr.detach(), out.detach())


def integrated_gradients(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    target: int | Tensor | None = None,
    baseline: float | Tensor = 0.0,
    n_steps: int = 64,
    method: str = "gausslegendre",
) -> Attribution:
    """Integrated Gradients (Sundararajan, Taly & Yan 2017) with Captum:

    $$\\mathrm{IG}_i(x) = (x_i - x'_i) \\int_0^1 \\frac{\\partial f(x' + t (x - x'))}
    {\\partial x_i} \\, dt,$$

    approximated with ``n_steps`` points (``method`` as Captum's). Completeness,
    ``sum_i IG_i = f(x) - f(x')``, holds up to the quadrature error reported in ``delta``.
    ``forward`` must treat examples independently: for a batch-statistics BatchNorm network
    pass :func:`frozen_statistics`, otherwise the interpolation batch sets the statistics.
    The default baseline ``x' = 0`` is a blank page for Omniglot's ink-is-1 images.
    """
    from captum.attr import IntegratedGradients

    _check_callable("forward", forward)
    x = _check_input("x", x, 2)
    _check_target(target)
    _check_baseline(baseline, x)
    _check_positive_int("n_steps", n_steps, 2)
    if method not in ("gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_left",
                      "riemann_right"):
        raise ValueError(f"method must be one of Captum's ('gausslegendre', 'riemann_*'), got "
                         f"{method!r}")
    base = torch.as_tensor(baseline, dtype=x.dtype)
    base = base.expand_as(x).clone() if base.dim() == 0 or base.shape != x.shape else base
    with torch.no_grad():
        out = _target_value(forward, x, target)
        out0 = _target_value(forward, base, target)
    attr, delta = IntegratedGradients(forward).attribute(
        x.detach(), baselines=base, target=target, n_steps=n_steps, method=method,
        return_convergence_delta=True)
    return Attribution(attr.detach(), out.detach(), out0.detach(), delta.detach())


# --------------------------------------------------------------------------------------
# Support-example influence
# --------------------------------------------------------------------------------------

FitPredict = Callable[[Tensor, Tensor, Tensor], Tensor]


def _check_episode_tensors(support_x: Tensor, support_y: Tensor, query_x: Tensor,
                           query_y: Tensor) -> None:
    _check_input("support_x", support_x, 2)
    _check_input("query_x", query_x, 2)
    _check_labels("support_y", support_y)
    _check_labels("query_y", query_y)
    if support_y.shape != support_x.shape[:1]:
        raise ValueError(f"support_y must hold one label per support example "
                         f"({support_x.shape[0]}), got shape {tuple(support_y.shape)}")
    if query_y.shape != query_x.shape[:1]:
        raise ValueError(f"query_y must hold one label per query ({query_x.shape[0]}), got "
                         f"shape {tuple(query_y.shape)}")
    if support_x.shape[1:] != query_x.shape[1:]:
        raise ValueError(f"query_x must have the support images' shape {tuple(support_x.shape[1:])}, "
                         f"got {tuple(query_x.shape[1:])}")
    if support_x.shape[0] < 2:
        raise ValueError(f"support_x must hold at least 2 examples, got {support_x.shape[0]}")


def _per_query_loss(logits: Tensor, y: Tensor) -> Tensor:
    if not isinstance(logits, Tensor) or logits.dim() != 2 or (
            logits.shape[0] != y.shape[0]) or not logits.is_floating_point():
        raise ValueError(f"fit_predict must return (queries, classes) "
                         f"logits, one row per query ({y.shape[0]}), got "
                         f"{getattr(logits, 'shape', logits)!r}")
    if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
        raise ValueError(f"query_y must hold labels in "
                         f"[0, {logits.shape[1] - 1}]")
    return F.cross_entropy(logits, y.long(), reduction="none")


def loo_influence(
    fit_predict: FitPredict,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
) -> Tensor:
    """Leave-one-out influence of each support example on each query's loss.

    ``fit_predict(support_x, support_y, query_x)`` runs the base learner on a support set and
    returns query logits: MAML's inner loop followed by a prediction, or a prototype
    classifier. ``influence[q, i] = L_q(S \\ {i}) - L_q(S)``, the rise of query ``q``'s
    cross-entropy when support example ``i`` is left out and the learner re-adapted
    (Koh & Liang 2017 approximate exactly this quantity; here it is computed). Positive:
    example ``i`` helped query ``q``. Returns ``(n_query, n_support)``.
    """
    _check_callable("fit_predict", fit_predict)
    _check_episode_tensors(support_x, support_y, query_x, query_y)
    n = support_x.shape[0]
    with torch.no_grad():
        full = _per_query_loss(fit_predict(support_x, support_y, query_x).detach(), query_y)
    cols = []
    for i in range(n):
        keep = torch.arange(n) != i
        logits = fit_predict(support_x[keep], support_y[keep], query_x).detach()
        cols.append(_per_query_loss(logits, query_y) - full)
    return torch.stack(cols, 1)


def gradient_influence(
    fit_predict: FitPredict,
    support_x: Tensor,
    support_y: Tensor,
    query_x: Tensor,
    query_y: Tensor,
) -> tuple[Tensor, Tensor]:
    """The gradient of the query loss with respect to the support *images*, through the
    base learner (for MAML: through the inner loop, second order).

    Returns ``(grad, score)``: ``grad`` has ``support_x``'s shape, ``dL_Q / d x_i`` with
    ``L_Q`` the mean query cross-entropy; ``score[i] = -<grad_i, x_i>`` is the first-order
    estimate of the rise in ``L_Q`` when image ``i`` is blanked (set to 0), the
    differentiable cousin of :func:`loo_influence` (positive: the image helped).
    ``fit_predict`` must keep the graph from ``support_x`` to the logits (MAML: adapt with
    ``first_order=False``).
    """
    _check_callable("fit_predict", fit_predict)
    _check_episode_tensors(support_x, support_y, query_x, query_y)
    sx = support_x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = _per_query_loss(fit_predict(sx, support_y, query_x), query_y).mean()
        g = torch.autograd.grad(loss, sx, allow_unused=True)[0] if loss.requires_grad else None
    if g is None:
        raise ValueError("fit_predict's logits do not depend on support_x (no gradient path): "
                         "adapt with first_order=False and keep the graph")
    score = -(g * support_x).reshape(len(g), -1).sum(1)
    return g.detach(), score.detach()


# --------------------------------------------------------------------------------------
# The inner loop, step by step
# --------------------------------------------------------------------------------------


def layer_of(name: str, depth: int = 2) -> str:
    """The layer a parameter belongs to: its module path cut to ``depth`` parts
    (``"body.0.1.weight"`` -> ``"body.0"``, ``"head.bias"`` -> ``"head"``)."""
    _check_positive_int("depth", depth)
    if not isinstance(name, str):
        raise ValueError(f"name must be a parameter name (a string), got "
                         f"{name!r}")
    parts = name.split(".")[:-1] or [name]
    return ".".join(parts[:depth])


@dataclass(frozen=True)
class Trajectory:
    """What :func:`fast_weight_trajectory` records at steps ``0 .. inner_steps``.

    ``params[t]`` are the fast weights after ``t`` steps (``params[0]`` the initialisation;
    with a leading task axis in the task-batch layout). ``support_loss[t]`` and, when
    queries were given, ``query_loss[t]`` and ``query_accuracy[t]`` are measured at those
    weights (means over tasks); ``task_accuracy[t]`` holds each task's query accuracy.
    ``step_size[layer][t-1]`` is ``||theta_t - theta_{t-1}||`` over the layer's parameters and
    ``distance[layer][t]`` is ``||theta_t - theta_0||`` (Frobenius norms over all the layer's
    tensors; root mean square over tasks in the task-batch layout).
    """

    params: list[dict[str, Tensor]]
    support_loss: list[float]
    query_loss: list[float] = field(default_factory=list)
    query_accuracy: list[float] = field(default_factory=list)
    task_accuracy: list[Tensor] = field(default_factory=list)
    step_size: dict[str, list[float]] = field(default_factory=dict)
    distance: dict[str, list[float]] = field(default_factory=dict)


def fast_weight_trajectory(
    model: nn.Module,
    support_x: Tensor,
    support_y: Tensor,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inner_steps: int,
    alpha: float,
    query_x: Tensor | None = None,
    query_y: Tensor | None = None,
    query_loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    params: Mapping[str, Tensor] | None = None,
    adapt_names: Sequence[str] | None = None,
    batched: bool = False,
    depth: int = 2,
) -> Trajectory:
    """Run MAML's inner loop one step at a time and record it.

    Each step is ``theta_{t+1} = theta_t - alpha grad_theta L_S(theta_t)`` on the parameters
    ``adapt_names`` (default all; ANIL: the head's), so the recorded fast weights equal
    :func:`mlkit.maml.adapt` with ``inner_steps=t`` (first order: only values are kept).
    With ``batched=True`` the tensors carry a leading task axis and the task-batch layout of
    :func:`mlkit.maml.predict_tasks` runs all tasks at once (as :func:`mlkit.maml.adapt_tasks`).
    Records the support loss, the query loss and accuracy (when ``query_x``/``query_y`` are
    given; ``query_loss_fn`` defaults to ``loss_fn``) and the size of each step per layer
    (:func:`layer_of` with ``depth``). Observation only: nothing is meta-trained.
    """
    from . import maml

    maml._check_adapt_args(model, loss_fn, inner_steps, alpha, params, False)
    if query_loss_fn is not None:
        _check_callable("query_loss_fn", query_loss_fn)
    _check_flag("batched", batched)
    _check_positive_int("depth", depth)
    if (query_x is None) != (query_y is None):
        raise ValueError("query_x and query_y must be given together")
    qloss = loss_fn if query_loss_fn is None else query_loss_fn
    p = {k: v.detach() for k, v in (dict(model.named_parameters()) if params is None
                                    else dict(params)).items()}
    names = maml._names(model, p, adapt_names)
    if batched:
        _check_tensor("support_x", support_x)
        _check_tensor("support_y", support_y)
        if support_x.dim() < 3 or support_y.shape[0] != support_x.shape[0]:
            raise ValueError(f"support_x must be (tasks, examples, ...) with support_y "
                             f"(tasks, examples) when batched, got {tuple(support_x.shape)} "
                             f"and {tuple(support_y.shape)}")
        if not maml.supports_task_batch(model):
            raise ValueError(f"model must be a SinusoidMLP or a ConvNet "
                             f"when batched, got {type(model).__name__}")
        n_tasks = support_x.shape[0]
        p = {k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in p.items()}
        forward = lambda w, x: maml.predict_tasks(model, w, x)  # noqa: E731
    else:
        maml._check_xy(support_x, support_y, maml._n_out(model),
                       maml._is_classifier(model, support_y), "support")
        n_tasks = 1
        forward = lambda w, x: maml.predict(model, w, x)  # noqa: E731
    history = [p]
    s_loss: list[float] = []
    q_loss: list[float] = []
    q_acc: list[float] = []
    t_acc: list[Tensor] = []

    def measure(w: dict[str, Tensor]) -> None:
        with torch.no_grad():
            s_loss.append(float(loss_fn(forward(w, support_x), support_y).mean()))
            if query_x is not None:
                out = forward(w, query_x)
                q_loss.append(float(qloss(out, query_y).mean()))
                if not torch.is_floating_point(query_y):
                    acc = maml.accuracy(out, query_y).reshape(-1)
                    t_acc.append(acc)
                    q_acc.append(float(acc.mean()))

    measure(p)
    for _ in range(inner_steps):
        targets = [p[n].detach().requires_grad_() for n in names]
        w = {**p, **dict(zip(names, targets))}
        with torch.enable_grad():
            loss = loss_fn(forward(w, support_x), support_y)
            if not (isinstance(loss, Tensor) and loss.requires_grad):
                raise ValueError("loss_fn must return a differentiable "
                                 f"loss tensor, got {type(loss).__name__}")
            loss = loss.sum()  # tasks are independent
            grads = torch.autograd.grad(loss, targets)
        p = {**p, **{n: (t - alpha * g).detach() for n, t, g in zip(names, targets, grads)}}
        history.append(p)
        measure(p)
    layers = list(dict.fromkeys(layer_of(n, depth) for n in p))

    def norm(a: dict[str, Tensor], b: dict[str, Tensor], layer: str) -> float:
        sq = sum(float((a[n] - b[n]).pow(2).sum()) for n in a if layer_of(n, depth) == layer)
        return (sq / n_tasks) ** 0.5

    step = {lay: [norm(history[t + 1], history[t], lay) for t in range(inner_steps)]
            for lay in layers}
    dist = {lay: [norm(history[t], history[0], lay) for t in range(inner_steps + 1)]
            for lay in layers}
    return Trajectory(history, s_loss, q_loss, q_acc, t_acc, step, dist)


def task_params(params: Mapping[str, Tensor], task: int) -> dict[str, Tensor]:
    """One task's fast weights out of a task-batch set (leading task axis)."""
    _check_weights("params", params)
    if not params or any(v.dim() == 0 for v in params.values()) or len(
            {v.shape[0] for v in params.values()}) != 1:
        raise ValueError("params must hold at least one tensor, each with "
                         "the same leading task axis")
    first = next(iter(params.values()))
    if isinstance(task, bool) or not isinstance(task, int) or not 0 <= task < first.shape[0]:
        raise ValueError(f"task must be an index in [0, {first.shape[0] - 1}], got {task!r}")
    return {k: v[task] for k, v in params.items()}


__all__ += ["task_params"]


@dataclass(frozen=True)
class ActivationChange:
    """Result of :func:`activation_change`.

    ``per_step[layer][t] = ||a_t - a_0|| / ||a_0||`` over the whole batch; ``per_unit[layer]``
    is, for each unit (channel), the mean absolute change after the last step divided by
    the layer's mean absolute activation before adaptation.
    """

    per_step: dict[str, list[float]]
    per_unit: dict[str, Tensor]


__all__ += ["ActivationChange"]


def activation_change(
    model: nn.Module,
    params: Sequence[Mapping[str, Tensor]],
    x: Tensor,
    layers: Sequence[str] | None = None,
) -> ActivationChange:
    """How each layer's (and each unit's) activations on ``x`` move across the inner steps.

    ``params`` is the list of fast weights at steps ``0 .. T`` (e.g.
    :attr:`Trajectory.params`). Activations are recorded with hooks on ``layers``
    (default :func:`default_layers`) for the same batch ``x`` at every step.
    """
    if not isinstance(params, Sequence) or len(params) < 2:
        raise ValueError("params must be a sequence of at least 2 weight sets (steps 0..T)")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got "
                         f"{type(model).__name__}")
    for p in params:
        _check_params(model, p)
    acts = [layer_activations(model, p, x, layers) for p in params]
    per_step: dict[str, list[float]] = {}
    per_unit: dict[str, Tensor] = {}
    for name, a0 in acts[0].items():
        size = float(a0.norm()) or 1.0
        per_step[name] = [float((a[name] - a0).norm()) / size for a in acts]
        last = acts[-1][name]
        dims = [0] + list(range(2, a0.dim()))
        scale = float(a0.abs().mean()) or 1.0
        per_unit[name] = (last - a0).abs().mean(dims) / scale
    return ActivationChange(per_step, per_unit)


def top_activating(activations: Tensor, k: int = 5) -> Tensor:
    """Indices of the ``k`` examples that activate each unit most: ``(units, k)``.

    ``activations`` is ``(n, units)`` or ``(n, units, H, W)`` (then averaged over space):
    the usual "which inputs drive this neuron" visualisation (Zeiler & Fergus 2014).
    """
    a = _check_input("activations", activations, 2, nonempty=False)
    _check_positive_int("k", k)
    if k > a.shape[0]:
        raise ValueError(f"k must be in [1, {a.shape[0]}] (the number of examples), got {k}")
    a = a.reshape(a.shape[0], a.shape[1], -1).mean(-1)
    return a.topk(k, dim=0).indices.T


def effective_rank(z: Tensor) -> float:
    """Roy & Vetterli (2007)'s effective rank of a representation ``(n, d)``: ``exp`` of the
    entropy of its normalised singular values (after centring). It is ``d`` for a
    representation that spreads evenly over ``d`` directions and 1 when it has collapsed
    onto a line; a collapsed embedding (every input mapped near one point) scores low.
    """
    z = _flat64("z", z)
    if z.shape[0] < 2:
        raise ValueError(f"z must hold at least 2 examples, got {z.shape[0]}")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("z must be finite (no NaN or inf)")
    s = torch.linalg.svdvals(z - z.mean(0, keepdim=True))
    if float(s.sum()) == 0.0:
        return 0.0
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def dead_units(z: Tensor, tol: float = 0.0) -> Tensor:
    """Which units of a representation ``(n, units, ...)`` never rise above ``tol`` on any
    example (a ReLU that is off for every input carries no information): bool ``(units,)``."""
    z = _check_tensor("z", z, 2)
    if z.numel() == 0:
        raise ValueError(f"z must hold at least one example and unit, got "
                         f"shape {tuple(z.shape)}")
    _check_number("tol", tol, strict=False)
    return (z.reshape(z.shape[0], z.shape[1], -1) <= tol).all(-1).all(0)


def class_selectivity(z: Tensor, labels: Tensor) -> Tensor:
    """How much of each unit's variance the class explains: the correlation ratio
    ``eta^2 = Var_between / Var_total`` per unit of a representation ``(n, units, ...)``
    (averaged over space first), with ``labels`` ``(n,)``.

    1 means the unit's value is fixed by the class (it encodes *which* character), 0 that
    the class tells nothing about it (it encodes the drawing: stroke width, position). A
    unit that never varies gets 0.
    """
    z = _check_input("z", z, 2)
    labels = _check_labels("labels", labels)
    if labels.shape != z.shape[:1]:
        raise ValueError(f"labels must hold one class per example ({z.shape[0]}), got shape "
                         f"{tuple(labels.shape)}")
    a = z.detach().reshape(z.shape[0], z.shape[1], -1).mean(-1).to(torch.float64)
    _, inv = torch.unique(labels, return_inverse=True)
    k = int(inv.max()) + 1
    counts = torch.bincount(inv, minlength=k).to(a.dtype)
    means = torch.zeros(k, a.shape[1], dtype=a.dtype).index_add_(0, inv, a) / counts[:, None]
    total = (a - a.mean(0)).pow(2).sum(0)
    between = (counts[:, None] * (means - a.mean(0)).pow(2)).sum(0)
    out = torch.where(total > 0, between / total.clamp_min(1e-300), torch.zeros_like(total))
    return out.float()


__all__ += ["class_selectivity"]
