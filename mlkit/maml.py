r"""Model-Agnostic Meta-Learning (Finn, Abbeel & Levine 2017), functional and first-principles.

The objective is

.. math::  \min_\theta \sum_i \mathcal{L}_i\big(\theta - \alpha \nabla_\theta \mathcal{L}_i(\theta)\big)

with one inner step; with ``inner_steps = k`` the inner update is applied ``k`` times. The
inner loop (:func:`adapt`) takes gradient steps on a task's support set and returns *fast
weights*; the outer loop (:func:`meta_train`) differentiates the query loss at the fast
weights with respect to the initial weights ``theta`` and updates them with Adam.

* Second order (default): the inner gradients keep their graph
  (``torch.autograd.grad(..., create_graph=True)``), so the meta-gradient holds the Hessian
  term :math:`(I - \alpha \nabla^2 \mathcal{L}_i)`.
* First order (FOMAML): the inner gradients are treated as constants.
* ANIL (Raghu et al. 2020): only the head's parameters are adapted in the inner loop.

Two equivalent layouts run the same mathematics. :func:`adapt` / :func:`predict` work on one
task and any ``nn.Module`` through ``torch.func.functional_call``. :func:`adapt_tasks` /
:func:`predict_tasks` run a whole meta-batch at once for the book's two networks
(:class:`~mlkit.nets.SinusoidMLP` and :class:`~mlkit.nets.ConvNet`): each task gets its own
copy of the weights, stacked along a leading task axis, and the convolutions become one
grouped convolution whose groups are the tasks. BatchNorm then normalises every
(task, channel) over that task's images alone, exactly as the per-task loop does, and
tasks never mix, so one ``autograd.grad`` of the summed loss gives every task's own
gradient. (We do not ``vmap`` through BatchNorm: with torch 2.13 that gives wrong
second-order meta-gradients, cf. functorch issue #534.)

Loss functions follow one contract: they reduce over the example axis only, so that for one
task they return a scalar and for a task batch ``(T, ...)`` a vector of ``T`` losses.
:func:`mse_loss`, :func:`cross_entropy` (mean over the support set) and
:func:`summed_cross_entropy` (Finn's scaling: summed over the support set and divided by
``k_shot``; Finn's inner rate alpha = 0.4 for 5-way Omniglot is for this scaling, equal to
alpha = 0.4 N on the mean) are provided.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from . import data as D
from .checkpoints import (Autosaver, begin_session, load_checkpoint, load_state,
                          manifest, save_checkpoint, save_state)
from .nets import ConvNet, SinusoidMLP, head_parameter_names
from .stats import mean_ci95

__all__ = [
    "mse_loss", "cross_entropy", "summed_cross_entropy", "accuracy",
    "predict", "adapt", "predict_tasks", "adapt_tasks", "supports_task_batch",
    "query_loss", "meta_gradient", "meta_train", "evaluate", "adaptation_curve",
    "tune_alpha", "compact_history",
    "MAMLConfig", "CONFIGS", "build_model", "load_model", "train_sinusoid",
    "RECIPES",
]

Params = dict[str, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# ------------------------------------------------------------------ losses


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over a task's examples: ``(..., n, d) -> (...)``."""
    return ((pred - target) ** 2).mean(dim=(-2, -1))


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over a task's examples: ``(..., n, C), (..., n) -> (...)``."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    return ce.view(labels.shape).mean(-1)


def summed_cross_entropy(k_shot: int) -> LossFn:
    """Finn et al.'s inner loss: cross-entropy summed over the support set, divided by K.

    For N-way K-shot this is N times the mean, so Finn's alpha = 0.4 (5-way) on it equals
    alpha = 2.0 on :func:`cross_entropy`.
    """
    if k_shot < 1:
        raise ValueError(f"k_shot must be >= 1, got {k_shot}")

    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cross_entropy(logits, labels) * (labels.shape[-1] / k_shot)

    loss.__name__ = f"summed_cross_entropy_k{k_shot}"
    return loss


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Share of correct predictions per task: ``(..., n, C), (..., n) -> (...)``."""
    return (logits.argmax(-1) == labels).float().mean(-1)


# ------------------------------------------------------------------ checks


def _check_inner(inner_steps: int, alpha: float) -> None:
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, (int, np.integer)) or inner_steps < 0:
        raise ValueError(f"inner_steps must be an integer >= 0, got {inner_steps!r}")
    if not isinstance(alpha, (int, float, np.floating)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be positive and finite, got {alpha!r}")


def _check_xy(x: torch.Tensor, y: torch.Tensor, n_out: int | None, classify: bool, what: str) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{what}_x and {what}_y must hold the same number of "
                         f"{'tasks' if x.dim() > 2 + classify else 'examples'}: "
                         f"{tuple(x.shape)} vs {tuple(y.shape)}")
    if classify and n_out is not None and y.numel():
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_out:
            raise ValueError(f"{what}_y labels must be in [0, {n_out - 1}], got [{lo}, {hi}]")


def _n_out(model: nn.Module) -> int | None:
    head = getattr(model, "head", None)
    return getattr(head, "out_features", None)


def _is_classifier(model: nn.Module, y: torch.Tensor) -> bool:
    return not torch.is_floating_point(y)


# ------------------------------------------------------------------ one task


def predict(model: nn.Module, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The model's output on ``x`` with weights ``params`` (``torch.func.functional_call``)."""
    return functional_call(model, dict(params), (x,))


