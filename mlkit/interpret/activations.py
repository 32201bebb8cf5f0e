"""Activations and the inner loop step by step.

:func:`record_activations` (forward hooks, removed on exit),
:func:`layer_activations`, :func:`weight_change`,
:func:`fast_weight_trajectory`, :func:`activation_change`, and descriptions
of one representation (:func:`effective_rank`, :func:`dead_units`,
:func:`class_selectivity`, :func:`top_activating`).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn

from ._checks import (
    _check_positive_int,
    _check_tensor,
    _check_input,
    _check_labels,
    _check_callable,
    _check_number,
    _check_flag,
    _check_layers,
    _check_weights,
    _check_params,
    _flat64,
)

__all__ = [
    "record_activations",
    "default_layers",
    "layer_activations",
    "weight_change",
    "layer_of",
    "Trajectory",
    "fast_weight_trajectory",
    "task_params",
    "ActivationChange",
    "activation_change",
    "top_activating",
    "effective_rank",
    "dead_units",
    "class_selectivity",
]


@contextmanager
def record_activations(
    model: nn.Module,
    layers: Sequence[str] | None = None,
    *,
    detach: bool = True,
) -> Iterator[dict[str, Tensor]]:
    """Capture the outputs of ``model``'s sub-modules while the ``with`` block
    runs.

    ``layers`` names modules as ``model.named_modules()`` does
    (``"body.0.2"``); by default every leaf module. The yielded dict maps each
    name to the output of that module's latest forward call (detached unless
    ``detach=False``). Hooks also fire when the model runs with fast weights
    through ``torch.func.functional_call``. They are removed on exit, even
    after an exception::

        with record_activations(net, ["body.0", "body.1"]) as acts:
            net(x)
        acts["body.0"].shape
    """
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    _check_layers(layers)
    _check_flag("detach", detach)
    modules = dict(model.named_modules())
    if layers is None:
        layers = [
            name
            for name, m in modules.items()
            if name and not any(True for _ in m.children())
        ]
    else:
        if isinstance(layers, str):
            layers = [layers]
        unknown = [
            name for name in layers if name not in modules or name == ""
        ]
        if unknown:
            allowed = [name for name in modules if name]
            raise ValueError(
                f"layers holds unknown module names {unknown}; allowed: "
                f"{allowed}"
            )
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


# -----------------------------------------------------------------------------
# Model-specific: where adaptation happens in the weights
# -----------------------------------------------------------------------------


def weight_change(
    before: Mapping[str, Tensor],
    after: Mapping[str, Tensor],
    *,
    relative: bool = True,
) -> dict[str, float]:
    """How far adaptation moved each parameter tensor:
    ``||theta'_l - theta_l|| / ||theta_l||``.

    ``before`` and ``after`` map parameter names to tensors (e.g.
    ``dict(model.named_parameters())`` and the fast weights that
    :func:`mlkit.maml.adapt` returns). With ``relative=False`` the plain
    Frobenius norm of the change is returned. A tensor of zeros before
    adaptation gives ``inf`` (or ``0.0`` when it did not move) in relative
    mode. Raghu et al. (2020) ask the same question with representations; this
    is its counterpart in weight space.
    """
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        raise ValueError(
            "before and after must be mappings from parameter names to tensors"
        )
    _check_weights("before", before)
    _check_weights("after", after)
    _check_flag("relative", relative)
    if set(before) != set(after):
        raise ValueError(
            "after must have the same parameter names as before; only in "
            f"before: {sorted(set(before) - set(after))}, only in after: "
            f"{sorted(set(after) - set(before))}"
        )
    out: dict[str, float] = {}
    for name, b in before.items():
        a = after[name]
        if a.shape != b.shape:
            raise ValueError(
                f"after[{name!r}] has shape {tuple(a.shape)}, before has "
                f"{tuple(b.shape)}"
            )
        if not (a.is_floating_point() and b.is_floating_point()):
            raise ValueError(
                f"before[{name!r}] and after[{name!r}] must be "
                f"floating-point, got {b.dtype} and {a.dtype}"
            )
        diff = float((a.detach() - b.detach()).norm())
        if relative:
            size = float(b.detach().norm())
            out[name] = (
                diff / size
                if size > 0
                else (0.0 if diff == 0 else float("inf"))
            )
        else:
            out[name] = diff
    return out


# =============================================================================
# Chapter 6: representation similarity, gradient attributions, support
# influence, and what the inner loop does step by step. Each tool takes either
# a MAML model with fast weights or a metric learner's scorer
# (:func:`prototype_scorer`, :func:`pair_similarity`).
# =============================================================================


def default_layers(model: nn.Module) -> list[str]:
    """The layers the chapter compares: each block of ``model.body`` and
    ``head`` (if any).

    For a model without a ``body`` Sequential, every leaf module.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    body = getattr(model, "body", None)
    if isinstance(body, nn.Sequential):
        names = [f"body.{i}" for i in range(len(body))]
        if isinstance(getattr(model, "head", None), nn.Module):
            names.append("head")
        return names
    return [
        n
        for n, m in model.named_modules()
        if n and not any(True for _ in m.children())
    ]


