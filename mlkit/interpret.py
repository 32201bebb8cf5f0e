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
"""

from __future__ import annotations

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

    x = _check_tensor("x", x)
    y = _check_tensor("y", y)
    if x.shape[0] < 2:
        raise ValueError(f"x must hold at least 2 examples to permute across, got {x.shape[0]}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have one entry per example of x ({x.shape[0]}), got "
                         f"{y.shape[0]}")
    _check_positive_int("n_repeats", n_repeats)
    mask, n = _feature_mask(x, feature_mask)
    loss_fn = _default_loss(y) if loss_fn is None else loss_fn

    def batch_loss(inputs: Tensor) -> Tensor:
        out = loss_fn(predict(inputs), y)
        if out.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar for the batch, got shape "
                             f"{tuple(out.shape)}")
        return out.reshape(1)

    with torch.no_grad():
        baseline = float(batch_loss(x))
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
    """
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from captum.attr._core.lime import get_exp_kernel_similarity_function

    x = _check_tensor("x", x, 2)
    if x.shape[0] != 1:
        raise ValueError(f"x must be one example with a batch dimension of 1, got shape "
                         f"{tuple(x.shape)}")
    _check_positive_int("n_samples", n_samples, 2)
    if not kernel_width > 0:
        raise ValueError(f"kernel_width must be > 0, got {kernel_width}")
    if not ridge_alpha >= 0:
        raise ValueError(f"ridge_alpha must be >= 0, got {ridge_alpha}")
    mask, n = _feature_mask(x, feature_mask)
    if target is not None:
        with torch.no_grad():
            width = predict(x).shape[-1]
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < width:
            raise ValueError(f"target must be an output index in [0, {width - 1}], got {target!r}")

    surrogate_model = SkLearnRidge(alpha=ridge_alpha)
    lime = Lime(predict, interpretable_model=surrogate_model,
                similarity_func=get_exp_kernel_similarity_function("cosine", kernel_width))
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        coef = lime.attribute(x, baselines=baseline, target=target,
                              feature_mask=mask.expand_as(x[:1]), n_samples=n_samples,
                              return_input_shape=False)
    coef = coef.reshape(-1).detach().to(torch.float32)
    bias = surrogate_model.bias()
    attribution = coef[mask.expand_as(x)]
    return Surrogate(coef, float(bias.reshape(-1)[0]) if bias is not None else 0.0, attribution)


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
    query = _check_tensor("query", query, 2)
    support = _check_tensor("support", support, 2)
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
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
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
    attention = _check_tensor("attention", attention, 2)
    support_y = _check_tensor("support_y", support_y)
    if support_y.shape != (attention.shape[1],):
        raise ValueError(f"support_y must have shape ({attention.shape[1]},), one label per "
                         f"support example, got {tuple(support_y.shape)}")
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
        diff = float((a.detach() - b.detach()).norm())
        if relative:
            size = float(b.detach().norm())
            out[name] = diff / size if size > 0 else (0.0 if diff == 0 else float("inf"))
        else:
            out[name] = diff
    return out