def _initial(model: nn.Module, params: Mapping[str, torch.Tensor] | None) -> Params:
    return dict(model.named_parameters()) if params is None else dict(params)


def _names(model: nn.Module, params: Params, adapt_names: Sequence[str] | None) -> list[str]:
    names = list(params) if adapt_names is None else list(adapt_names)
    unknown = [n for n in names if n not in params]
    if unknown:
        raise ValueError(f"adapt_names holds names that are not parameters: {unknown}")
    return names


def _apply(params: Params, names: list[str], targets: list[torch.Tensor], loss: torch.Tensor,
           alpha: float, first_order: bool) -> Params:
    grads = torch.autograd.grad(loss, targets, create_graph=not first_order)
    new = dict(params)
    for n, t, g in zip(names, targets, grads):
        new[n] = t - alpha * (g.detach() if first_order else g)
    return new


def _adapt(forward: Callable[[Params, torch.Tensor], torch.Tensor], params: Params,
           names: list[str], support_x: torch.Tensor, support_y: torch.Tensor, loss_fn: LossFn,
           inner_steps: int, alpha: float, first_order: bool) -> Params:
    if inner_steps and not all(params[n].requires_grad for n in names):
        params = {**params, **{n: params[n].detach().requires_grad_()
                               for n in names if not params[n].requires_grad}}
    with torch.enable_grad():
        for _ in range(inner_steps):
            loss = loss_fn(forward(params, support_x), support_y).sum()
            targets = [params[n] for n in names]
            params = _apply(params, names, targets, loss, alpha, first_order)
    return params


def adapt(model: nn.Module, support_x: torch.Tensor, support_y: torch.Tensor, *,
          loss_fn: LossFn, inner_steps: int = 1, alpha: float = 0.01,
          params: Mapping[str, torch.Tensor] | None = None, first_order: bool = False,
          adapt_names: Sequence[str] | None = None) -> Params:
    r"""The inner loop for one task: ``inner_steps`` steps of :math:`\theta' = \theta - \alpha
    \nabla_\theta \mathcal{L}(f_\theta(x_s), y_s)` from ``params`` (default: the model's own).

    Returns the fast weights, a dict of every parameter. With ``first_order=False`` they stay
    differentiable with respect to ``params`` including the second-order term; with
    ``first_order=True`` the inner gradients are constants (FOMAML). ``adapt_names`` restricts
    the update to some parameters (ANIL: the head's). ``inner_steps=0`` returns ``params``.
    """
    _check_inner(inner_steps, alpha)
    _check_xy(support_x, support_y, _n_out(model), _is_classifier(model, support_y), "support")
    p = _initial(model, params)
    names = _names(model, p, adapt_names)
    return _adapt(lambda q, x: predict(model, q, x), p, names, support_x, support_y, loss_fn,
                  inner_steps, alpha, first_order)


# ------------------------------------------------------------------ many tasks at once


def supports_task_batch(model: nn.Module) -> bool:
    """Whether :func:`predict_tasks` knows this network's layout (SinusoidMLP, ConvNet)."""
    return isinstance(model, (SinusoidMLP, ConvNet))


def _expand(params: Mapping[str, torch.Tensor], n_tasks: int) -> Params:
    return {n: p.unsqueeze(0).expand(n_tasks, *p.shape) for n, p in params.items()}


def _linear_tasks(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # x (T, n, in), w (T, out, in), b (T, out)
    return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))


def _mlp_tasks(model: SinusoidMLP, params: Params, x: torch.Tensor) -> torch.Tensor:
    h = x
    for i, layer in enumerate(model.body):
        if isinstance(layer, nn.Linear):
            h = _linear_tasks(h, params[f"body.{i}.weight"], params[f"body.{i}.bias"])
        else:
            h = layer(h)
    return _linear_tasks(h, params["head.weight"], params["head.bias"])


def _convnet_features_tasks(model: ConvNet, params: Params, x: torch.Tensor) -> torch.Tensor:
    t, n = x.shape[:2]
    # (T, n, C, H, W) -> (n, T*C, H, W): the tasks become channel groups.
    h = x.transpose(0, 1).reshape(n, t * x.shape[2], *x.shape[3:])
    for i, block in enumerate(model.body):
        conv, bn = block[0], block[1]
        w = params[f"body.{i}.0.weight"]
        h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), params[f"body.{i}.0.bias"].reshape(-1),
                     stride=conv.stride, padding=conv.padding, groups=t)
        # Batch statistics per (task, channel) over that task's n images only.
        h = F.batch_norm(h, None, None, params[f"body.{i}.1.weight"].reshape(-1),
                         params[f"body.{i}.1.bias"].reshape(-1), training=True, eps=bn.eps)
        h = F.relu(h)
    feats = h.mean(dim=(-2, -1))  # (n, T*hidden)
    return feats.reshape(n, t, -1).transpose(0, 1)  # (T, n, hidden)


def predict_tasks(model: nn.Module, params: Mapping[str, torch.Tensor],
                  x: torch.Tensor) -> torch.Tensor:
    """Outputs for a batch of tasks at once: ``params`` carry a leading task axis ``T``
    (as :func:`adapt_tasks` returns them) and ``x`` is ``(T, n, ...)``; gives ``(T, n, out)``.

    Equal to ``predict(model, params_t, x[t])`` for every task ``t``, computed in one pass.
    """
    params = dict(params)
    if isinstance(model, SinusoidMLP):
        return _mlp_tasks(model, params, x)
    if isinstance(model, ConvNet):
        feats = _convnet_features_tasks(model, params, x)
        return _linear_tasks(feats, params["head.weight"], params["head.bias"])
    raise TypeError(f"predict_tasks knows SinusoidMLP and ConvNet, not {type(model).__name__}; "
                    f"loop over tasks with adapt() and predict() instead")