def layer_activations(
    model: nn.Module,
    params: Mapping[str, Tensor] | None,
    x: Tensor,
    layers: Sequence[str] | None = None,
) -> dict[str, Tensor]:
    """Each layer's output for the batch ``x`` under weights ``params``
    (default: the model's).

    Runs ``model`` once through ``torch.func.functional_call`` (so fast weights
    from :func:`mlkit.maml.adapt` work) with forward hooks on ``layers``
    (default :func:`default_layers`). With batch-statistics BatchNorm the
    activations of one example depend on the rest of ``x``: compare
    representations on the same batch.
    """
    from torch.func import functional_call

    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
    _check_params(model, params)
    x = _check_input("x", x, 2)
    _check_layers(layers)
    layers = (
        default_layers(model)
        if layers is None
        else ([layers] if isinstance(layers, str) else list(layers))
    )
    with torch.no_grad(), record_activations(model, layers) as acts:
        if params is None:
            model(x)
        else:
            functional_call(model, dict(params), (x,))
    return {name: acts[name] for name in layers}


def layer_of(name: str, depth: int = 2) -> str:
    """The layer a parameter belongs to: its module path cut to ``depth`` parts
    (``"body.0.1.weight"`` -> ``"body.0"``, ``"head.bias"`` -> ``"head"``)."""
    _check_positive_int("depth", depth)
    if not isinstance(name, str):
        raise ValueError(
            f"name must be a parameter name (a string), got {name!r}"
        )
    parts = name.split(".")[:-1] or [name]
    return ".".join(parts[:depth])


