r"""Model-Agnostic Meta-Learning (Finn, Abbeel & Levine 2017), functional and
first-principles.

The objective is

.. math::  \min_\theta \sum_i \mathcal{L}_i\big(\theta
           - \alpha \nabla_\theta \mathcal{L}_i(\theta)\big)

with one inner step; with ``inner_steps = k`` the inner update is applied ``k``
times. The inner loop (:func:`adapt`) takes gradient steps on a task's support
set and returns *fast weights*; the outer loop (:func:`meta_train`)
differentiates the query loss at the fast weights with respect to the initial
weights ``theta`` and updates them with Adam.

* Second order (default): the inner gradients keep their graph
  (``torch.autograd.grad(..., create_graph=True)``), so the meta-gradient holds
  the Hessian term :math:`(I - \alpha \nabla^2 \mathcal{L}_i)`.
* First order (FOMAML): the inner gradients are treated as constants.
* ANIL (Raghu et al. 2020): only the head's parameters are adapted in the inner
  loop.
* Meta-SGD (Li et al. 2017, arXiv:1707.09835): the inner rate is a tensor of
  each parameter's shape,
  :math:`\theta' = \theta - \boldsymbol\alpha \circ \nabla_\theta \mathcal{L}`,
  meta-learned beside the initialisation (:func:`attach_inner_rates`,
  :func:`inner_rates`, :func:`learned_rate_summary`). Wherever ``alpha`` is
  taken, a mapping from parameter names to such tensors may be given instead of
  one number.

Two equivalent layouts run the same mathematics. :func:`adapt` /
:func:`predict` work on one task and any ``nn.Module`` through
``torch.func.functional_call``. :func:`adapt_tasks` / :func:`predict_tasks` run
a whole meta-batch at once for the book's two networks
(:class:`~mlkit.nets.SinusoidMLP` and :class:`~mlkit.nets.ConvNet`): each task
gets its own copy of the weights, stacked along a leading task axis, and the
convolutions become one grouped convolution whose groups are the tasks.
BatchNorm then normalises every (task, channel) over that task's images alone,
exactly as the per-task loop does, and tasks never mix, so one
``autograd.grad`` of the summed loss gives every task's own gradient. (We do
not ``vmap`` through BatchNorm: with torch 2.13 that gives wrong second-order
meta-gradients, cf. functorch issue #534.)

Loss functions follow one contract: they reduce over the example axis only, so
that for one task they return a scalar and for a task batch ``(T, ...)`` a
vector of ``T`` losses. :func:`mse_loss`, :func:`cross_entropy` (mean over the
support set) and :func:`summed_cross_entropy` (Finn's scaling: summed over the
support set and divided by ``k_shot``; Finn's inner rate alpha = 0.4 for 5-way
Omniglot is for this scaling, equal to alpha = 0.4 N on the mean) are provided.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import data
from .data import _check_flag, _check_tensor
from .checkpoints import (
    Autosaver,
    begin_session,
    check_name,
    load_checkpoint,
    load_state,
    manifest,
    run_dir,
    save_checkpoint,
    save_state,
)
from .nets import ConvNet, SinusoidMLP, head_parameter_names
from .stats import summary

__all__ = [
    "mse_loss",
    "cross_entropy",
    "summed_cross_entropy",
    "accuracy",
    "predict",
    "adapt",
    "predict_tasks",
    "adapt_tasks",
    "supports_task_batch",
    "query_loss",
    "meta_gradient",
    "meta_train",
    "evaluate",
    "adaptation_curve",
    "tune_alpha",
    "compact_history",
    "MAMLConfig",
    "CONFIGS",
    "build_model",
    "load_model",
    "train_sinusoid",
    "RECIPES",
    "attach_inner_rates",
    "inner_rates",
    "learned_rate_summary",
]

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# One inner rate for every parameter, or (Meta-SGD) a tensor of each
# parameter's shape.
Alpha = Union[float, Mapping[str, torch.Tensor]]

# ------------------------------------------------------------------ checks


def _check_float_tensor(
    name: str, value: Any, min_dim: int = 0
) -> torch.Tensor:
    _check_tensor(name, value, min_dim)
    if not value.is_floating_point():
        raise ValueError(
            f"{name} must be a floating-point tensor, got {value.dtype}"
        )
    return value


def _check_labels(name: str, value: Any) -> torch.Tensor:
    _check_tensor(name, value, 1)
    if (
        value.is_floating_point()
        or value.is_complex()
        or (value.dtype == torch.bool)
    ):
        raise ValueError(
            f"{name} must be an integer tensor of class "
            f"indices, got {value.dtype}"
        )
    return value


def _check_positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.integer, np.floating))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def _check_callable(name: str, value: Any, optional: bool = False) -> None:
    if not (callable(value) or (optional and value is None)):
        none = " or None" if optional else ""
        raise ValueError(f"{name} must be a callable{none}, got {value!r}")


def _check_module(name: str, value: Any) -> nn.Module:
    if not isinstance(value, nn.Module):
        raise ValueError(
            f"{name} must be a torch.nn.Module, got {type(value).__name__}"
        )
    return value


def _check_inner(
    inner_steps: int,
    alpha: float | Mapping[str, torch.Tensor],
    steps_name: str = "inner_steps",
) -> None:
    if (
        isinstance(inner_steps, bool)
        or not isinstance(inner_steps, (int, np.integer))
        or inner_steps < 0
    ):
        raise ValueError(
            f"{steps_name} must be an integer >= 0, got {inner_steps!r}"
        )
    if not isinstance(alpha, Mapping):
        _check_positive("alpha", alpha)
        return
    # Meta-SGD's rates: any finite real number (a learned rate may turn
    # negative, which reverses that coordinate's step; Li et al. learn
    # direction and size alike).
    if not alpha:
        raise ValueError(
            "alpha must be a positive number or a non-empty mapping from "
            "parameter names to rate tensors, got an empty mapping"
        )
    for n, r in alpha.items():
        if not isinstance(r, torch.Tensor) or not r.is_floating_point():
            raise ValueError(
                f"alpha[{n!r}] must be a floating-point tensor of the "
                f"parameter's shape, got {type(r).__name__}"
            )
        if not bool(torch.isfinite(r.detach()).all()):
            raise ValueError(
                f"alpha[{n!r}] must hold finite rates, got NaN or inf"
            )


def _check_rates(
    alpha: float | Mapping[str, torch.Tensor],
    names: Sequence[str],
    shapes: Mapping[str, torch.Size],
) -> None:
    """Per-parameter rates name every adapted parameter, each of that
    parameter's shape."""
    if not isinstance(alpha, Mapping):
        return
    unknown = [
        n for n in alpha if n not in shapes or n.startswith(RATE_PREFIX)
    ]
    if unknown:
        raise ValueError(
            f"alpha holds names that are not adaptable parameters of the "
            f"model: {unknown}"
        )
    missing = [n for n in names if n not in alpha]
    if missing:
        raise ValueError(
            f"alpha must hold a rate tensor for every adapted parameter, "
            f"missing {missing}"
        )
    for n in names:
        if tuple(alpha[n].shape) != tuple(shapes[n]):
            raise ValueError(
                f"alpha[{n!r}] must have the parameter's shape "
                f"{tuple(shapes[n])}, got {tuple(alpha[n].shape)}"
            )


# ------------------------------------------------------------------ losses

# No label is ignored: F.cross_entropy's default ignore_index (-100) would
# give a wrong label -100 a loss of 0 instead of an error.
_NO_IGNORE = -(2**63)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over a task's examples: ``(..., n, d) -> (...)``.

    ``pred`` and ``target`` must have the same shape (no broadcasting).
    """
    _check_float_tensor("pred", pred, 2)
    _check_float_tensor("target", target)
    if target.shape != pred.shape:
        raise ValueError(
            f"target must have pred's shape {tuple(pred.shape)}, "
            f"got {tuple(target.shape)}"
        )
    if pred.shape[-2] == 0 or pred.shape[-1] == 0:
        raise ValueError(
            f"pred must hold at least one example and one "
            f"output, got shape {tuple(pred.shape)}"
        )
    return ((pred - target) ** 2).mean(dim=(-2, -1))


def _check_logits(logits: torch.Tensor, labels: torch.Tensor) -> None:
    _check_float_tensor("logits", logits, 2)
    _check_labels("labels", labels)
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"labels must have shape {tuple(logits.shape[:-1])} "
            f"(logits' without the class axis), got "
            f"{tuple(labels.shape)}"
        )
    if logits.shape[-2] == 0 or logits.shape[-1] == 0:
        raise ValueError(
            f"logits must hold at least one example and one "
            f"class, got shape {tuple(logits.shape)}"
        )


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over a task's examples:
    ``(..., n, C), (..., n) -> (...)``."""
    _check_logits(logits, labels)
    try:
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels.reshape(-1).long(),
            reduction="none",
            ignore_index=_NO_IGNORE,
        )
    except IndexError:  # CPU: a label outside [0, C - 1]
        raise ValueError(
            f"labels must be in [0, {logits.shape[-1] - 1}], "
            f"got [{int(labels.min())}, {int(labels.max())}]"
        ) from None
    return ce.view(labels.shape).mean(-1)


