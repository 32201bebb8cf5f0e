"""Gradient attributions and the scorers they explain.

* scorers: :func:`frozen_statistics` (a batch-statistics BatchNorm network
  with its statistics frozen on a real batch, so that attributions explain the
  classifier and not the batch), :func:`prototype_scorer` and
  :func:`pair_similarity`;
* attributions with Captum: :func:`saliency` (Simonyan et al. 2014) and
  :func:`integrated_gradients` (Sundararajan et al. 2017).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import (
    _check_positive_int,
    _check_input,
    _check_labels,
    _check_callable,
    _check_flag,
    _check_target,
    _check_params,
    _uses_batch_statistics,
    _check_baseline,
)

__all__ = [
    "frozen_statistics",
    "prototype_scorer",
    "pair_similarity",
    "Attribution",
    "saliency",
    "integrated_gradients",
]


def frozen_statistics(
    model: nn.Module,
    params: Mapping[str, Tensor] | None,
    reference_x: Tensor,
) -> Callable[[Tensor], Tensor]:
    """``f(x)``: the model under ``params`` with every batch-statistics
    BatchNorm *frozen* to the statistics it computes on ``reference_x``.

    Finn's network normalises each batch with its own mean and variance, so one
    example's output depends on the rest of the batch. Gradient attributions
    need a function of one example: Integrated Gradients feeds a batch of
    interpolated copies of one image, whose statistics would replace the real
    batch's. Here the per-channel mean and (biased) variance are computed once,
    on the real batch ``reference_x`` (e.g. the task's query set), and every
    later call normalises with those fixed values. Then ``f(reference_x)``
    equals the model's ordinary output on ``reference_x``, and ``f`` treats
    examples independently. BatchNorm layers that already use running
    statistics (``eval()`` mode) are left alone.
    """
    from torch.func import functional_call

    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    _check_params(model, params)
    reference_x = _check_input("reference_x", reference_x, 2)
    if reference_x.shape[0] < 2:
        raise ValueError(
            f"reference_x must hold at least 2 examples (a batch to take "
            f"statistics from), got {reference_x.shape[0]}"
        )
    params = dict(model.named_parameters()) if params is None else dict(params)
    bns = {n: m for n, m in model.named_modules() if _uses_batch_statistics(m)}
    stats: dict[str, tuple[Tensor, Tensor]] = {}

    def recorder(name: str) -> Callable:
        def hook(_m: nn.Module, inputs: tuple) -> None:
            h = inputs[0].detach()
            dims = [0] + list(range(2, h.dim()))
            stats[name] = (h.mean(dims), h.var(dims, unbiased=False))

        return hook

    handles = [
        m.register_forward_pre_hook(recorder(n)) for n, m in bns.items()
    ]
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
            return F.batch_norm(
                h,
                mean.to(h.dtype),
                var.to(h.dtype),
                m.weight,
                m.bias,
                training=False,
                eps=m.eps,
            )

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
    """``f(x)``: a metric learner's class scores for queries ``x``,
    ``-||embed(x) - p_c||^2``.

    ``p_c`` is the mean support embedding of class ``c`` (Snell et al. 2017);
    with one shot per class it is the support image's embedding, i.e. the
    Siamese network's nearest-
    neighbour rule on squared distances (Koch et al. 2015). The support set is
    embedded once, without gradients by default, so attributions of ``f`` are
    with respect to the query only; ``support_grad=True`` keeps the graph to
    ``support_x`` (for :func:`gradient_influence`).
    """
    _check_callable("embed", embed)
    support_x = _check_input("support_x", support_x, 2)
    support_y = _check_labels("support_y", support_y)
    _check_flag("support_grad", support_grad)
    if support_y.shape != support_x.shape[:1]:
        raise ValueError(
            f"support_y must have one label per support example "
            f"({support_x.shape[0]}), got shape {tuple(support_y.shape)}"
        )
    n_way = int(support_y.max()) + 1 if n_way is None else n_way
    _check_positive_int("n_way", n_way)
    if support_y.min() < 0 or support_y.max() >= n_way:
        raise ValueError(f"support_y labels must be in [0, {n_way - 1}]")
    counts = torch.bincount(support_y.long(), minlength=n_way)
    if bool((counts == 0).any()):
        raise ValueError(
            "support_y must give every class at least one support example"
        )
    with torch.set_grad_enabled(support_grad and torch.is_grad_enabled()):
        z = embed(support_x)
    protos = torch.zeros(n_way, z.shape[1], dtype=z.dtype).index_add_(
        0, support_y.long(), z
    )
    protos = protos / counts[:, None].to(z.dtype)

    def forward(x: Tensor) -> Tensor:
        q = embed(x)
        return -(q[:, None, :] - protos[None].to(q.dtype)).pow(2).sum(-1)

    return forward


def pair_similarity(
    embed: Callable[[Tensor], Tensor],
    other: Tensor,
) -> Callable[[Tensor], Tensor]:
    """``s(x) = -d(embed(x), embed(other))``: a Siamese pair's similarity as a
    function of one image.

    ``other`` is the pair's second image ``(1, C, H, W)`` (or one per row of
    ``x``); ``d`` is the Euclidean distance of
    :func:`mlkit.siamese.euclidean_distance`. Attributing ``s`` with respect to
    ``x`` and then swapping the roles gives each image's share of the decision
    "same" or "different". Put an embedding with BatchNorm in ``eval()`` mode
    first.
    """
    from ..siamese import euclidean_distance

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
    """A gradient attribution of ``f(x)[target]``: a map with ``x``'s shape per
    example.

    ``delta`` (Integrated Gradients only) is Captum's completeness error
    ``sum(attribution) - (f(x) - f(baseline))`` per example; ``output`` and
    ``baseline_output`` are ``f(x)[target]`` and ``f(baseline)[target]``.
    """

    attribution: Tensor
    output: Tensor
    baseline_output: Tensor | None = None
    delta: Tensor | None = None


def _target_value(
    forward: Callable[[Tensor], Tensor], x: Tensor, target: int | Tensor | None
) -> Tensor:
    out = forward(x)
    if (
        not isinstance(out, Tensor)
        or out.dim() not in (1, 2)
        or (out.shape[0] != x.shape[0])
        or not out.is_floating_point()
    ):
        raise ValueError(
            f"forward must return floating-point scores "
            f"(examples,) or (examples, outputs) for x of shape "
            f"{tuple(x.shape)}, got "
            f"{getattr(out, 'shape', out)!r}"
        )
    if out.dim() == 1:
        if target is not None:
            raise ValueError(
                "target must be None when the function returns one number per "
                "example"
            )
        return out
    if target is None:
        raise ValueError(
            f"target must name an output column in [0, {out.shape[1] - 1}] "
            f"for a function with {out.shape[1]} outputs"
        )
    t = torch.as_tensor(target).long().reshape(-1)
    if (
        t.numel() not in (1, out.shape[0])
        or t.min() < 0
        or t.max() >= out.shape[1]
    ):
        raise ValueError(
            f"target must be an index (or one per example) in "
            f"[0, {out.shape[1] - 1}], got {target!r}"
        )
    return out.gather(1, t.expand(out.shape[0])[:, None])[:, 0]


def saliency(
    forward: Callable[[Tensor], Tensor],
    x: Tensor,
    *,
    target: int | Tensor | None = None,
    absolute: bool = True,
) -> Attribution:
    """Saliency (Simonyan, Vedaldi & Zisserman 2014) with Captum:
    ``|d f(x)[target] / d x|``.

    ``forward`` maps a batch to scores, e.g. :func:`frozen_statistics` of an
    adapted MAML model, :func:`prototype_scorer` or :func:`pair_similarity`.
    With ``absolute=False`` the signed gradient is returned.
    """
    from captum.attr import Saliency

    _check_callable("forward", forward)
    x = _check_input("x", x, 2)
    _check_target(target)
    _check_flag("absolute", absolute)
    with torch.no_grad():
        out = _target_value(forward, x, target)
    attr = Saliency(forward).attribute(
        x.detach().clone().requires_grad_(), target=target, abs=absolute
    )
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

    $$\\mathrm{IG}_i(x) = (x_i - x'_i) \\int_0^1
    \\frac{\\partial f(x' + t (x - x'))}
    {\\partial x_i} \\, dt,$$

    approximated with ``n_steps`` points (``method`` as Captum's).
    Completeness, ``sum_i IG_i = f(x) - f(x')``, holds up to the quadrature
    error reported in ``delta``. ``forward`` must treat examples independently:
    for a batch-statistics BatchNorm network pass :func:`frozen_statistics`,
    otherwise the interpolation batch sets the statistics. The default baseline
    ``x' = 0`` is a blank page for Omniglot's ink-is-1 images.
    """
    from captum.attr import IntegratedGradients

    _check_callable("forward", forward)
    x = _check_input("x", x, 2)
    _check_target(target)
    _check_baseline(baseline, x)
    _check_positive_int("n_steps", n_steps, 2)
    if method not in (
        "gausslegendre",
        "riemann_trapezoid",
        "riemann_middle",
        "riemann_left",
        "riemann_right",
    ):
        raise ValueError(
            "method must be one of Captum's ('gausslegendre', 'riemann_*'), "
            f"got {method!r}"
        )
    base = torch.as_tensor(baseline, dtype=x.dtype)
    base = (
        base.expand_as(x).clone()
        if base.dim() == 0 or base.shape != x.shape
        else base
    )
    with torch.no_grad():
        out = _target_value(forward, x, target)
        out0 = _target_value(forward, base, target)
    attr, delta = IntegratedGradients(forward).attribute(
        x.detach(),
        baselines=base,
        target=target,
        n_steps=n_steps,
        method=method,
        return_convergence_delta=True,
    )
    return Attribution(
        attr.detach(), out.detach(), out0.detach(), delta.detach()
    )


# -----------------------------------------------------------------------------
# Support-example influence
# -----------------------------------------------------------------------------