@dataclass(frozen=True)
class Trajectory:
    """What :func:`fast_weight_trajectory` records at steps
    ``0 .. inner_steps``.

    ``params[t]`` are the fast weights after ``t`` steps (``params[0]`` the
    initialisation; with a leading task axis in the task-batch layout).
    ``support_loss[t]`` and, when queries were given, ``query_loss[t]`` and
    ``query_accuracy[t]`` are measured at those weights (means over tasks);
    ``task_accuracy[t]`` holds each task's query accuracy.
    ``step_size[layer][t-1]`` is ``||theta_t - theta_{t-1}||`` over the layer's
    parameters and ``distance[layer][t]`` is ``||theta_t - theta_0||``
    (Frobenius norms over all the layer's tensors; root mean square over tasks
    in the task-batch layout).
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

    Each step is ``theta_{t+1} = theta_t - alpha grad_theta L_S(theta_t)`` on
    the parameters ``adapt_names`` (default all; ANIL: the head's), so the
    recorded fast weights equal :func:`mlkit.maml.adapt` with ``inner_steps=t``
    (first order: only values are kept). With ``batched=True`` the tensors
    carry a leading task axis and the task-batch layout of
    :func:`mlkit.maml.predict_tasks` runs all tasks at once (as
    :func:`mlkit.maml.adapt_tasks`). Records the support loss, the query loss
    and accuracy (when ``query_x``/``query_y`` are given; ``query_loss_fn``
    defaults to ``loss_fn``) and the size of each step per layer
    (:func:`layer_of` with ``depth``). Observation only: nothing is
    meta-trained.
    """
    from .. import maml

    maml._check_adapt_args(model, loss_fn, inner_steps, alpha, params, False)
    if query_loss_fn is not None:
        _check_callable("query_loss_fn", query_loss_fn)
    _check_flag("batched", batched)
    _check_positive_int("depth", depth)
    if (query_x is None) != (query_y is None):
        raise ValueError("query_x and query_y must be given together")
    qloss = loss_fn if query_loss_fn is None else query_loss_fn
    p = {
        k: v.detach()
        for k, v in (
            dict(model.named_parameters()) if params is None else dict(params)
        ).items()
    }
    names = maml._names(model, p, adapt_names)
    if batched:
        _check_tensor("support_x", support_x)
        _check_tensor("support_y", support_y)
        if support_x.dim() < 3 or support_y.shape[0] != support_x.shape[0]:
            raise ValueError(
                "support_x must be (tasks, examples, ...) with support_y "
                "(tasks, examples) when batched, got "
                f"{tuple(support_x.shape)} and {tuple(support_y.shape)}"
            )
        if not maml.supports_task_batch(model):
            raise ValueError(
                f"model must be a SinusoidMLP or a ConvNet "
                f"when batched, got {type(model).__name__}"
            )
        n_tasks = support_x.shape[0]
        p = {k: v.unsqueeze(0).expand(n_tasks, *v.shape) for k, v in p.items()}
        forward = lambda w, x: maml.predict_tasks(model, w, x)  # noqa: E731
    else:
        maml._check_xy(
            support_x,
            support_y,
            maml._n_out(model),
            maml._is_classifier(model, support_y),
            "support",
        )
        n_tasks = 1
        forward = lambda w, x: maml.predict(model, w, x)  # noqa: E731
    history = [p]
    s_loss: list[float] = []
    q_loss: list[float] = []
    q_acc: list[float] = []
    t_acc: list[Tensor] = []

    def measure(w: dict[str, Tensor]) -> None:
        with torch.no_grad():
            s_loss.append(
                float(loss_fn(forward(w, support_x), support_y).mean())
            )
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
                raise ValueError(
                    "loss_fn must return a differentiable "
                    f"loss tensor, got {type(loss).__name__}"
                )
            loss = loss.sum()  # tasks are independent
            grads = torch.autograd.grad(loss, targets)
        p = {
            **p,
            **{
                n: (t - alpha * g).detach()
                for n, t, g in zip(names, targets, grads)
            },
        }
        history.append(p)
        measure(p)
    layers = list(dict.fromkeys(layer_of(n, depth) for n in p))

    def norm(a: dict[str, Tensor], b: dict[str, Tensor], layer: str) -> float:
        sq = sum(
            float((a[n] - b[n]).pow(2).sum())
            for n in a
            if layer_of(n, depth) == layer
        )
        return (sq / n_tasks) ** 0.5

    step = {
        lay: [
            norm(history[t + 1], history[t], lay) for t in range(inner_steps)
        ]
        for lay in layers
    }
    dist = {
        lay: [
            norm(history[t], history[0], lay) for t in range(inner_steps + 1)
        ]
        for lay in layers
    }
    return Trajectory(history, s_loss, q_loss, q_acc, t_acc, step, dist)


def task_params(params: Mapping[str, Tensor], task: int) -> dict[str, Tensor]:
    """One task's fast weights out of a task-batch set (leading task axis)."""
    _check_weights("params", params)
    if (
        not params
        or any(v.dim() == 0 for v in params.values())
        or len({v.shape[0] for v in params.values()}) != 1
    ):
        raise ValueError(
            "params must hold at least one tensor, each with "
            "the same leading task axis"
        )
    first = next(iter(params.values()))
    if (
        isinstance(task, bool)
        or not isinstance(task, int)
        or not 0 <= task < first.shape[0]
    ):
        raise ValueError(
            f"task must be an index in [0, {first.shape[0] - 1}], got {task!r}"
        )
    return {k: v[task] for k, v in params.items()}