def summed_cross_entropy(k_shot: int) -> LossFn:
    """Finn et al.'s inner loss: cross-entropy summed over the support set,
    divided by K.

    For N-way K-shot this is N times the mean, so Finn's alpha = 0.4 (5-way) on
    it equals alpha = 2.0 on :func:`cross_entropy`.
    """
    k_shot = data._check_count("k_shot", k_shot)

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, labels) * (labels.shape[-1] / k_shot)

    loss.__name__ = f"summed_cross_entropy_k{k_shot}"
    return loss


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of correct predictions per task:
    ``(..., n, C), (..., n) -> (...)``."""
    _check_logits(logits, labels)
    return (logits.argmax(-1) == labels).float().mean(-1)


def _check_xy(
    x: torch.Tensor,
    y: torch.Tensor,
    n_out: int | None,
    classify: bool,
    what: str,
) -> None:
    _check_tensor(f"{what}_x", x, 1)
    _check_tensor(f"{what}_y", y, 1)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{what}_x and {what}_y must hold the same number of "
            f"{'tasks' if x.dim() > 2 + classify else 'examples'}: "
            f"{tuple(x.shape)} vs {tuple(y.shape)}"
        )
    if classify and n_out is not None and y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_out:
            raise ValueError(
                f"{what}_y labels must be in [0, {n_out - 1}], got [{lo}, "
                f"{hi}]"
            )


def _n_out(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    return getattr(head, "out_features", None)


def _is_classifier(model: nn.Module, y: torch.Tensor) -> bool:
    return isinstance(y, torch.Tensor) and not torch.is_floating_point(y)


# ------------------------------------------------------------------ one task


def _check_params(
    model: nn.Module,
    params: Any,
    n_tasks: int | None = None,
    complete: bool = False,
) -> None:
    """``params`` are tensors named as ``model``'s parameters (or buffers), of
    their shapes (after a leading task axis of ``n_tasks`` when given)."""
    if not isinstance(params, Mapping):
        raise ValueError(
            f"params must be a mapping from parameter names to "
            f"tensors, got {type(params).__name__}"
        )
    own = dict(model.named_parameters())
    known = {**dict(model.named_buffers()), **own}
    unknown = [n for n in params if n not in known]
    if unknown:
        raise ValueError(
            f"params holds names that are not parameters of the "
            f"model: {unknown}; allowed: {list(known)}"
        )
    missing = [n for n in own if n not in params] if complete else []
    if missing:
        raise ValueError(
            f"params must hold every parameter of the model, "
            f"missing {missing}"
        )
    lead = () if n_tasks is None else (n_tasks,)
    for n, v in params.items():
        want = lead + tuple(known[n].shape)
        if not isinstance(v, torch.Tensor) or tuple(v.shape) != want:
            got = tuple(v.shape) if isinstance(v, torch.Tensor) else v
            raise ValueError(
                f"params[{n!r}] must be a tensor of shape "
                f"{want}, got {got!r}"
            )


def _check_input(
    model: nn.Module,
    params: Mapping[str, torch.Tensor],
    x: Any,
    name: str,
    tasks: bool = False,
) -> None:
    """``x`` fits the book's networks (other modules check their own input):
    ``(n, 1)`` for a SinusoidMLP, ``(n, C, H, W)`` for a ConvNet, with a
    leading task axis when ``tasks``; the weights' dtype."""
    _check_tensor(name, x)
    if isinstance(model, SinusoidMLP):
        width = (model.body[0] if len(model.body) else model.head).in_features
        ok = (x.dim() == 3 if tasks else x.dim() >= 2) and (
            x.shape[-1] == width
        )
        shape = f"{'(tasks, n' if tasks else '(..., n'}, {width})"
    elif isinstance(model, ConvNet):
        channels = model.body[0][0].in_channels
        # n >= 1: BatchNorm takes its statistics from the batch
        ok = (
            x.dim() == 4 + tasks
            and x.shape[-3] == channels
            and min(x.shape[-4:]) >= 1
        )
        shape = f"{'(tasks, n' if tasks else '(n'}, {channels}, H, W), n >= 1,"
    else:
        return
    if not ok:
        raise ValueError(
            f"{name} must be {shape} for "
            f"{type(model).__name__}, got {tuple(x.shape)}"
        )
    ref = next(iter(params.values()), None)
    ref = next(model.parameters()) if ref is None else ref
    if x.dtype != ref.dtype:
        raise ValueError(
            f"{name} must have the weights' dtype {ref.dtype}, "
            f"got {x.dtype}"
        )