def adapt_tasks(model: nn.Module, support_x: torch.Tensor, support_y: torch.Tensor, *,
                loss_fn: LossFn, inner_steps: int = 1, alpha: float = 0.01,
                params: Mapping[str, torch.Tensor] | None = None, first_order: bool = False,
                adapt_names: Sequence[str] | None = None) -> Params:
    """:func:`adapt` for a whole task batch at once (``support_x`` is ``(T, n, ...)``).

    Returns fast weights with a leading task axis. Because no task's loss depends on another
    task's copy of the weights, the gradient of the summed loss is every task's own gradient.
    """
    _check_inner(inner_steps, alpha)
    if support_x.dim() < 3:
        raise ValueError(f"support_x must be (tasks, examples, ...), got {tuple(support_x.shape)}")
    _check_xy(support_x, support_y, _n_out(model), _is_classifier(model, support_y), "support")
    base = _initial(model, params)
    names = _names(model, base, adapt_names)
    p = _expand(base, support_x.shape[0])
    return _adapt(lambda q, x: predict_tasks(model, q, x), p, names, support_x, support_y,
                  loss_fn, inner_steps, alpha, first_order)


# ------------------------------------------------------------------ the meta-objective


def _batch_fields(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    return batch.support_x, batch.support_y, batch.query_x, batch.query_y


def query_loss(model: nn.Module, batch: Any, *, loss_fn: LossFn, inner_steps: int, alpha: float,
               first_order: bool = False, adapt_names: Sequence[str] | None = None,
               inner_loss_fn: LossFn | None = None, batched: bool | None = None,
               params: Mapping[str, torch.Tensor] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The meta-objective on a task batch: per-task query losses after adaptation, ``(T,)``,
    and the query predictions ``(T, n_query, out)``.

    ``inner_loss_fn`` (default ``loss_fn``) is the support loss of the inner loop. ``batched``
    picks the layout (default: the task-batch layout where the network supports it).
    ``params`` are the initial weights (default: the model's own).
    """
    sx, sy, qx, qy = _batch_fields(batch)
    inner_loss_fn = loss_fn if inner_loss_fn is None else inner_loss_fn
    if batched is None:
        # Measured on a 2-core CPU: the grouped-convolution layout wins for the MLP, the
        # per-task loop for the ConvNet (benchmarks/RESULTS.md); on a GPU the batch wins.
        batched = supports_task_batch(model) and (
            isinstance(model, SinusoidMLP) or next(model.parameters()).is_cuda)
    if batched:
        fast = adapt_tasks(model, sx, sy, loss_fn=inner_loss_fn, inner_steps=inner_steps,
                           alpha=alpha, first_order=first_order, adapt_names=adapt_names,
                           params=params)
        out = predict_tasks(model, fast, qx)
        return loss_fn(out, qy), out
    losses, outs = [], []
    for t in range(sx.shape[0]):
        fast = adapt(model, sx[t], sy[t], loss_fn=inner_loss_fn, inner_steps=inner_steps,
                     alpha=alpha, first_order=first_order, adapt_names=adapt_names,
                     params=params)
        out = predict(model, fast, qx[t])
        losses.append(loss_fn(out, qy[t]))
        outs.append(out)
    return torch.stack(losses), torch.stack(outs)


def meta_gradient(model: nn.Module, batch: Any, *, loss_fn: LossFn, inner_steps: int = 1,
                  alpha: float = 0.01, first_order: bool = False,
                  adapt_names: Sequence[str] | None = None, inner_loss_fn: LossFn | None = None,
                  batched: bool | None = None, workers: int = 1) -> Params:
    r"""The meta-gradient :math:`\nabla_\theta \frac1T \sum_i \mathcal{L}_i(\theta'_i)` as a
    dict of tensors, without touching ``.grad``.

    With ``workers > 1`` the tasks are split among that many threads, each running one torch
    thread on its share (:func:`concurrent_meta_gradient`); otherwise one pass over the batch.
    """
    return concurrent_meta_gradient(
        model, batch, loss_fn=loss_fn, inner_steps=inner_steps, alpha=alpha,
        first_order=first_order, adapt_names=adapt_names, inner_loss_fn=inner_loss_fn,
        batched=batched, workers=workers)[0]


def concurrent_meta_gradient(model: nn.Module, batch: Any, *, loss_fn: LossFn,
                             inner_steps: int = 1, alpha: float = 0.01,
                             first_order: bool = False, adapt_names: Sequence[str] | None = None,
                             inner_loss_fn: LossFn | None = None, batched: bool | None = None,
                             workers: int = 2) -> tuple[Params, torch.Tensor, torch.Tensor]:
    r"""The meta-gradient of :func:`meta_gradient`, the per-task query losses ``(T,)`` and the
    query predictions, with the tasks shared among ``workers`` threads.

    Tasks are independent until the outer average, so thread ``w`` takes tasks ``w, w +
    workers, ...``, differentiates its share of :math:`\frac1T \sum_i \mathcal{L}_i` itself
    (inner loops, query losses and the backward pass) and the shares are added. Each thread
    runs its operations on one torch thread: on a small CPU the convolutions of one task are
    too small to keep two cores busy, two tasks at once are not. Equal to the one-pass
    gradient up to the order of floating-point additions.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    sx, sy, qx, qy = _batch_fields(batch)
    n_tasks = sx.shape[0]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    theta = dict(model.named_parameters())
    wanted = [theta[n] for n in names]

    def share(net: nn.Module, idx: list[int]) -> tuple[list[torch.Tensor | None], torch.Tensor,
                                                        torch.Tensor]:
        part = SimpleNamespace(support_x=sx[idx], support_y=sy[idx], query_x=qx[idx],
                               query_y=qy[idx])
        losses, out = query_loss(net, part, loss_fn=loss_fn, inner_steps=inner_steps,
                                 alpha=alpha, first_order=first_order, adapt_names=adapt_names,
                                 inner_loss_fn=inner_loss_fn, batched=batched, params=theta)
        grads = torch.autograd.grad(losses.sum() / n_tasks, wanted, allow_unused=True)
        return list(grads), losses.detach(), out.detach()

    workers = min(workers, n_tasks)
    if workers == 1:
        results = [share(model, list(range(n_tasks)))]
        order = list(range(n_tasks))
    else:
        # torch.func.functional_call swaps a module's tensors in place while it runs, so each
        # thread gets its own copy of the module (the weights used are theta's, not the copy's).
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
        grads[n] = torch.stack(parts).sum(0) if parts else torch.zeros_like(theta[n])
    inverse = torch.argsort(torch.tensor(order))
    losses = torch.cat([r[1] for r in results])[inverse]
    outs = torch.cat([r[2] for r in results])[inverse]
    return grads, losses, outs


# ------------------------------------------------------------------ training and evaluation


@dataclass
class MAMLConfig:
    """Everything that defines a MAML run; stored in the checkpoint's manifest entry."""

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
    order: str = "second"  # "second", "first" or "anil"
    inner_loss: str = "summed"  # "summed" (Finn's) or "mean" cross-entropy; "mse" for sinusoids
    hidden: tuple[int, ...] = (40, 40)
    test_queries: int = 15
    anneal_from: int | None = None  # see cosine_meta_lr; None keeps meta_lr constant (Finn's)

    def __post_init__(self) -> None:
        if self.order not in ("second", "first", "anil"):
            raise ValueError(f"order must be 'second', 'first' or 'anil', got {self.order!r}")
        if self.task not in ("sinusoid", "omniglot"):
            raise ValueError(f"task must be 'sinusoid' or 'omniglot', got {self.task!r}")
        _check_inner(self.inner_steps, self.alpha)
        _check_anneal(self.anneal_from, self.iterations)
        self.hidden = tuple(self.hidden)


def build_model(config: MAMLConfig) -> nn.Module:
    """The network a config describes (SinusoidMLP or Finn's ConvNet)."""
    return SinusoidMLP(config.hidden) if config.task == "sinusoid" else ConvNet(config.n_way)


def _losses(config: MAMLConfig, k_shot: int | None = None) -> tuple[LossFn, LossFn]:
    """(inner loss, query loss) for a config."""
    if config.task == "sinusoid":
        return mse_loss, mse_loss
    inner = summed_cross_entropy(k_shot or config.k_shot) if config.inner_loss == "summed" else cross_entropy
    return inner, cross_entropy


def _adapt_names(model: nn.Module, config: MAMLConfig) -> list[str] | None:
    return head_parameter_names(model) if config.order == "anil" else None


def _check_anneal(anneal_from: int | None, iterations: int) -> None:
    if anneal_from is None:
        return
    if (isinstance(anneal_from, bool) or not isinstance(anneal_from, int)
            or not 0 <= anneal_from <= iterations):
        raise ValueError(f"anneal_from must be None or an integer in [0, iterations={iterations}], "
                         f"got {anneal_from!r}")


def cosine_meta_lr(iteration: int, meta_lr: float, anneal_from: int | None,
                   iterations: int) -> float:
    """The outer learning rate for the step that starts at ``iteration``.

    Constant ``meta_lr`` before ``anneal_from`` (and always when it is ``None``, as in Finn et
    al. 2017); from there a half cosine down to 0 at ``iterations``,
    ``meta_lr * (1 + cos(pi * (iteration - anneal_from) / (iterations - anneal_from))) / 2``:
    the meta-optimiser annealing of Antoniou, Edwards & Storkey 2019 ("How to train your
    MAML"), applied to the last stretch of a run. A function of the iteration only, so a
    resumed run follows the same schedule as an uninterrupted one.
    """
    _check_anneal(anneal_from, iterations)
    if anneal_from is None or iteration < anneal_from:
        return meta_lr
    if iteration >= iterations:
        return 0.0
    frac = (iteration - anneal_from) / (iterations - anneal_from)
    return meta_lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def meta_train(model: nn.Module, sample: Callable[[np.random.Generator], Any], *,
               loss_fn: LossFn, iterations: int, inner_steps: int = 1, alpha: float = 0.01,
               meta_lr: float = 1e-3, first_order: bool = False,
               adapt_names: Sequence[str] | None = None, inner_loss_fn: LossFn | None = None,
               metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
               rng: np.random.Generator | None = None, state: dict[str, Any] | None = None,
               save: Callable[[dict[str, Any]], None] | None = None, save_every_s: float = 120.0,
               log_every: int = 10, progress: bool = True,
               batched: bool | None = None,
               time_limit_s: float | None = None, workers: int = 1,
               anneal_from: int | None = None) -> list[dict[str, float]]:
    """The outer loop: Adam on the mean query loss after adaptation, for ``iterations`` steps.

    ``sample(rng)`` returns a task batch (fields ``support_x, support_y, query_x, query_y``
    with a leading task axis). Returns the history, one dict per ``log_every`` iterations:
    ``iteration``, ``meta_loss`` and, when ``metric`` is given (e.g. :func:`accuracy`), the
    query metric after adaptation. ``state`` (from an earlier ``save``) resumes a run: the
    model, optimiser, random stream and history continue exactly where they stopped.
    ``save(state)`` is called every ``save_every_s`` seconds and at the end; the state's
    ``sessions`` list says which machine trained which iterations, in how many seconds. ``batched``
    picks the layout as in :func:`query_loss`. Each task batch is moved to the model's device.
    With ``time_limit_s`` the loop stops after that many seconds of this call, saves the
    iteration it reached, and returns: a later call with the saved state goes on from there.
    ``workers > 1`` shares each batch's tasks among threads (:func:`concurrent_meta_gradient`).
    ``anneal_from`` cosine-anneals the outer rate to 0 over the last iterations
    (:func:`cosine_meta_lr`).
    """
    from tqdm.auto import tqdm

    _check_inner(inner_steps, alpha)
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    _check_anneal(anneal_from, iterations)
    if time_limit_s is not None and not (time_limit_s > 0 and math.isfinite(time_limit_s)):
        raise ValueError(f"time_limit_s must be positive and finite, got {time_limit_s}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
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
        history, start, elapsed = list(state["history"]), state["iteration"], state["elapsed_s"]
        sessions = [dict(r) for r in state.get("sessions", [])]
    session_wall = begin_session(sessions, start, elapsed)

    def snapshot(it: int) -> dict[str, Any]:
        now = time.monotonic() - t0
        sessions[-1].update(to_iteration=it, wall_time_s=round(session_wall + now, 1))
        return {"model": model.state_dict(), "optimizer": opt.state_dict(),
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "history": history, "iteration": it, "elapsed_s": elapsed + now,
                "sessions": sessions}

    saver = Autosaver(save_every_s)
    t0 = time.monotonic()
    it = start
    bar = tqdm(range(start, iterations), initial=start, total=iterations, disable=not progress,
               desc="meta-train", mininterval=1.0)
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
                model, batch, loss_fn=loss_fn, inner_steps=inner_steps, alpha=alpha,
                first_order=first_order, adapt_names=adapt_names, inner_loss_fn=inner_loss_fn,
                batched=batched, workers=workers)
            for n, p in model.named_parameters():
                p.grad = grads.get(n)
        else:
            losses, out = query_loss(model, batch, loss_fn=loss_fn, inner_steps=inner_steps,
                                     alpha=alpha, first_order=first_order,
                                     adapt_names=adapt_names, inner_loss_fn=inner_loss_fn,
                                     batched=batched)
            losses.mean().backward()
        opt.step()
        if (it + 1) % log_every == 0 or it == start:
            row = {"iteration": it + 1, "meta_loss": float(losses.detach().mean())}
            if metric is not None:
                row["query_metric"] = float(metric(out.detach(), batch.query_y).mean())
            history.append(row)
            bar.set_postfix(loss=f"{row['meta_loss']:.3f}", refresh=False)
        if save is not None and saver.due():
            save(snapshot(it + 1))
    bar.close()
    if reached < iterations:
        print(f"time limit of {time_limit_s:.0f} s reached at iteration {reached} of {iterations}")
    if save is not None:
        save(snapshot(reached))
    return history


def _to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` (a dataclass or named tuple of tensors and arrays) with its tensors on
    ``device``; the batch itself when they are there already."""
    fields = _batch_fields(batch)
    if all(t.device == device for t in fields):
        return batch
    moved = dict(zip(("support_x", "support_y", "query_x", "query_y"),
                     (t.to(device, non_blocking=True) for t in fields)))
    if hasattr(batch, "_replace"):
        return batch._replace(**moved)
    return dataclasses.replace(batch, **moved)


def evaluate(model: nn.Module, tasks: Iterable[Any], *, loss_fn: LossFn, inner_steps: int,
             alpha: float, metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
             inner_loss_fn: LossFn | None = None, adapt_names: Sequence[str] | None = None,
             progress: bool = False) -> np.ndarray:
    """Adapt to each task batch's support sets and score the query sets: one number per task.

    The inner loop runs without a second-order graph (evaluation needs the fast weights'
    values only); ``metric`` is e.g. :func:`accuracy` or :func:`mse_loss`.
    """
    from tqdm.auto import tqdm

    _check_inner(inner_steps, alpha)
    scores = []
    for batch in tqdm(tasks, disable=not progress, desc="evaluate", mininterval=1.0):
        _, out = query_loss(model, batch, loss_fn=loss_fn, inner_steps=inner_steps, alpha=alpha,
                            first_order=True, adapt_names=adapt_names, inner_loss_fn=inner_loss_fn)
        scores.append(metric(out.detach(), batch.query_y).reshape(-1).numpy())
    return np.concatenate(scores)


def adaptation_curve(model: nn.Module, batch: Any, *, loss_fn: LossFn, alpha: float,
                     max_steps: int,
                     metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                     inner_loss_fn: LossFn | None = None,
                     adapt_names: Sequence[str] | None = None,
                     batched: bool | None = None) -> np.ndarray:
    """The query metric after 0, 1, ..., ``max_steps`` inner steps: ``(max_steps + 1, T)``.

    One pass of ``max_steps`` steps, scoring the query set after each (``metric`` defaults to
    ``loss_fn``); the same numbers as calling :func:`evaluate` once per step count.
    """
    _check_inner(max_steps, alpha)
    metric = loss_fn if metric is None else metric
    inner_loss_fn = loss_fn if inner_loss_fn is None else inner_loss_fn
    sx, sy, qx, qy = _batch_fields(batch)
    if batched is None:
        batched = supports_task_batch(model) and (
            isinstance(model, SinusoidMLP) or next(model.parameters()).is_cuda)
    rows = []
    if batched:
        fast = _expand(dict(model.named_parameters()), sx.shape[0])
        for step in range(max_steps + 1):
            if step:
                fast = _adapt(lambda q, x: predict_tasks(model, q, x), fast,
                              _names(model, fast, adapt_names), sx, sy, inner_loss_fn, 1, alpha,
                              True)
                fast = {n: p.detach() for n, p in fast.items()}
            with torch.no_grad():
                rows.append(metric(predict_tasks(model, fast, qx), qy).reshape(-1).numpy())
        return np.stack(rows)
    for t in range(sx.shape[0]):
        fast = dict(model.named_parameters())
        col = []
        for step in range(max_steps + 1):
            if step:
                fast = {n: p.detach() for n, p in adapt(
                    model, sx[t], sy[t], loss_fn=inner_loss_fn, inner_steps=1, alpha=alpha,
                    params=fast, first_order=True, adapt_names=adapt_names).items()}
            with torch.no_grad():
                col.append(float(metric(predict(model, fast, qx[t]), qy[t])))
        rows.append(col)
    return np.array(rows).T


# ------------------------------------------------------------------ the book's recipes


CONFIGS: dict[str, MAMLConfig] = {
    # Finn et al. 2017, section 5.1 and appendix A: K = 10, alpha = 0.01, beta = 1e-3, 25 tasks.
    "maml-sinusoid": MAMLConfig(task="sinusoid", k_shot=10, q_queries=10, inner_steps=1,
                                test_inner_steps=10, alpha=0.01, meta_lr=1e-3, meta_batch=25,
                                iterations=70000, inner_loss="mse", split="", test_split=""),
    # Finn et al.'s baseline: one network regressing all tasks at once (no inner loop in
    # training), fine-tuned by gradient descent at test time.
    "pretrained-sinusoid": MAMLConfig(task="sinusoid", k_shot=10, q_queries=10, inner_steps=0,
                                      test_inner_steps=10, alpha=0.01, meta_lr=1e-3,
                                      meta_batch=25, iterations=20000, inner_loss="mse",
                                      split="", test_split=""),
    # Appendix A.1: 5-way, 1 step with alpha = 0.4 in training, 3 at test, 32 tasks.
    # Finn's data pipeline drew K query examples per class in training (here: 1).
    "maml-omniglot-5w1s": MAMLConfig(task="omniglot", n_way=5, k_shot=1, q_queries=1,
                                     inner_steps=1, test_inner_steps=3, alpha=0.4, meta_batch=32),
    # 20-way: 5 steps with alpha = 0.1 in training and at test, 16 tasks. Finn trained
    # 60,000 iterations at a constant meta-rate; this recipe trains 28,000 and cosine-anneals
    # the rate over the last 4,000 (Antoniou et al. 2019), a budget a CPU can finish.
    "maml-omniglot-20w1s": MAMLConfig(task="omniglot", n_way=20, k_shot=1, q_queries=1,
                                      inner_steps=5, test_inner_steps=5, alpha=0.1, meta_batch=16,
                                      iterations=28000, anneal_from=24000),
    # Finn et al.'s first-order approximation (FOMAML), otherwise as 5-way MAML except for
    # alpha: at 0.4 (summed loss) the inner step is far past the support loss's curvature
    # (alpha * lambda_max of the head ~ 5.6 at initialisation, where a plain step is stable
    # below 2); dropping the (I - alpha H) factor then flips the meta-gradient (cosine -0.3
    # with the exact one at initialisation, -0.9 on the head) and training stalled near 60%
    # query accuracy. At 0.1 the cosine is +0.3 and the run trains like second-order MAML.
    "fomaml-omniglot-5w1s": MAMLConfig(task="omniglot", n_way=5, k_shot=1, q_queries=1,
                                       inner_steps=1, test_inner_steps=3, alpha=0.1, meta_batch=32,
                                       order="first"),
    # Raghu et al. 2020: the same as 5-way MAML, adapting the head only; a CPU budget of
    # 18,000 iterations with the outer rate annealed over the last 3,000, as for 20-way.
    "anil-omniglot-5w1s": MAMLConfig(task="omniglot", n_way=5, k_shot=1, q_queries=1,
                                     inner_steps=1, test_inner_steps=3, alpha=0.4, meta_batch=32,
                                     order="anil", iterations=18000, anneal_from=15000),
}


def _sampler(config: MAMLConfig, split: str | None = None, *, n_way: int | None = None,
             k_shot: int | None = None, q_queries: int | None = None, n_tasks: int | None = None,
             ) -> Callable[[np.random.Generator], Any]:
    n_tasks = n_tasks or config.meta_batch
    k = k_shot or config.k_shot
    if config.task == "sinusoid":
        q = q_queries or config.q_queries
        return lambda rng: D.sample_sinusoid_tasks(n_tasks, k, q, seed=rng)
    pool = D.omniglot_classes(split or config.split)
    n, q = n_way or config.n_way, q_queries or config.q_queries
    D._check_episode_args(pool, n, k, q)

    def sample(rng: np.random.Generator) -> D.Episode:
        parts = [D._episode_arrays(pool, n, k, q, rng) for _ in range(n_tasks)]
        stack = lambda i: torch.from_numpy(np.stack([p[i] for p in parts]))  # noqa: E731
        return D.Episode(stack(0), stack(1), stack(2), stack(3), np.stack([p[4] for p in parts]))

    return sample


def load_model(name: str) -> tuple[nn.Module, MAMLConfig, dict[str, Any]]:
    """A trained checkpoint as ``(model, config, manifest entry)``, its sha256 checked."""
    state, entry = load_checkpoint(name)
    config = MAMLConfig(**entry["config"])
    model = build_model(config)
    model.load_state_dict(state)
    return model, config, entry


def train_sinusoid(iterations: int, *, k_shot: int = 10, inner_steps: int = 1, alpha: float = 0.01,
                   meta_lr: float = 1e-3, meta_batch: int = 25, seed: int = 0,
                   first_order: bool = False, progress: bool = True
                   ) -> tuple[SinusoidMLP, list[dict[str, float]]]:
    """Meta-train Finn et al.'s sinusoid regressor for ``iterations`` steps, in memory.

    A few hundred iterations take seconds on a CPU and already learn a useful initialisation;
    the ``maml-sinusoid`` checkpoint is the full 70,000-step run.
    """
    torch.manual_seed(seed)
    model = SinusoidMLP()
    history = meta_train(model, lambda rng: D.sample_sinusoid_tasks(meta_batch, k_shot, k_shot, seed=rng),
                         loss_fn=mse_loss, iterations=iterations, inner_steps=inner_steps,
                         alpha=alpha, meta_lr=meta_lr, first_order=first_order,
                         rng=np.random.default_rng(seed), progress=progress)
    return model, history


def compact_history(history: list[dict[str, float]], max_rows: int = 200) -> list[dict[str, float]]:
    """At most ``max_rows`` rows: consecutive rows averaged in equal bins (the last
    iteration of each bin kept), small enough for a manifest entry and a plot."""
    if len(history) <= max_rows:
        return [dict(r) for r in history]
    edges = np.linspace(0, len(history), max_rows + 1).astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        rows = history[a:b]
        row = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "iteration"}
        row["iteration"] = rows[-1]["iteration"]
        out.append(row)
    return out


def tune_alpha(model: nn.Module, batch: Any, alphas: Sequence[float], *, loss_fn: LossFn,
               inner_steps: int, metric: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
               | None = None, higher_is_better: bool = False) -> tuple[float, np.ndarray]:
    """The inner rate from ``alphas`` that scores best after ``inner_steps`` steps on
    ``batch`` (validation tasks), and every alpha's mean score. Finn et al. tune the
    fine-tuning step size of their pretrained baseline this way."""
    if len(alphas) == 0:
        raise ValueError("alphas must hold at least one value")
    scores = np.array([adaptation_curve(model, batch, loss_fn=loss_fn, alpha=a,
                                        max_steps=inner_steps, metric=metric)[-1].mean()
                       for a in alphas])
    # A rate that diverges (NaN or inf) is never the best one.
    finite = np.where(np.isfinite(scores), scores, -np.inf if higher_is_better else np.inf)
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


def _state_from_checkpoint(name: str, model: nn.Module, config: MAMLConfig,
                           seed: int) -> dict[str, Any] | None:
    """A resumable state rebuilt from the committed checkpoint, for a fresh clone.

    ``runs/`` (with the optimiser's moments and the random streams) is not committed, so a
    later session on another machine resumes from the checkpoint's weights, iteration count,
    wall time and compact history, with a fresh Adam state and a new task stream (seeded by
    seed and iteration, so the tasks already seen are not drawn again in the same order).
    """
    if name not in manifest():
        return None
    weights, entry = load_checkpoint(name)
    model.load_state_dict(weights)
    it = int(entry["iterations"])
    print(f"no saved state for {name} in runs/: resuming from the committed checkpoint at "
          f"iteration {it} (fresh optimiser state)")
    return {"model": weights,
            "optimizer": torch.optim.Adam(model.parameters(), lr=config.meta_lr).state_dict(),
            "rng": np.random.default_rng([seed, it]).bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "history": list(entry.get("metrics", {}).get("history", [])),
            "iteration": it, "elapsed_s": float(entry["wall_time_s"]),
            "sessions": list(entry.get("metrics", {}).get("sessions", [
                {"machine": entry["machine"], "from_iteration": 0, "to_iteration": it,
                 "wall_time_s": float(entry["wall_time_s"])}]))}


def recipe_config(name: str, iterations: int | None = None) -> MAMLConfig:
    """A copy of the book's recipe ``name`` (:data:`CONFIGS`), ``iterations`` long if given.

    A shorter or longer run keeps the recipe's anneal length: the outer rate is annealed over
    the same number of final iterations (all of them when the run is shorter than that).
    """
    if name not in CONFIGS:
        raise ValueError(f"name must be one of {sorted(CONFIGS)}, got {name!r}")
    config = MAMLConfig(**asdict(CONFIGS[name]))
    if iterations is None:
        return config
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"iterations must be an integer >= 0, got {iterations!r}")
    if config.anneal_from is not None:
        tail = config.iterations - config.anneal_from
        config.anneal_from = max(0, iterations - tail)
    config.iterations = iterations
    return config


def _train_recipe(name: str) -> Callable[[argparse.Namespace], None]:
    def train(args: argparse.Namespace) -> None:
        config = recipe_config(name, args.iterations)
        if config.task == "sinusoid" and args.threads is None:
            torch.set_num_threads(1)  # a tiny network: a second thread only adds overhead
        torch.manual_seed(args.seed)
        if str(args.device).startswith("cuda"):
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels
        model = build_model(config).to(args.device)
        state = load_state(name) if args.resume else None
        if args.resume and state is None:
            state = _state_from_checkpoint(name, model, config, args.seed)
        if args.resume and state is None:
            print(f"no saved state for {name}: starting from scratch")
        if state is not None:
            print(f"resuming {name} at iteration {state['iteration']}")
            if "sessions" not in state and name in manifest():
                # a state saved before sessions were kept: the manifest knows its machine
                state["sessions"] = [{"machine": manifest()[name]["machine"],
                                      "from_iteration": 0, "to_iteration": state["iteration"],
                                      "wall_time_s": round(state["elapsed_s"], 1)}]
        inner, outer = _losses(config)
        metric = mse_loss if config.task == "sinusoid" else accuracy

        def save(s: dict[str, Any]) -> None:
            s["config"] = asdict(config)
            save_state(name, s)
            save_checkpoint(name, s["model"], config=asdict(config), command=_command(args),
                            seed=args.seed, iterations=s["iteration"],
                            wall_time_s=s["elapsed_s"],
                            metrics={"history": compact_history(s["history"]),
                                     "sessions": s["sessions"]})

        meta_train(model, _sampler(config), loss_fn=outer, inner_loss_fn=inner,
                   iterations=config.iterations, inner_steps=config.inner_steps,
                   alpha=config.alpha, meta_lr=config.meta_lr,
                   first_order=config.order == "first",
                   adapt_names=_adapt_names(model, config), metric=metric,
                   rng=np.random.default_rng(args.seed), state=state, save=save,
                   save_every_s=args.save_every,
                   time_limit_s=None if args.max_minutes is None else 60.0 * args.max_minutes,
                   workers=args.workers, anneal_from=config.anneal_from,
                   # With one query per class the grouped-convolution layout was the faster
                   # on the CPU (benchmarks/RESULTS.md); the MLP always takes it. Shared among
                   # threads, the per-task loop was the faster (both Omniglot recipes).
                   batched=supports_task_batch(model) if args.workers == 1 else None)
    return train


def _evaluate_recipe(name: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    def run(args: argparse.Namespace) -> dict[str, Any]:
        model, config, _ = load_model(name)
        torch.manual_seed(args.seed)
        steps = config.test_inner_steps if args.steps is None else args.steps
        alpha = config.alpha if args.alpha is None else args.alpha
        k = args.shots or (5 if config.task == "sinusoid" else config.k_shot)
        n_way = args.ways or config.n_way
        if config.task == "omniglot" and n_way != config.n_way:
            raise ValueError(f"--ways must be {config.n_way} for {name} (its head has "
                             f"{config.n_way} outputs), got {n_way}")
        if config.task == "sinusoid":
            sample = _sampler(config, k_shot=k, q_queries=100, n_tasks=50)
        else:
            sample = _sampler(config, args.split or config.test_split, k_shot=k, n_tasks=50,
                              n_way=n_way, q_queries=min(config.test_queries, 20 - k))
        rng = np.random.default_rng(args.seed)
        n_batches = math.ceil(args.tasks / 50)
        inner, outer = _losses(config, k)
        metric = mse_loss if config.task == "sinusoid" else accuracy
        scores = evaluate(model, (sample(rng) for _ in range(n_batches)), loss_fn=outer,
                          inner_loss_fn=inner, inner_steps=steps, alpha=alpha, metric=metric,
                          adapt_names=_adapt_names(model, config), progress=True)[:args.tasks]
        if config.task == "omniglot":
            scores = scores * 100
        mean, ci = mean_ci95(scores)
        settings = {"k_shot": k, "inner_steps": steps, "alpha": alpha, "seed": args.seed}
        if config.task == "omniglot":
            settings.update(split=args.split or config.test_split, n_way=n_way)
        return {"metric": "mse" if config.task == "sinusoid" else "accuracy", "mean": mean,
                "ci95": ci, "tasks": int(len(scores)), "settings": settings}
    return run


def _recipes() -> dict[str, Any]:
    from .__main__ import Recipe

    summaries = {
        "maml-sinusoid": "MAML on sinusoid regression (Finn et al. 2017, section 5.1)",
        "pretrained-sinusoid": "baseline: one regressor pretrained on all sinusoid tasks",
        "maml-omniglot-5w1s": "MAML, Omniglot 5-way 1-shot, Finn's split with rotations",
        "maml-omniglot-20w1s": "MAML, Omniglot 20-way 1-shot, Finn's split with rotations",
        "anil-omniglot-5w1s": "ANIL (head-only inner loop), Omniglot 5-way 1-shot",
        "fomaml-omniglot-5w1s": "first-order MAML, Omniglot 5-way 1-shot",
    }
    return {n: Recipe(n, summaries[n], _train_recipe(n), _evaluate_recipe(n)) for n in CONFIGS}


RECIPES = _recipes()