@dataclass(frozen=True)
class ActivationChange:
    """Result of :func:`activation_change`.

    ``per_step[layer][t] = ||a_t - a_0|| / ||a_0||`` over the whole batch;
    ``per_unit[layer]`` is, for each unit (channel), the mean absolute change
    after the last step divided by the layer's mean absolute activation before
    adaptation.
    """

    per_step: dict[str, list[float]]
    per_unit: dict[str, Tensor]


def activation_change(
    model: nn.Module,
    params: Sequence[Mapping[str, Tensor]],
    x: Tensor,
    layers: Sequence[str] | None = None,
) -> ActivationChange:
    """How each layer's (and each unit's) activations on ``x`` move across the
    inner steps.

    ``params`` is the list of fast weights at steps ``0 .. T`` (e.g.
    :attr:`Trajectory.params`). Activations are recorded with hooks on
    ``layers`` (default :func:`default_layers`) for the same batch ``x`` at
    every step.
    """
    if not isinstance(params, Sequence) or len(params) < 2:
        raise ValueError(
            "params must be a sequence of at least 2 weight sets (steps 0..T)"
        )
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"model must be a torch.nn.Module, got {type(model).__name__}"
        )
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
    """Indices of the ``k`` examples that activate each unit most:
    ``(units, k)``.

    ``activations`` is ``(n, units)`` or ``(n, units, H, W)`` (then averaged
    over space): the usual "which inputs drive this neuron" visualisation
    (Zeiler & Fergus 2014).
    """
    a = _check_input("activations", activations, 2, nonempty=False)
    _check_positive_int("k", k)
    if k > a.shape[0]:
        raise ValueError(
            f"k must be in [1, {a.shape[0]}] (the number of examples), got {k}"
        )
    a = a.reshape(a.shape[0], a.shape[1], -1).mean(-1)
    return a.topk(k, dim=0).indices.T


def effective_rank(z: Tensor) -> float:
    """Roy & Vetterli (2007)'s effective rank of a representation ``(n, d)``:
    ``exp`` of the entropy of its normalised singular values (after centring).
    It is ``d`` for a representation that spreads evenly over ``d`` directions
    and 1 when it has collapsed onto a line; a collapsed embedding (every input
    mapped near one point) scores low.
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
    """Which units of a representation ``(n, units, ...)`` never rise above
    ``tol`` on any example (a ReLU that is off for every input carries no
    information): bool ``(units,)``.
    """
    z = _check_tensor("z", z, 2)
    if z.numel() == 0:
        raise ValueError(
            f"z must hold at least one example and unit, got "
            f"shape {tuple(z.shape)}"
        )
    _check_number("tol", tol, strict=False)
    return (z.reshape(z.shape[0], z.shape[1], -1) <= tol).all(-1).all(0)


def class_selectivity(z: Tensor, labels: Tensor) -> Tensor:
    """How much of each unit's variance the class explains: the correlation
    ratio ``eta^2 = Var_between / Var_total`` per unit of a representation
    ``(n, units, ...)`` (averaged over space first), with ``labels`` ``(n,)``.

    1 means the unit's value is fixed by the class (it encodes *which*
    character), 0 that the class tells nothing about it (it encodes the
    drawing: stroke width, position). A unit that never varies gets 0.
    """
    z = _check_input("z", z, 2)
    labels = _check_labels("labels", labels)
    if labels.shape != z.shape[:1]:
        raise ValueError(
            f"labels must hold one class per example ({z.shape[0]}), got "
            f"shape {tuple(labels.shape)}"
        )
    a = (
        z.detach()
        .reshape(z.shape[0], z.shape[1], -1)
        .mean(-1)
        .to(torch.float64)
    )
    _, inv = torch.unique(labels, return_inverse=True)
    k = int(inv.max()) + 1
    counts = torch.bincount(inv, minlength=k).to(a.dtype)
    means = (
        torch.zeros(k, a.shape[1], dtype=a.dtype).index_add_(0, inv, a)
        / counts[:, None]
    )
    total = (a - a.mean(0)).pow(2).sum(0)
    between = (counts[:, None] * (means - a.mean(0)).pow(2)).sum(0)
    out = torch.where(
        total > 0, between / total.clamp_min(1e-300), torch.zeros_like(total)
    )
    return out.float()