def predict(
    model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """The model's output on ``x`` with weights ``params``
    (``torch.func.functional_call``)."""
    _check_module("model", model)
    _check_params(model, params)
    _check_input(model, params, x, "x")
    return functional_call(model, dict(params), (x,))


def _initial(
    model: nn.Module, params: Mapping[str, torch.Tensor] | None
) -> Params:
    return dict(model.named_parameters()) if params is None else dict(params)


def _names(
    model: nn.Module, params: Params, adapt_names: Sequence[str] | None
) -> list[str]:
    if adapt_names is not None and (
        isinstance(adapt_names, (str, bytes))
        or not isinstance(adapt_names, Iterable)
    ):
        raise ValueError(
            f"adapt_names must be None or a list of parameter "
            f"names, got {adapt_names!r}"
        )
    # Meta-SGD's learned rates ride along with the weights but are never
    # adapted.
    names = (
        [n for n in params if not n.startswith(RATE_PREFIX)]
        if adapt_names is None
        else list(adapt_names)
    )
    unknown = [
        n for n in names if n not in params or n.startswith(RATE_PREFIX)
    ]
    if unknown:
        raise ValueError(
            f"adapt_names holds names that are not parameters: {unknown}"
        )
    if not names:
        raise ValueError(
            "adapt_names must name at least one parameter, got none"
        )
    return names


def _check_adapt_args(
    model: nn.Module,
    loss_fn: Any,
    inner_steps: Any,
    alpha: Any,
    params: Any,
    first_order: Any,
    complete: bool = False,
) -> None:
    _check_module("model", model)
    _check_callable("loss_fn", loss_fn)
    _check_inner(inner_steps, alpha)
    _check_flag("first_order", first_order)
    if params is not None:
        _check_params(model, params, complete=complete)


def _apply(
    params: Params,
    names: list[str],
    targets: list[torch.Tensor],
    loss: torch.Tensor,
    alpha: float | Mapping[str, torch.Tensor],
    first_order: bool,
) -> Params:
    grads = torch.autograd.grad(loss, targets, create_graph=not first_order)
    new = dict(params)
    for n, t, g in zip(names, targets, grads):
        # Meta-SGD: an elementwise product; a rate of the parameter's shape
        # broadcasts over the leading task axis of the task-batch layout.
        rate = alpha[n] if isinstance(alpha, Mapping) else alpha
        new[n] = t - rate * (g.detach() if first_order else g)
    return new


def _adapt(
    forward: Callable[[Params, torch.Tensor], torch.Tensor],
    params: Params,
    names: list[str],
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    loss_fn: LossFn,
    inner_steps: int,
    alpha: float | Mapping[str, torch.Tensor],
    first_order: bool,
) -> Params:
    if inner_steps and not all(params[n].requires_grad for n in names):
        params = {
            **params,
            **{
                n: params[n].detach().requires_grad_()
                for n in names
                if not params[n].requires_grad
            },
        }
    with torch.enable_grad():
        for _ in range(inner_steps):
            loss = loss_fn(forward(params, support_x), support_y)
            if not (isinstance(loss, torch.Tensor) and loss.requires_grad):
                raise ValueError(
                    "loss_fn must return a differentiable loss "
                    "tensor (e.g. mse_loss, cross_entropy), got "
                    f"{type(loss).__name__}"
                )
            loss = loss.sum()
            targets = [params[n] for n in names]
            params = _apply(params, names, targets, loss, alpha, first_order)
    return params


def adapt(
    model: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    *,
    loss_fn: LossFn,
    inner_steps: int = 1,
    alpha: float | Mapping[str, torch.Tensor] = 0.01,
    params: Mapping[str, torch.Tensor] | None = None,
    first_order: bool = False,
    adapt_names: Sequence[str] | None = None,
) -> Params:
    r"""The inner loop for one task: ``inner_steps`` steps of :math:`\theta' =
    \theta - \alpha \nabla_\theta \mathcal{L}(f_\theta(x_s), y_s)` from
    ``params`` (default: the model's own).

    Returns the fast weights, a dict of every parameter. With
    ``first_order=False`` they stay differentiable with respect to ``params``
    including the second-order term; with ``first_order=True`` the inner
    gradients are constants (FOMAML). ``adapt_names`` restricts the update to
    some parameters (ANIL: the head's). ``inner_steps=0`` returns ``params``.
    ``alpha`` is one rate, or (Meta-SGD) a mapping from each adapted
    parameter's name to a tensor of its shape, the step then being
    :math:`\theta - \boldsymbol\alpha \circ \nabla_\theta \mathcal{L}`
    elementwise (:func:`inner_rates` gives a model's own).
    """
    _check_adapt_args(model, loss_fn, inner_steps, alpha, params, first_order)
    _check_xy(
        support_x,
        support_y,
        _n_out(model),
        _is_classifier(model, support_y),
        "support",
    )
    p = _initial(model, params)
    _check_input(model, p, support_x, "support_x")
    names = _names(model, p, adapt_names)
    _check_rates(alpha, names, {n: v.shape for n, v in p.items()})
    return _adapt(
        lambda q, x: functional_call(model, q, (x,)),
        p,
        names,
        support_x,
        support_y,
        loss_fn,
        inner_steps,
        alpha,
        first_order,
    )


# ---------------------------------------------------------- many tasks at once


def supports_task_batch(model: nn.Module) -> bool:
    """Whether :func:`predict_tasks` knows this network's layout (SinusoidMLP,
    ConvNet)."""
    return isinstance(model, (SinusoidMLP, ConvNet))


def _expand(params: Mapping[str, torch.Tensor], n_tasks: int) -> Params:
    return {
        n: p.unsqueeze(0).expand(n_tasks, *p.shape) for n, p in params.items()
    }


def _linear_tasks(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    # x (T, n, in), w (T, out, in), b (T, out)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _mlp_tasks(
    model: SinusoidMLP, params: Params, x: torch.Tensor
) -> torch.Tensor:
    h = x
    for i, layer in enumerate(model.body):
        if isinstance(layer, nn.Linear):
            h = _linear_tasks(
                h, params[f"body.{i}.weight"], params[f"body.{i}.bias"]
            )
        else:
            h = layer(h)
    return _linear_tasks(h, params["head.weight"], params["head.bias"])


def _convnet_features_tasks(
    model: ConvNet, params: Params, x: torch.Tensor
) -> torch.Tensor:
    t, n = x.shape[:2]
    # (T, n, C, H, W) -> (n, T*C, H, W): the tasks become channel groups.
    h = x.transpose(0, 1).reshape(n, t * x.shape[2], *x.shape[3:])
    for i, block in enumerate(model.body):
        conv, bn = block[0], block[1]
        w = params[f"body.{i}.0.weight"]
        h = F.conv2d(
            h,
            w.reshape(-1, *w.shape[2:]),
            params[f"body.{i}.0.bias"].reshape(-1),
            stride=conv.stride,
            padding=conv.padding,
            groups=t,
        )
        # Batch statistics per (task, channel) over that task's n images only.
        h = F.batch_norm(
            h,
            None,
            None,
            params[f"body.{i}.1.weight"].reshape(-1),
            params[f"body.{i}.1.bias"].reshape(-1),
            training=True,
            eps=bn.eps,
        )
        h = F.relu(h)
    feats = h.mean(dim=(-2, -1))  # (n, T*hidden)
    return feats.reshape(n, t, -1).transpose(0, 1)  # (T, n, hidden)


def predict_tasks(
    model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Outputs for a batch of tasks at once: ``params`` carry a leading task
    axis ``T`` (as :func:`adapt_tasks` returns them) and ``x`` is
    ``(T, n, ...)``; gives ``(T, n, out)``.

    Equal to ``predict(model, params_t, x[t])`` for every task ``t``, computed
    in one pass.
    """
    if not supports_task_batch(model):
        raise ValueError(
            f"model must be a SinusoidMLP or a ConvNet for "
            f"predict_tasks, got {type(model).__name__}; loop "
            f"over tasks with adapt() and predict() instead"
        )
    _check_tensor("x", x, 1)
    if x.shape[0] == 0:
        raise ValueError(
            f"x must hold at least one task, got shape {tuple(x.shape)}"
        )
    _check_params(model, params, x.shape[0], complete=True)
    _check_input(model, params, x, "x", tasks=True)
    return _predict_tasks(model, params, x)


def _predict_tasks(
    model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    params = dict(params)
    if isinstance(model, SinusoidMLP):
        return _mlp_tasks(model, params, x)
    if isinstance(model, ConvNet):
        feats = _convnet_features_tasks(model, params, x)
        return _linear_tasks(feats, params["head.weight"], params["head.bias"])
    raise ValueError(
        f"model must be a SinusoidMLP or a ConvNet, got "
        f"{type(model).__name__}"
    )


def adapt_tasks(
    model: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    *,
    loss_fn: LossFn,
    inner_steps: int = 1,
    alpha: float | Mapping[str, torch.Tensor] = 0.01,
    params: Mapping[str, torch.Tensor] | None = None,
    first_order: bool = False,
    adapt_names: Sequence[str] | None = None,
) -> Params:
    """:func:`adapt` for a whole task batch at once (``support_x`` is
    ``(T, n, ...)``).

    Returns fast weights with a leading task axis. Because no task's loss
    depends on another task's copy of the weights, the gradient of the summed
    loss is every task's own gradient.
    """
    _check_adapt_args(
        model, loss_fn, inner_steps, alpha, params, first_order, complete=True
    )
    _check_tensor("support_x", support_x)
    if support_x.dim() < 3 or support_x.shape[0] == 0:
        raise ValueError(
            f"support_x must be (tasks, examples, ...) with "
            f"tasks >= 1, got {tuple(support_x.shape)}"
        )
    if not supports_task_batch(model):
        raise ValueError(
            f"model must be a SinusoidMLP or a ConvNet for "
            f"adapt_tasks, got {type(model).__name__}; loop "
            f"over tasks with adapt() instead"
        )
    _check_xy(
        support_x,
        support_y,
        _n_out(model),
        _is_classifier(model, support_y),
        "support",
    )
    base = _initial(model, params)
    _check_input(model, base, support_x, "support_x", tasks=True)
    names = _names(model, base, adapt_names)
    _check_rates(alpha, names, {n: v.shape for n, v in base.items()})
    p = _expand(base, support_x.shape[0])
    return _adapt(
        lambda q, x: _predict_tasks(model, q, x),
        p,
        names,
        support_x,
        support_y,
        loss_fn,
        inner_steps,
        alpha,
        first_order,
    )


# ---------------------------------------------------- Meta-SGD's learned rates

# The rates live in a submodule of the network they step, so that the state
# dict, the optimiser, checkpoints and resumed runs carry them with the
# weights. A parameter ``body.0.0.weight`` has its rate at
# ``inner_rates.body-0-0-weight`` ('.' cannot be part of a parameter's own
# name; '-' cannot be part of a module attribute).
RATE_MODULE = "inner_rates"
RATE_PREFIX = RATE_MODULE + "."


class _InnerRates(nn.Module):
    """One learnable rate tensor per parameter of the network it belongs to."""

    def __init__(
        self,
        shapes: Mapping[str, torch.Size],
        alpha: float,
        dtype: torch.dtype,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        for n, shape in shapes.items():
            self.register_parameter(
                n.replace(".", "-"),
                nn.Parameter(
                    torch.full(
                        tuple(shape), float(alpha), dtype=dtype, device=device
                    )
                ),
            )

    def by_parameter(self) -> Params:
        return {n.replace("-", "."): r for n, r in self.named_parameters()}


def attach_inner_rates(model: nn.Module, alpha: float) -> nn.Module:
    r"""Give ``model`` Meta-SGD's per-parameter inner rates, each set to
    ``alpha``; returns it.

    Li et al. 2017 ("Meta-SGD: Learning to learn quickly for few-shot
    learning", arXiv:1707.09835) replace MAML's one inner rate by a tensor
    :math:`\boldsymbol\alpha` of each parameter's shape, meta-learned with the
    initialisation: :math:`\theta' = \theta - \boldsymbol\alpha \circ
    \nabla_\theta \mathcal{L}_{\text{support}}(\theta)`. With every rate equal
    to MAML's ``alpha`` the step is MAML's. The rates are parameters of a
    submodule ``inner_rates`` (so ``model.parameters()``, ``state_dict`` and
    checkpoints include them); the inner loop never adapts them.
    :func:`inner_rates` returns them by parameter name.
    """
    _check_module("model", model)
    alpha = _check_positive("alpha", alpha)
    if hasattr(model, RATE_MODULE):
        raise ValueError(
            f"model already has inner rates ({RATE_MODULE}); attach them once"
        )
    shapes = {n: p.shape for n, p in model.named_parameters()}
    if not shapes:
        raise ValueError("model must have parameters, got none")
    ref = next(model.parameters())
    model.add_module(
        RATE_MODULE, _InnerRates(shapes, alpha, ref.dtype, ref.device)
    )
    return model


def inner_rates(model: nn.Module) -> Params:
    """A Meta-SGD model's learned inner rates,
    ``{parameter name: rate tensor}``.

    The tensors are the model's own parameters (gradients reach them); pass the
    dict as ``alpha`` to :func:`adapt`, :func:`query_loss`, :func:`meta_train`
    or :func:`evaluate`.
    """
    _check_module("model", model)
    rates = getattr(model, RATE_MODULE, None)
    if not isinstance(rates, _InnerRates):
        raise ValueError(
            f"model has no learned inner rates (a Meta-SGD network, made by "
            f"attach_inner_rates or load_model('metasgd-...')), got a plain "
            f"{type(model).__name__}"
        )
    return rates.by_parameter()


def _layer_and_kind(model: nn.Module, name: str) -> tuple[str, str]:
    """The book's layer name (``body.0`` ... ``body.3``, ``head``) and the
    parameter's kind."""
    parts = name.split(".")
    layer = (
        ".".join(parts[:2])
        if parts[0] == "body" and len(parts) > 2
        else parts[0]
    )
    owner = (
        model.get_submodule(".".join(parts[:-1])) if len(parts) > 1 else model
    )
    kinds = {
        nn.Conv2d: "convolution",
        nn.BatchNorm2d: "BatchNorm",
        nn.Linear: "linear",
    }
    kind = next(
        (k for t, k in kinds.items() if isinstance(owner, t)),
        type(owner).__name__,
    )
    return layer, f"{kind} {parts[-1]}"


def learned_rate_summary(
    model: nn.Module, *, alpha0: float | None = None
) -> list[dict[str, Any]]:
    r"""Meta-SGD's learned rates summarised per parameter tensor, in the
    network's order.

    One row per tensor: ``parameter`` (e.g. ``body.0.0.weight``), ``layer``
    (the book's names: ``body.0`` ... ``body.3``, ``head``), ``kind`` (e.g.
    ``convolution weight``), ``size``, ``mean_abs``
    (:math:`\frac1n \sum_j |\alpha_j|`, the answer to "how fast does the
    meta-learner move this tensor"), ``median_abs``, ``q25_abs`` and
    ``q75_abs`` (the spread over the tensor's entries), ``mean`` and
    ``negative_share`` (the share of entries whose step goes up the support
    gradient). With ``alpha0`` (the rate the run started from) also ``ratio``,
    ``mean_abs / alpha0``.

    What can go wrong: a rate only moves where a gradient reaches it. In Finn's
    ConvNet each convolution's bias is cancelled by the BatchNorm after it, so
    its rates keep their starting value, a built-in control rather than a
    choice of the meta-learner.
    """
    rates = inner_rates(model)
    if alpha0 is not None:
        alpha0 = _check_positive("alpha0", alpha0)
    rows = []
    for name, r in rates.items():
        v = r.detach().double().reshape(-1).cpu()
        a = v.abs()
        q25, med, q75 = (
            float(x)
            for x in torch.quantile(
                a, torch.tensor([0.25, 0.5, 0.75], dtype=a.dtype)
            )
        )
        layer, kind = _layer_and_kind(model, name)
        row = {
            "parameter": name,
            "layer": layer,
            "kind": kind,
            "size": int(v.numel()),
            "mean_abs": float(a.mean()),
            "median_abs": med,
            "q25_abs": q25,
            "q75_abs": q75,
            "mean": float(v.mean()),
            "negative_share": float((v < 0).double().mean()),
        }
        if alpha0 is not None:
            row["ratio"] = row["mean_abs"] / alpha0
        rows.append(row)
    return rows


# ---------------------------------------------------------- the meta-objective


def _batch_fields(
    batch: Any,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return batch.support_x, batch.support_y, batch.query_x, batch.query_y


_FIELDS = ("support_x", "support_y", "query_x", "query_y")


def _check_batch(batch: Any) -> tuple[torch.Tensor, ...]:
    """The fields of a task batch, each ``(T, n, ...)`` with ``T >= 1``."""
    for f in _FIELDS:
        if not isinstance(getattr(batch, f, None), torch.Tensor):
            raise ValueError(
                f"batch must have the tensor fields {_FIELDS} "
                f"(a task batch with a leading task axis), got "
                f"{type(batch).__name__} without {f}"
            )
    sx, sy, qx, qy = _batch_fields(batch)
    for f, v in zip(_FIELDS, (sx, sy, qx, qy)):
        if v.dim() < 2 or v.shape[0] != sx.shape[0] or v.shape[0] < 1:
            raise ValueError(
                f"batch.{f} must be (tasks, examples, ...) "
                f"with tasks >= 1 as support_x's "
                f"{tuple(sx.shape[:1])}, got {tuple(v.shape)}"
            )
    for x, y, what in ((sx, sy, "support"), (qx, qy, "query")):
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                f"batch.{what}_y must hold one target per "
                f"example of batch.{what}_x ({x.shape[1]}), "
                f"got shape {tuple(y.shape)}"
            )
    return sx, sy, qx, qy


def _check_losses(
    losses: Any, shape: tuple[int, ...], name: str = "loss_fn"
) -> torch.Tensor:
    if not isinstance(losses, torch.Tensor) or tuple(losses.shape) != shape:
        got = (
            tuple(losses.shape) if isinstance(losses, torch.Tensor) else losses
        )
        raise ValueError(
            f"{name} must return one number per task, shape "
            f"{shape}, got {got!r}"
        )
    return losses


def query_loss(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: LossFn,
    inner_steps: int,
    alpha: Alpha,
    first_order: bool = False,
    adapt_names: Sequence[str] | None = None,
    inner_loss_fn: LossFn | None = None,
    batched: bool | None = None,
    params: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The meta-objective on a task batch: per-task query losses after
    adaptation, ``(T,)``, and the query predictions ``(T, n_query, out)``.

    ``inner_loss_fn`` (default ``loss_fn``) is the support loss of the inner
    loop. ``batched`` picks the layout (default: the task-batch layout where
    the network supports it). ``params`` are the initial weights (default: the
    model's own).
    """
    _check_module("model", model)
    sx, sy, qx, qy = _check_batch(batch)
    _check_callable("loss_fn", loss_fn)
    _check_callable("inner_loss_fn", inner_loss_fn, optional=True)
    if batched is not None:
        _check_flag("batched", batched)
    inner_loss_fn = loss_fn if inner_loss_fn is None else inner_loss_fn
    if batched is None:
        # Measured on a 2-core CPU: the grouped-convolution layout wins for the
        # MLP, the per-task loop for the ConvNet (benchmarks/RESULTS.md); on a
        # GPU the batch wins.
        batched = supports_task_batch(model) and (
            isinstance(model, SinusoidMLP) or next(model.parameters()).is_cuda
        )
    if batched:
        fast = adapt_tasks(
            model,
            sx,
            sy,
            loss_fn=inner_loss_fn,
            inner_steps=inner_steps,
            alpha=alpha,
            first_order=first_order,
            adapt_names=adapt_names,
            params=params,
        )
        out = predict_tasks(model, fast, qx)
        return _check_losses(loss_fn(out, qy), (sx.shape[0],)), out
    losses, outs = [], []
    for t in range(sx.shape[0]):
        fast = adapt(
            model,
            sx[t],
            sy[t],
            loss_fn=inner_loss_fn,
            inner_steps=inner_steps,
            alpha=alpha,
            first_order=first_order,
            adapt_names=adapt_names,
            params=params,
        )
        out = predict(model, fast, qx[t])
        losses.append(_check_losses(loss_fn(out, qy[t]), ()))
        outs.append(out)
    return torch.stack(losses), torch.stack(outs)


def meta_gradient(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: LossFn,
    inner_steps: int = 1,
    alpha: Alpha = 0.01,
    first_order: bool = False,
    adapt_names: Sequence[str] | None = None,
    inner_loss_fn: LossFn | None = None,
    batched: bool | None = None,
    workers: int = 1,
) -> Params:
    r"""The meta-gradient
    :math:`\nabla_\theta \frac1T \sum_i \mathcal{L}_i(\theta'_i)` as a dict of
    tensors, without touching ``.grad``.

    With ``workers > 1`` the tasks are split among that many threads, each
    running one torch thread on its share (:func:`concurrent_meta_gradient`);
    otherwise one pass over the batch.
    """
    return concurrent_meta_gradient(
        model,
        batch,
        loss_fn=loss_fn,
        inner_steps=inner_steps,
        alpha=alpha,
        first_order=first_order,
        adapt_names=adapt_names,
        inner_loss_fn=inner_loss_fn,
        batched=batched,
        workers=workers,
    )[0]


def concurrent_meta_gradient(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: LossFn,
    inner_steps: int = 1,
    alpha: Alpha = 0.01,
    first_order: bool = False,
    adapt_names: Sequence[str] | None = None,
    inner_loss_fn: LossFn | None = None,
    batched: bool | None = None,
    workers: int = 2,
) -> tuple[Params, torch.Tensor, torch.Tensor]:
    r"""The meta-gradient of :func:`meta_gradient`, the per-task query losses
    ``(T,)`` and the query predictions, with the tasks shared among ``workers``
    threads.

    Tasks are independent until the outer average, so thread ``w`` takes tasks
    ``w, w + workers, ...``, differentiates its share of
    :math:`\frac1T \sum_i \mathcal{L}_i` itself (inner loops, query losses and
    the backward pass) and the shares are added. Each thread runs its
    operations on one torch thread: on a small CPU the convolutions of one task
    are too small to keep two cores busy, two tasks at once are not. Equal to
    the one-pass gradient up to the order of floating-point additions.
    """
    if (
        isinstance(workers, bool)
        or not isinstance(workers, int)
        or workers < 1
    ):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    _check_module("model", model)
    sx, sy, qx, qy = _check_batch(batch)
    n_tasks = sx.shape[0]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    if not names:
        raise ValueError(
            "model must have parameters that require grad, got none"
        )
    theta = dict(model.named_parameters())
    wanted = [theta[n] for n in names]

    def share(
        net: nn.Module, idx: list[int]
    ) -> tuple[list[torch.Tensor | None], torch.Tensor, torch.Tensor]:
        part = SimpleNamespace(
            support_x=sx[idx],
            support_y=sy[idx],
            query_x=qx[idx],
            query_y=qy[idx],
        )
        losses, out = query_loss(
            net,
            part,
            loss_fn=loss_fn,
            inner_steps=inner_steps,
            alpha=alpha,
            first_order=first_order,
            adapt_names=adapt_names,
            inner_loss_fn=inner_loss_fn,
            batched=batched,
            params=theta,
        )
        grads = torch.autograd.grad(
            losses.sum() / n_tasks, wanted, allow_unused=True
        )
        return list(grads), losses.detach(), out.detach()

    workers = min(workers, n_tasks)
    if workers == 1:
        results = [share(model, list(range(n_tasks)))]
        order = list(range(n_tasks))
    else:
        # torch.func.functional_call swaps a module's tensors in place while it
        # runs, so each thread gets its own copy of the module (the weights
        # used are theta's, not the copy's).
        nets = [copy.deepcopy(model) for _ in range(workers)]
        chunks = [list(range(w, n_tasks, workers)) for w in range(workers)]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(share, nets, chunks))
        finally:
            torch.set_num_threads(threads)
        order = [t for c in chunks for t in c]
    grads: Params = {}
    for i, n in enumerate(names):
        parts = [r[0][i] for r in results if r[0][i] is not None]
        grads[n] = (
            torch.stack(parts).sum(0) if parts else torch.zeros_like(theta[n])
        )
    inverse = torch.argsort(torch.tensor(order))
    losses = torch.cat([r[1] for r in results])[inverse]
    outs = torch.cat([r[2] for r in results])[inverse]
    return grads, losses, outs


# ----------------------------------------------------- training and evaluation


@dataclass
class MAMLConfig:
    """Everything that defines a MAML run; stored in the checkpoint's manifest
    entry."""

    task: str  # "sinusoid" or "omniglot"
    n_way: int = 5
    k_shot: int = 1
    q_queries: int = 15
    split: str = "finn-train"
    test_split: str = "finn-test"
    inner_steps: int = 1
    test_inner_steps: int = 3
    alpha: float = 0.4
    meta_lr: float = 1e-3
    meta_batch: int = 32
    iterations: int = 60000
    # "second", "first", "anil" or "metasgd" (second, learned rates)
    order: str = "second"
    # "summed" (Finn's) or "mean" cross-entropy; "mse" for sinusoids
    inner_loss: str = "summed"
    hidden: tuple[int, ...] = (40, 40)
    test_queries: int = 15
    # see cosine_meta_lr; None keeps meta_lr constant (Finn's)
    anneal_from: int | None = None
    # A checkpoint whose weights start the run (Meta-SGD from MAML's); None: a
    # fresh network.
    init_from: str | None = None
    # Each training character under 4 quarter turns as 4 classes (Finn et al.'s
    # augmentation); None: the training split's default (finn-train has them,
    # Lake's background alphabets do not). Test pools keep their split's
    # default.
    rotations: bool | None = None

    def __post_init__(self) -> None:
        orders = ("second", "first", "anil", "metasgd")
        if self.order not in orders:
            raise ValueError(
                f"order must be one of {list(orders)}, got {self.order!r}"
            )
        if self.init_from is not None:
            try:
                check_name(self.init_from)
            except ValueError:
                raise ValueError(
                    f"init_from must be None or a checkpoint name, got "
                    f"{self.init_from!r}"
                ) from None
        if self.task not in ("sinusoid", "omniglot"):
            raise ValueError(
                f"task must be 'sinusoid' or 'omniglot', got {self.task!r}"
            )
        if self.rotations not in (None, True, False):
            raise ValueError(
                f"rotations must be None, True or False, got "
                f"{self.rotations!r}"
            )
        _check_inner(self.inner_steps, self.alpha)
        _check_inner(self.test_inner_steps, self.alpha, "test_inner_steps")
        for name in (
            "n_way",
            "k_shot",
            "q_queries",
            "meta_batch",
            "test_queries",
        ):
            data._check_count(name, getattr(self, name))
        data._check_count("iterations", self.iterations, 0)
        _check_positive("meta_lr", self.meta_lr)
        losses = ("mse", "summed", "mean")
        if self.task == "omniglot":
            losses = ("summed", "mean")
            for name in ("split", "test_split"):
                if getattr(self, name) not in data.SPLITS:
                    raise ValueError(
                        f"{name} must be one of {list(data.SPLITS)}"
                        f", got {getattr(self, name)!r}"
                    )
        if self.inner_loss not in losses:
            raise ValueError(
                f"inner_loss must be one of {list(losses)} for "
                f"task {self.task!r}, got {self.inner_loss!r}"
            )
        _check_anneal(self.anneal_from, self.iterations)
        if isinstance(self.hidden, (str, bytes)) or not isinstance(
            self.hidden, Iterable
        ):
            raise ValueError(
                f"hidden must be a tuple of layer widths, got "
                f"{self.hidden!r}"
            )
        for width in self.hidden:
            data._check_count("hidden", width)
        self.hidden = tuple(self.hidden)


def build_model(config: MAMLConfig) -> nn.Module:
    """The network a config describes (SinusoidMLP or Finn's ConvNet)."""
    if not isinstance(config, MAMLConfig):
        raise ValueError(
            f"config must be a MAMLConfig, got {type(config).__name__}"
        )
    model = (
        SinusoidMLP(config.hidden)
        if config.task == "sinusoid"
        else ConvNet(config.n_way)
    )
    if config.order == "metasgd":
        attach_inner_rates(model, config.alpha)
    return model


def _losses(
    config: MAMLConfig, k_shot: int | None = None
) -> tuple[LossFn, LossFn]:
    """(inner loss, query loss) for a config."""
    if config.task == "sinusoid":
        return mse_loss, mse_loss
    inner = (
        summed_cross_entropy(k_shot or config.k_shot)
        if config.inner_loss == "summed"
        else cross_entropy
    )
    return inner, cross_entropy


def _adapt_names(model: nn.Module, config: MAMLConfig) -> list[str] | None:
    return head_parameter_names(model) if config.order == "anil" else None


def _inner_alpha(model: nn.Module, config: MAMLConfig) -> Alpha:
    """The inner rate a recipe steps with: Meta-SGD's learned tensors, else
    config.alpha."""
    return inner_rates(model) if config.order == "metasgd" else config.alpha


def _check_anneal(anneal_from: int | None, iterations: int) -> None:
    if anneal_from is None:
        return
    if (
        isinstance(anneal_from, bool)
        or not isinstance(anneal_from, int)
        or not 0 <= anneal_from <= iterations
    ):
        raise ValueError(
            "anneal_from must be None or an integer in [0, "
            f"iterations={iterations}], got {anneal_from!r}"
        )


def cosine_meta_lr(
    iteration: int, meta_lr: float, anneal_from: int | None, iterations: int
) -> float:
    """The outer learning rate for the step that starts at ``iteration``.

    Constant ``meta_lr`` before ``anneal_from`` (and always when it is
    ``None``, as in Finn et al. 2017); from there a half cosine down to 0 at
    ``iterations``, ``meta_lr * (1 + cos(pi * (iteration - anneal_from) /
    (iterations - anneal_from))) / 2``: the meta-optimiser annealing of
    Antoniou, Edwards & Storkey 2019 ("How to train your MAML"), applied to the
    last stretch of a run. A function of the iteration only, so a resumed run
    follows the same schedule as an uninterrupted one.
    """
    _check_anneal(anneal_from, iterations)
    if anneal_from is None or iteration < anneal_from:
        return meta_lr
    if iteration >= iterations:
        return 0.0
    frac = (iteration - anneal_from) / (iterations - anneal_from)
    return meta_lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def meta_train(
    model: nn.Module,
    sample: Callable[[np.random.Generator], Any],
    *,
    loss_fn: LossFn,
    iterations: int,
    inner_steps: int = 1,
    alpha: Alpha = 0.01,
    meta_lr: float = 1e-3,
    first_order: bool = False,
    adapt_names: Sequence[str] | None = None,
    inner_loss_fn: LossFn | None = None,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    rng: np.random.Generator | None = None,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    save_every_s: float = 120.0,
    log_every: int = 10,
    progress: bool = True,
    batched: bool | None = None,
    time_limit_s: float | None = None,
    workers: int = 1,
    anneal_from: int | None = None,
) -> list[dict[str, float]]:
    """The outer loop: Adam on the mean query loss after adaptation, for
    ``iterations`` steps.

    ``sample(rng)`` returns a task batch (fields
    ``support_x, support_y, query_x, query_y`` with a leading task axis).
    Returns the history, one dict per ``log_every`` iterations: ``iteration``,
    ``meta_loss`` and, when ``metric`` is given (e.g. :func:`accuracy`), the
    query metric after adaptation. ``state`` (from an earlier ``save``) resumes
    a run: the model, optimiser, random stream and history continue exactly
    where they stopped. ``save(state)`` is called every ``save_every_s``
    seconds and at the end; the state's ``sessions`` list says which machine
    trained which iterations, in how many seconds. ``batched`` picks the layout
    as in :func:`query_loss`. Each task batch is moved to the model's device.
    With ``time_limit_s`` the loop stops after that many seconds of this call,
    saves the iteration it reached, and returns: a later call with the saved
    state goes on from there. ``workers > 1`` shares each batch's tasks among
    threads (:func:`concurrent_meta_gradient`). ``anneal_from`` cosine-anneals
    the outer rate to 0 over the last iterations (:func:`cosine_meta_lr`).
    """
    from tqdm.auto import tqdm

    _check_module("model", model)
    _check_callable("sample", sample)
    _check_callable("loss_fn", loss_fn)
    _check_inner(inner_steps, alpha)
    data._check_count("iterations", iterations, 0)
    _check_positive("meta_lr", meta_lr)
    _check_flag("first_order", first_order)
    _check_callable("inner_loss_fn", inner_loss_fn, optional=True)
    _check_callable("metric", metric, optional=True)
    _check_callable("save", save, optional=True)
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be None or a numpy Generator, got {rng!r}")
    if (
        isinstance(save_every_s, bool)
        or not isinstance(save_every_s, (int, float, np.integer, np.floating))
        or not (save_every_s > 0)
    ):
        raise ValueError(
            f"save_every_s must be a positive number of seconds "
            f"(inf: only at the end), got {save_every_s!r}"
        )
    data._check_count("log_every", log_every)
    _check_flag("progress", progress)
    if batched is not None:
        _check_flag("batched", batched)
    _check_anneal(anneal_from, iterations)
    if time_limit_s is not None:
        _check_positive("time_limit_s", time_limit_s)
    if (
        isinstance(workers, bool)
        or not isinstance(workers, int)
        or workers < 1
    ):
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    keys = (
        "model",
        "optimizer",
        "rng",
        "torch_rng",
        "history",
        "iteration",
        "elapsed_s",
    )
    if state is not None and not (
        isinstance(state, Mapping) and all(k in state for k in keys)
    ):
        raise ValueError(
            f"state must be None or a saved state with the keys "
            f"{keys}, got {type(state).__name__}"
        )
    if next(model.parameters(), None) is None:
        raise ValueError("model must have parameters, got none")
    device = next(model.parameters()).device
    rng = np.random.default_rng(0) if rng is None else rng
    opt = torch.optim.Adam(model.parameters(), lr=meta_lr)
    history: list[dict[str, float]] = []
    sessions: list[dict[str, Any]] = []
    start, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        history, start, elapsed = (
            list(state["history"]),
            state["iteration"],
            state["elapsed_s"],
        )
        sessions = [dict(r) for r in state.get("sessions", [])]
    session_wall = begin_session(sessions, start, elapsed)

    def snapshot(it: int) -> dict[str, Any]:
        now = time.monotonic() - t0
        sessions[-1].update(
            to_iteration=it, wall_time_s=round(session_wall + now, 1)
        )
        return {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": history,
            "iteration": it,
            "elapsed_s": elapsed + now,
            "sessions": sessions,
        }

    saver = Autosaver(save_every_s)
    t0 = time.monotonic()
    it = start
    bar = tqdm(
        range(start, iterations),
        initial=start,
        total=iterations,
        disable=not progress,
        desc="meta-train",
        mininterval=1.0,
    )
    reached = iterations
    for it in bar:
        if time_limit_s is not None and time.monotonic() - t0 >= time_limit_s:
            reached = it
            break
        batch = _to_device(sample(rng), device)
        for group in opt.param_groups:
            group["lr"] = cosine_meta_lr(it, meta_lr, anneal_from, iterations)
        opt.zero_grad(set_to_none=True)
        if workers > 1:
            grads, losses, out = concurrent_meta_gradient(
                model,
                batch,
                loss_fn=loss_fn,
                inner_steps=inner_steps,
                alpha=alpha,
                first_order=first_order,
                adapt_names=adapt_names,
                inner_loss_fn=inner_loss_fn,
                batched=batched,
                workers=workers,
            )
            for n, p in model.named_parameters():
                p.grad = grads.get(n)
        else:
            losses, out = query_loss(
                model,
                batch,
                loss_fn=loss_fn,
                inner_steps=inner_steps,
                alpha=alpha,
                first_order=first_order,
                adapt_names=adapt_names,
                inner_loss_fn=inner_loss_fn,
                batched=batched,
            )
            losses.mean().backward()
        opt.step()
        if (it + 1) % log_every == 0 or it == start:
            row = {
                "iteration": it + 1,
                "meta_loss": float(losses.detach().mean()),
            }
            if metric is not None:
                row["query_metric"] = float(
                    metric(out.detach(), batch.query_y).mean()
                )
            history.append(row)
            bar.set_postfix(loss=f"{row['meta_loss']:.3f}", refresh=False)
        if save is not None and saver.due():
            save(snapshot(it + 1))
    bar.close()
    if reached < iterations:
        print(
            f"time limit of {time_limit_s:.0f} s reached at iteration "
            f"{reached} of {iterations}"
        )
    if save is not None:
        save(snapshot(reached))
    return history


def _to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a dataclass or named tuple of tensors and arrays) with its
    tensors on ``device``; the batch itself when they are there already."""
    fields = _check_batch(batch)
    if all(t.device == device for t in fields):
        return batch
    moved = dict(
        zip(
            ("support_x", "support_y", "query_x", "query_y"),
            (t.to(device, non_blocking=True) for t in fields),
        )
    )
    if hasattr(batch, "_replace"):
        return batch._replace(**moved)
    return dataclasses.replace(batch, **moved)


def evaluate(
    model: nn.Module,
    tasks: Iterable[Any],
    *,
    loss_fn: LossFn,
    inner_steps: int,
    alpha: Alpha,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inner_loss_fn: LossFn | None = None,
    adapt_names: Sequence[str] | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Adapt to each task batch's support sets and score the query sets: one
    number per task.

    The inner loop runs without a second-order graph (evaluation needs the fast
    weights' values only); ``metric`` is e.g. :func:`accuracy` or
    :func:`mse_loss`.
    """
    from tqdm.auto import tqdm

    _check_inner(inner_steps, alpha)
    _check_callable("metric", metric)
    _check_flag("progress", progress)
    if isinstance(tasks, (str, bytes, Mapping)) or not isinstance(
        tasks, Iterable
    ):
        raise ValueError(
            f"tasks must be an iterable of task batches, got "
            f"{type(tasks).__name__}"
        )
    scores = []
    for batch in tqdm(
        tasks, disable=not progress, desc="evaluate", mininterval=1.0
    ):
        _, out = query_loss(
            model,
            batch,
            loss_fn=loss_fn,
            inner_steps=inner_steps,
            alpha=alpha,
            first_order=True,
            adapt_names=adapt_names,
            inner_loss_fn=inner_loss_fn,
        )
        score = metric(out.detach(), batch.query_y)
        _check_losses(score, (out.shape[0],), "metric")
        scores.append(score.reshape(-1).numpy())
    if not scores:
        raise ValueError("tasks must yield at least one task batch, got none")
    return np.concatenate(scores)


def adaptation_curve(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: LossFn,
    alpha: Alpha,
    max_steps: int,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    inner_loss_fn: LossFn | None = None,
    adapt_names: Sequence[str] | None = None,
    batched: bool | None = None,
) -> np.ndarray:
    """The query metric after 0, 1, ..., ``max_steps`` inner steps:
    ``(max_steps + 1, T)``.

    One pass of ``max_steps`` steps, scoring the query set after each
    (``metric`` defaults to ``loss_fn``); the same numbers as calling
    :func:`evaluate` once per step count.
    """
    _check_module("model", model)
    _check_inner(max_steps, alpha, "max_steps")
    _check_callable("loss_fn", loss_fn)
    _check_callable("metric", metric, optional=True)
    _check_callable("inner_loss_fn", inner_loss_fn, optional=True)
    metric = loss_fn if metric is None else metric
    inner_loss_fn = loss_fn if inner_loss_fn is None else inner_loss_fn
    sx, sy, qx, qy = _check_batch(batch)
    if batched is not None:
        _check_flag("batched", batched)
    own = dict(model.named_parameters())
    _check_rates(
        alpha,
        _names(model, own, adapt_names),
        {n: v.shape for n, v in own.items()},
    )
    if batched is None:
        batched = supports_task_batch(model) and (
            isinstance(model, SinusoidMLP) or next(model.parameters()).is_cuda
        )
    rows = []
    if batched:
        fast = _expand(dict(model.named_parameters()), sx.shape[0])
        for step in range(max_steps + 1):
            if step:
                fast = _adapt(
                    lambda q, x: predict_tasks(model, q, x),
                    fast,
                    _names(model, fast, adapt_names),
                    sx,
                    sy,
                    inner_loss_fn,
                    1,
                    alpha,
                    True,
                )
                fast = {n: p.detach() for n, p in fast.items()}
            with torch.no_grad():
                score = metric(predict_tasks(model, fast, qx), qy)
                _check_losses(score, (sx.shape[0],), "metric")
                rows.append(score.reshape(-1).numpy())
        return np.stack(rows)
    for t in range(sx.shape[0]):
        fast = dict(model.named_parameters())
        col = []
        for step in range(max_steps + 1):
            if step:
                fast = {
                    n: p.detach()
                    for n, p in adapt(
                        model,
                        sx[t],
                        sy[t],
                        loss_fn=inner_loss_fn,
                        inner_steps=1,
                        alpha=alpha,
                        params=fast,
                        first_order=True,
                        adapt_names=adapt_names,
                    ).items()
                }
            with torch.no_grad():
                score = metric(predict(model, fast, qx[t]), qy[t])
                col.append(float(_check_losses(score, (), "metric")))
        rows.append(col)
    return np.array(rows).T


# ---------------------------------------------------------- the book's recipes


CONFIGS: dict[str, MAMLConfig] = {
    # Finn et al. 2017, section 5.1 and appendix A: K = 10, alpha = 0.01, beta
    # = 1e-3, 25 tasks.
    "maml-sinusoid": MAMLConfig(
        task="sinusoid",
        k_shot=10,
        q_queries=10,
        inner_steps=1,
        test_inner_steps=10,
        alpha=0.01,
        meta_lr=1e-3,
        meta_batch=25,
        iterations=70000,
        inner_loss="mse",
        split="",
        test_split="",
    ),
    # Finn et al.'s baseline: one network regressing all tasks at once (no
    # inner loop in training), fine-tuned by gradient descent at test time.
    "pretrained-sinusoid": MAMLConfig(
        task="sinusoid",
        k_shot=10,
        q_queries=10,
        inner_steps=0,
        test_inner_steps=10,
        alpha=0.01,
        meta_lr=1e-3,
        meta_batch=25,
        iterations=20000,
        inner_loss="mse",
        split="",
        test_split="",
    ),
    # Appendix A.1: 5-way, 1 step with alpha = 0.4 in training, 3 at test, 32
    # tasks. Finn's data pipeline drew K query examples per class in training
    # (here: 1).
    "maml-omniglot-5w1s": MAMLConfig(
        task="omniglot",
        n_way=5,
        k_shot=1,
        q_queries=1,
        inner_steps=1,
        test_inner_steps=3,
        alpha=0.4,
        meta_batch=32,
    ),
    # 20-way: 5 steps with alpha = 0.1 in training and at test, 16 tasks. Finn
    # trained 60,000 iterations at a constant meta-rate; this recipe trains
    # 28,000 and cosine-anneals the rate over the last 4,000 (Antoniou et al.
    # 2019), a budget a CPU can finish.
    "maml-omniglot-20w1s": MAMLConfig(
        task="omniglot",
        n_way=20,
        k_shot=1,
        q_queries=1,
        inner_steps=5,
        test_inner_steps=5,
        alpha=0.1,
        meta_batch=16,
        iterations=28000,
        anneal_from=24000,
    ),
    # Finn et al.'s first-order approximation (FOMAML), otherwise as 5-way MAML
    # except for alpha: at 0.4 (summed loss) the inner step is far past the
    # support loss's curvature (alpha * lambda_max of the head ~ 5.6 at
    # initialisation, where a plain step is stable below 2); dropping the (I -
    # alpha H) factor then flips the meta-gradient (cosine -0.3 with the exact
    # one at initialisation, -0.9 on the head) and training stalled near 60%
    # query accuracy. At 0.1 the cosine is +0.3 and the run trains like
    # second-order MAML.
    "fomaml-omniglot-5w1s": MAMLConfig(
        task="omniglot",
        n_way=5,
        k_shot=1,
        q_queries=1,
        inner_steps=1,
        test_inner_steps=3,
        alpha=0.1,
        meta_batch=32,
        order="first",
    ),
    # Raghu et al. 2020: the same as 5-way MAML, adapting the head only; a CPU
    # budget of 18,000 iterations with the outer rate annealed over the last
    # 3,000, as for 20-way.
    "anil-omniglot-5w1s": MAMLConfig(
        task="omniglot",
        n_way=5,
        k_shot=1,
        q_queries=1,
        inner_steps=1,
        test_inner_steps=3,
        alpha=0.4,
        meta_batch=32,
        order="anil",
        iterations=18000,
        anneal_from=15000,
    ),
    # Li et al. 2017 (Meta-SGD): 5-way MAML with a learned rate tensor per
    # parameter, all set to MAML's alpha = 0.4 at the start, one inner step in
    # training and at test (their protocol). It starts from the
    # maml-omniglot-5w1s checkpoint (the issue allows it; the manifest records
    # that run's cost under metrics.init_from), on the same split, and is
    # trained for a CPU budget (600 iterations, about 40 minutes on one shared
    # CPU core) with the outer rate annealed over the last 200.
    "metasgd-omniglot-5w1s": MAMLConfig(
        task="omniglot",
        n_way=5,
        k_shot=1,
        q_queries=1,
        inner_steps=1,
        test_inner_steps=1,
        alpha=0.4,
        meta_batch=32,
        order="metasgd",
        iterations=600,
        anneal_from=400,
        init_from="maml-omniglot-5w1s",
    ),
}

# The MAML family on Lake's split, for a comparison with the metric learners on
# the same test alphabets: the recipes above, meta-trained on the 30 background
# alphabets (964 characters, each under 4 quarter turns as the Siamese and
# prototypical nets are) and tested on the 20 evaluation alphabets, which share
# no character with them.
for _name in ("anil-omniglot-5w1s", "maml-omniglot-5w1s"):
    CONFIGS[f"{_name}-background"] = replace(
        CONFIGS[_name], split="background", test_split="evaluation",
        rotations=True)


def _sampler(
    config: MAMLConfig,
    split: str | None = None,
    *,
    n_way: int | None = None,
    k_shot: int | None = None,
    q_queries: int | None = None,
    n_tasks: int | None = None,
) -> Callable[[np.random.Generator], Any]:
    n_tasks = n_tasks or config.meta_batch
    k = k_shot or config.k_shot
    if config.task == "sinusoid":
        q = q_queries or config.q_queries
        return lambda rng: data.sample_sinusoid_tasks(n_tasks, k, q, seed=rng)
    # the training pool takes the recipe's rotations, a test pool its split's
    # default
    pool = (
        data.omniglot_classes(split)
        if split
        else data.omniglot_classes(config.split, rotations=config.rotations)
    )
    n, q = n_way or config.n_way, q_queries or config.q_queries
    data._check_episode_args(pool, n, k, q)

    def sample(rng: np.random.Generator) -> data.Episode:
        parts = [
            data._episode_arrays(pool, n, k, q, rng) for _ in range(n_tasks)
        ]
        stack = lambda i: torch.from_numpy(  # noqa: E731
            np.stack([p[i] for p in parts])
        )
        return data.Episode(
            stack(0),
            stack(1),
            stack(2),
            stack(3),
            np.stack([p[4] for p in parts]),
        )

    return sample


def load_model(name: str) -> tuple[nn.Module, MAMLConfig, dict[str, Any]]:
    """A trained checkpoint as ``(model, config, manifest entry)``, its sha256
    checked."""
    if not isinstance(name, str):
        raise ValueError(
            f"name must be a checkpoint name (a string), got {name!r}"
        )
    state, entry = load_checkpoint(name)
    config = MAMLConfig(**entry["config"])
    model = build_model(config)
    model.load_state_dict(state)
    return model, config, entry


def train_sinusoid(
    iterations: int,
    *,
    k_shot: int = 10,
    inner_steps: int = 1,
    alpha: float = 0.01,
    meta_lr: float = 1e-3,
    meta_batch: int = 25,
    seed: int = 0,
    first_order: bool = False,
    progress: bool = True,
) -> tuple[SinusoidMLP, list[dict[str, float]]]:
    """Meta-train Finn et al.'s sinusoid regressor for ``iterations`` steps, in
    memory.

    A few hundred iterations take seconds on a CPU and already learn a useful
    initialisation; the ``maml-sinusoid`` checkpoint is the full 70,000-step
    run.
    """
    data._check_count("k_shot", k_shot)
    data._check_count("meta_batch", meta_batch)
    data._check_count("seed", seed, 0)
    torch.manual_seed(seed)
    model = SinusoidMLP()
    history = meta_train(
        model,
        lambda rng: data.sample_sinusoid_tasks(
            meta_batch, k_shot, k_shot, seed=rng
        ),
        loss_fn=mse_loss,
        iterations=iterations,
        inner_steps=inner_steps,
        alpha=alpha,
        meta_lr=meta_lr,
        first_order=first_order,
        rng=np.random.default_rng(seed),
        progress=progress,
    )
    return model, history


def compact_history(
    history: list[dict[str, float]], max_rows: int = 200
) -> list[dict[str, float]]:
    """At most ``max_rows`` rows: consecutive rows averaged in equal bins (the
    last iteration of each bin kept), small enough for a manifest entry and a
    plot.
    """
    max_rows = data._check_count("max_rows", max_rows)
    if isinstance(history, (str, bytes, Mapping)) or not isinstance(
        history, Sequence
    ):
        raise ValueError(
            f"history must be a list of rows (dicts), got "
            f"{type(history).__name__}"
        )
    keys = (
        set(history[0])
        if len(history) and isinstance(history[0], Mapping)
        else {"iteration"}
    )
    for r in history:
        if (
            not isinstance(r, Mapping)
            or set(r) != keys
            or ("iteration" not in r)
        ):
            raise ValueError(
                f"history must hold rows (dicts) with the same "
                f"keys, 'iteration' among them, got {r!r}"
            )
        if not all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, bool)
            for v in r.values()
        ):
            raise ValueError(f"history rows must hold numbers, got {r!r}")
    if len(history) <= max_rows:
        return [dict(r) for r in history]
    edges = np.linspace(0, len(history), max_rows + 1).astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        rows = history[a:b]
        row = {
            k: float(np.mean([r[k] for r in rows]))
            for k in rows[0]
            if k != "iteration"
        }
        row["iteration"] = rows[-1]["iteration"]
        out.append(row)
    return out


def tune_alpha(
    model: nn.Module,
    batch: Any,
    alphas: Sequence[float],
    *,
    loss_fn: LossFn,
    inner_steps: int,
    metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    higher_is_better: bool = False,
) -> tuple[float, np.ndarray]:
    """The inner rate from ``alphas`` that scores best after ``inner_steps``
    steps on ``batch`` (validation tasks), and every alpha's mean score. Finn
    et al. tune the fine-tuning step size of their pretrained baseline this
    way."""
    if isinstance(alphas, (str, bytes)) or not isinstance(
        alphas, (Sequence, np.ndarray)
    ):
        raise ValueError(
            f"alphas must be a list of inner rates, got {alphas!r}"
        )
    if len(alphas) == 0:
        raise ValueError("alphas must hold at least one value")
    for a in alphas:
        _check_positive("alphas", a)
    _check_inner(inner_steps, 1.0)
    _check_flag("higher_is_better", higher_is_better)
    scores = np.array(
        [
            adaptation_curve(
                model,
                batch,
                loss_fn=loss_fn,
                alpha=a,
                max_steps=inner_steps,
                metric=metric,
            )[-1].mean()
            for a in alphas
        ]
    )
    # A rate that diverges (NaN or inf) is never the best one.
    finite = np.where(
        np.isfinite(scores), scores, -np.inf if higher_is_better else np.inf
    )
    if not np.isfinite(finite).any():
        raise ValueError(f"every alpha in {list(alphas)} diverged")
    best = int(np.argmax(finite) if higher_is_better else np.argmin(finite))
    return float(alphas[best]), scores


def _command(args: argparse.Namespace) -> str:
    parts = ["python -m mlkit train", args.name]
    if args.iterations is not None:
        parts.append(f"--iterations {args.iterations}")
    if args.seed:
        parts.append(f"--seed {args.seed}")
    return " ".join(parts)


def _state_from_checkpoint(
    name: str, model: nn.Module, config: MAMLConfig, seed: int
) -> dict[str, Any] | None:
    """A resumable state rebuilt from the committed checkpoint, for a fresh
    clone.

    ``runs/`` (with the optimiser's moments and the random streams) is not
    committed, so a later session on another machine resumes from the
    checkpoint's weights, iteration count, wall time and compact history, with
    a fresh Adam state and a new task stream (seeded by seed and iteration, so
    the tasks already seen are not drawn again in the same order).
    """
    if name not in manifest():
        return None
    weights, entry = load_checkpoint(name)
    model.load_state_dict(weights)
    it = int(entry["iterations"])
    print(
        f"no saved state for {name} in runs/: resuming from the committed "
        f"checkpoint at iteration {it} (fresh optimiser state)"
    )
    return {
        "model": weights,
        "optimizer": torch.optim.Adam(
            model.parameters(), lr=config.meta_lr
        ).state_dict(),
        "rng": np.random.default_rng([seed, it]).bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": list(entry.get("metrics", {}).get("history", [])),
        "iteration": it,
        "elapsed_s": float(entry["wall_time_s"]),
        "sessions": list(
            entry.get("metrics", {}).get(
                "sessions",
                [
                    {
                        "machine": entry["machine"],
                        "from_iteration": 0,
                        "to_iteration": it,
                        "wall_time_s": float(entry["wall_time_s"]),
                    }
                ],
            )
        ),
    }


def recipe_config(name: str, iterations: int | None = None) -> MAMLConfig:
    """A copy of the book's recipe ``name`` (:data:`CONFIGS`), ``iterations``
    long if given.

    A shorter or longer run keeps the recipe's anneal length: the outer rate is
    annealed over the same number of final iterations (all of them when the run
    is shorter than that).
    """
    if not isinstance(name, str) or name not in CONFIGS:
        raise ValueError(
            f"name must be one of {sorted(CONFIGS)}, got {name!r}"
        )
    config = MAMLConfig(**asdict(CONFIGS[name]))
    if iterations is None:
        return config
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, int)
        or iterations < 0
    ):
        raise ValueError(
            f"iterations must be an integer >= 0, got {iterations!r}"
        )
    if config.anneal_from is not None:
        tail = config.iterations - config.anneal_from
        config.anneal_from = max(0, iterations - tail)
    config.iterations = iterations
    return config


def _start_from(model: nn.Module, source: str) -> dict[str, Any]:
    """Load checkpoint ``source``'s weights into ``model`` (whose extra
    parameters, such as Meta-SGD's rates, keep their initial values); return
    what the manifest says of it, so that the new checkpoint records the cost
    of the weights it started from."""
    weights, entry = load_checkpoint(source)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected or any(not n.startswith(RATE_PREFIX) for n in missing):
        raise ValueError(
            f"init_from checkpoint {source!r} does not fit this network: "
            f"missing {missing}, unexpected {unexpected}"
        )
    print(
        f"starting from the weights of checkpoint {source} "
        f"({entry['iterations']:,} iterations, sha256 {entry['sha256'][:12]})"
    )
    return {
        "checkpoint": source,
        "sha256": entry["sha256"],
        "command": entry["command"],
        "iterations": entry["iterations"],
        "wall_time_s": entry["wall_time_s"],
        "sessions": list((entry.get("metrics") or {}).get("sessions") or []),
    }


def _train_recipe(name: str) -> Callable[[argparse.Namespace], None]:
    def train(args: argparse.Namespace) -> None:
        config = recipe_config(name, args.iterations)
        if config.task == "sinusoid" and args.threads is None:
            # a tiny network: a second thread only adds overhead
            torch.set_num_threads(1)
        torch.manual_seed(args.seed)
        if str(args.device).startswith("cuda"):
            # fixed shapes: let cuDNN pick its kernels
            torch.backends.cudnn.benchmark = True
        model = build_model(config).to(args.device)
        state = load_state(name) if args.resume else None
        if args.resume and state is None:
            state = _state_from_checkpoint(name, model, config, args.seed)
        if args.resume and state is None:
            print(f"no saved state for {name}: starting from scratch")
        origin = None
        if config.init_from is not None:
            # where the starting weights came from, and what they cost, for the
            # manifest
            origin = (state or {}).get("init_from") or manifest().get(
                name, {}
            ).get("metrics", {}).get("init_from")
            if state is None:
                origin = _start_from(model, config.init_from)
        if state is not None:
            print(f"resuming {name} at iteration {state['iteration']}")
            if "sessions" not in state and name in manifest():
                # a state saved before sessions were kept: the manifest knows
                # its machine
                state["sessions"] = [
                    {
                        "machine": manifest()[name]["machine"],
                        "from_iteration": 0,
                        "to_iteration": state["iteration"],
                        "wall_time_s": round(state["elapsed_s"], 1),
                    }
                ]
        inner, outer = _losses(config)
        metric = mse_loss if config.task == "sinusoid" else accuracy

        def save(s: dict[str, Any]) -> None:
            s["config"] = asdict(config)
            metrics = {
                "history": compact_history(s["history"]),
                "sessions": s["sessions"],
            }
            if origin is not None:
                s["init_from"] = metrics["init_from"] = origin
            save_state(name, s)
            # the run's folder, never the book's checkpoints/ (train --promote
            # copies it)
            save_checkpoint(
                name,
                s["model"],
                config=asdict(config),
                command=_command(args),
                seed=args.seed,
                iterations=s["iteration"],
                wall_time_s=s["elapsed_s"],
                metrics=metrics,
                directory=run_dir(name),
            )

        meta_train(
            model,
            _sampler(config),
            loss_fn=outer,
            inner_loss_fn=inner,
            iterations=config.iterations,
            inner_steps=config.inner_steps,
            alpha=_inner_alpha(model, config),
            meta_lr=config.meta_lr,
            first_order=config.order == "first",
            adapt_names=_adapt_names(model, config),
            metric=metric,
            rng=np.random.default_rng(args.seed),
            state=state,
            save=save,
            save_every_s=args.save_every,
            time_limit_s=(
                None if args.max_minutes is None else 60.0 * args.max_minutes
            ),
            workers=args.workers,
            anneal_from=config.anneal_from,
            # With one query per class the grouped-convolution layout was the
            # faster on the CPU (benchmarks/RESULTS.md); the MLP always takes
            # it. Shared among threads, the per-task loop was the faster (both
            # Omniglot recipes).
            batched=supports_task_batch(model) if args.workers == 1 else None,
        )

    return train


PROTOCOLS = ("book", "paper")


def _evaluate_recipe(
    name: str,
) -> Callable[[argparse.Namespace], dict[str, Any]]:
    def run(args: argparse.Namespace) -> dict[str, Any]:
        model, config, _ = load_model(name)
        torch.manual_seed(args.seed)
        steps = config.test_inner_steps if args.steps is None else args.steps
        if config.order == "metasgd":
            # the learned rates step; evaluation needs their values only
            alpha: Alpha = {
                n: r.detach() for n, r in inner_rates(model).items()
            }
        else:
            alpha = config.alpha if args.alpha is None else args.alpha
        k = args.shots or (5 if config.task == "sinusoid" else config.k_shot)
        n_way = args.ways or config.n_way
        protocol = getattr(args, "protocol", None) or "book"
        if protocol not in PROTOCOLS:
            raise ValueError(
                f"protocol must be one of {list(PROTOCOLS)}, "
                f"got {protocol!r}"
            )
        if config.task == "omniglot" and n_way != config.n_way:
            raise ValueError(
                f"--ways must be {config.n_way} for {name} (its head has "
                f"{config.n_way} outputs), got {n_way}"
            )
        # Tasks go 50 to a batch, fewer when fewer are asked for, so that the
        # cost grows with --tasks (600 tasks draw the same batches as before).
        per_batch = min(50, args.tasks)
        queries = None
        if config.task == "sinusoid":
            sample = _sampler(
                config, k_shot=k, q_queries=100, n_tasks=per_batch
            )
        else:
            data.check_test_shots(k)
            # BatchNorm uses the statistics of the query batch at test time
            # (Finn et al.'s transductive setting), so the layout changes the
            # number: Finn's code scores one query per class ("paper"); the
            # book 15 ("book").
            queries = (
                1 if protocol == "paper" else min(config.test_queries, 20 - k)
            )
            sample = _sampler(
                config,
                args.split or config.test_split,
                k_shot=k,
                n_tasks=per_batch,
                n_way=n_way,
                q_queries=queries,
            )
        rng = np.random.default_rng(args.seed)
        n_batches = math.ceil(args.tasks / per_batch)
        inner, outer = _losses(config, k)
        metric = mse_loss if config.task == "sinusoid" else accuracy
        from tqdm.auto import tqdm

        batches = tqdm(
            (sample(rng) for _ in range(n_batches)),
            total=n_batches,
            desc=f"evaluate {name} ({per_batch} tasks a batch)",
            mininterval=1.0,
        )
        scores = evaluate(
            model,
            batches,
            loss_fn=outer,
            inner_loss_fn=inner,
            inner_steps=steps,
            alpha=alpha,
            metric=metric,
            adapt_names=_adapt_names(model, config),
        )[: args.tasks]
        if config.task == "omniglot":
            scores = scores * 100
        settings = {
            "k_shot": k,
            "inner_steps": steps,
            "alpha": "learned" if config.order == "metasgd" else alpha,
            "seed": args.seed,
        }
        if config.task == "omniglot":
            settings.update(
                split=args.split or config.test_split,
                n_way=n_way,
                protocol=protocol,
                queries_per_class=queries,
            )
        return {
            "metric": "mse" if config.task == "sinusoid" else "accuracy",
            **summary(scores),
            "settings": settings,
        }

    return run


def _recipes() -> dict[str, Any]:
    from .__main__ import Recipe

    summaries = {
        "maml-sinusoid": (
            "MAML on sinusoid regression (Finn et al. 2017, section 5.1)"
        ),
        "pretrained-sinusoid": (
            "baseline: one regressor pretrained on all sinusoid tasks"
        ),
        "maml-omniglot-5w1s": (
            "MAML, Omniglot 5-way 1-shot, Finn's split with rotations"
        ),
        "maml-omniglot-20w1s": (
            "MAML, Omniglot 20-way 1-shot, Finn's split with rotations"
        ),
        "anil-omniglot-5w1s": (
            "ANIL (head-only inner loop), Omniglot 5-way 1-shot"
        ),
        "fomaml-omniglot-5w1s": "first-order MAML, Omniglot 5-way 1-shot",
        "metasgd-omniglot-5w1s": (
            "Meta-SGD (learned per-parameter inner rates), Omniglot "
            "5-way 1-shot, from MAML's weights"
        ),
        "anil-omniglot-5w1s-background": (
            "ANIL, Omniglot 5-way 1-shot, Lake's "
            "background alphabets with rotations"
        ),
        "maml-omniglot-5w1s-background": (
            "MAML, Omniglot 5-way 1-shot, Lake's "
            "background alphabets with rotations"
        ),
    }
    flags = {"tasks", "shots", "steps", "alpha", "seed"}
    omniglot = frozenset(flags | {"ways", "split", "protocol", "allow_seen"})

    def evaluate_flags(n: str) -> frozenset[str]:
        used = omniglot if CONFIGS[n].task == "omniglot" else frozenset(flags)
        # Meta-SGD's inner rates are learned: no --alpha to set
        return used - {"alpha"} if CONFIGS[n].order == "metasgd" else used

    return {
        n: Recipe(
            n,
            summaries[n],
            _train_recipe(n),
            _evaluate_recipe(n),
            evaluate_flags=evaluate_flags(n),
            trained_on=(
                CONFIGS[n].split if CONFIGS[n].task == "omniglot" else None
            ),
            test_split=(
                CONFIGS[n].test_split
                if CONFIGS[n].task == "omniglot"
                else None
            ),
        )
        for n in CONFIGS
    }


RECIPES = _recipes()
