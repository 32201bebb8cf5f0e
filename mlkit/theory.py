r"""Chapter 5: the mathematics of the two objectives, computed so that it can
be checked.

**MAML** (Finn, Abbeel & Levine 2017). With the inner update
:math:`\theta_{j+1} = \theta_j - \alpha \nabla \mathcal{L}^S_i(\theta_j)`,
:math:`\theta_0 = \theta`, the chain rule gives the meta-gradient of the query
loss after ``k`` inner steps as

.. math::  \nabla_\theta \mathcal{L}^Q_i(\theta_k)
           = \Big[\prod_{j=0}^{k-1}
             \big(I - \alpha \nabla^2 \mathcal{L}^S_i(\theta_j)\big)\Big]
             \nabla \mathcal{L}^Q_i(\theta_k)

(the factors ordered :math:`j = 0, 1, \dots, k-1` from the left; each is
symmetric).

* :func:`hvp_meta_gradient` evaluates the product from the right with one
  Hessian-vector product per step, never forming a Hessian;
  :func:`explicit_meta_gradient` forms the Hessians as matrices (tiny networks
  only) so that the formula itself is checked;
  :func:`meta_gradients_three_ways` sets both beside autograd through the inner
  loop (:func:`mlkit.maml.meta_gradient`) and the first-order approximation,
  and :func:`first_order_drift` follows their agreement through a meta-training
  run.
* Linear regression with squared loss (:func:`sample_linear_tasks`): the inner
  loop is an affine map :math:`\theta_k = M_i \theta + c_i`, so the MAML
  objective is quadratic in :math:`\theta` and :func:`linear_maml_optimum`
  solves it in closed form; :func:`train_linear_maml` runs
  :func:`mlkit.maml.meta_train` on the same tasks.
* :func:`meta_gradient_cost` measures time and autograd memory of second-
  against first-order MAML as the inner loop grows
  (:func:`autograd_peak_bytes`).

**Contrastive loss.** For embeddings :math:`a, b` at distance
:math:`d = \lVert a - b\rVert`,
:math:`\partial d / \partial a = (a - b)/d = u`. :func:`contrastive_gradients`
gives the gradients of the source's form and of Hadsell, Chopra & LeCun
(2006)'s form in closed form; :func:`contrastive_toy` moves free 2-D points of
a few classes by gradient descent on the loss, and :func:`class_spacing`
measures how far apart the classes end up.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from . import data
from . import maml
from .nets import SinusoidMLP
from .siamese import LOSS_FORMS, contrastive_loss, euclidean_distance

__all__ = [
    "flat",
    "gradient_agreement",
    "hvp_meta_gradient",
    "explicit_meta_gradient",
    "meta_gradients_three_ways",
    "first_order_drift",
    "to_double",
    "LinearTasks",
    "sample_linear_tasks",
    "linear_model",
    "inner_affine_map",
    "linear_maml_objective",
    "linear_maml_gradient",
    "linear_maml_optimum",
    "linear_fomaml_fixed_point",
    "train_linear_maml",
    "autograd_peak_bytes",
    "meta_gradient_cost",
    "contrastive_gradients",
    "contrastive_toy",
    "class_spacing",
    "toy_points",
    "both_sides",
]

Params = dict[str, torch.Tensor]


# -----------------------------------------------------------------------------
# argument checks
# -----------------------------------------------------------------------------


def _check_int(name: str, value: Any, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"{name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _check_positive(name: str, value: Any) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not (math.isfinite(value) and value > 0)
    ):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def _check_form(form: str) -> str:
    if form not in LOSS_FORMS:
        raise ValueError(
            f"form must be one of {list(LOSS_FORMS)}, got {form!r}"
        )
    return form


def _fmt(v: Any) -> str:
    a = np.asarray(
        v.detach() if hasattr(v, "detach") else v, dtype=np.float64
    ).ravel()
    # rounding-level noise around zero would print differently from machine to
    # machine
    parts = ["0" if abs(x) < 1e-9 else f"{x:.5g}" for x in a[:3]]
    body = ", ".join(parts) + (", ..." if a.size > 3 else "")
    return body if a.size == 1 else f"[{body}]"


def both_sides(
    name: str,
    left: Any,
    right: Any,
    *,
    rtol: float = 1e-8,
    atol: float = 1e-10,
) -> bool:
    """Print the two sides of an identity (scalars, or the first entries of
    vectors, to 5 significant digits) and whether they agree within
    ``rtol``/``atol``; return that.

    The chapter calls it once per formula: ``left`` computed one way, ``right``
    by the formula.
    """
    a = np.asarray(
        left.detach() if hasattr(left, "detach") else left, dtype=np.float64
    )
    b = np.asarray(
        right.detach() if hasattr(right, "detach") else right, dtype=np.float64
    )
    if a.shape != b.shape:
        raise ValueError(
            f"left and right must have the same shape, got {a.shape} and "
            f"{b.shape}"
        )
    ok = bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=True))
    print(f"{name}\n    left  {_fmt(a)}\n    right {_fmt(b)}\n    agree: {ok}")
    return ok


# -----------------------------------------------------------------------------
# 5.1 The MAML meta-gradient three ways
# -----------------------------------------------------------------------------


def flat(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """All tensors of a parameter dict (in its order) as one flat vector."""
    if (
        not isinstance(params, Mapping)
        or not params
        or not all(isinstance(v, torch.Tensor) for v in params.values())
    ):
        raise ValueError(
            f"params must be a non-empty mapping of tensors, got "
            f"{type(params).__name__}"
        )
    return torch.cat([p.reshape(-1) for p in params.values()])


def gradient_agreement(
    approx: torch.Tensor | Mapping[str, torch.Tensor],
    exact: torch.Tensor | Mapping[str, torch.Tensor],
) -> dict[str, float]:
    r"""How close an approximate gradient is to an exact one: the cosine of the
    angle between them,
    :math:`\langle a, e\rangle / (\lVert a\rVert \lVert e\rVert)`, and the norm
    ratio :math:`\lVert a\rVert / \lVert e\rVert` (1 and 1 when they are
    equal)."""
    for name, v in (("approx", approx), ("exact", exact)):
        if not isinstance(v, (torch.Tensor, Mapping)):
            raise ValueError(
                f"{name} must be a tensor or a dict of tensors, "
                f"got {type(v).__name__}"
            )
    a = flat(approx) if isinstance(approx, Mapping) else approx.reshape(-1)
    e = flat(exact) if isinstance(exact, Mapping) else exact.reshape(-1)
    if not (a.is_floating_point() and e.is_floating_point()):
        raise ValueError(
            f"approx and exact must be floating-point, got "
            f"{a.dtype} and {e.dtype}"
        )
    if not (bool(torch.isfinite(a).all()) and bool(torch.isfinite(e).all())):
        raise ValueError("approx and exact must be finite (no NaN or inf)")
    if a.shape != e.shape:
        raise ValueError(
            f"approx and exact must have the same size, got {a.numel()} and "
            f"{e.numel()}"
        )
    na, ne = float(a.norm()), float(e.norm())
    if ne == 0:
        raise ValueError("exact must not be the zero vector")
    cos = float(a @ e) / (na * ne) if na > 0 else 0.0
    return {"cosine": cos, "norm_ratio": na / ne}


def _task(batch: Any, t: int) -> tuple[torch.Tensor, ...]:
    return (
        batch.support_x[t],
        batch.support_y[t],
        batch.query_x[t],
        batch.query_y[t],
    )


def _trajectory(
    model: nn.Module,
    sx: torch.Tensor,
    sy: torch.Tensor,
    inner_loss_fn: maml.LossFn,
    inner_steps: int,
    alpha: float,
) -> list[Params]:
    """theta_0 .. theta_k of the inner loop, as detached values."""
    thetas = [{n: p.detach() for n, p in model.named_parameters()}]
    for _ in range(inner_steps):
        p = {n: v.clone().requires_grad_() for n, v in thetas[-1].items()}
        loss = inner_loss_fn(maml.predict(model, p, sx), sy)
        grads = torch.autograd.grad(loss, list(p.values()))
        thetas.append(
            {
                n: (v - alpha * g).detach()
                for (n, v), g in zip(p.items(), grads)
            }
        )
    return thetas


def _check_meta_args(batch: Any, inner_steps: int, alpha: float) -> None:
    _check_int("inner_steps", inner_steps, 0)
    _check_positive("alpha", alpha)
    for f in ("support_x", "support_y", "query_x", "query_y"):
        if not hasattr(batch, f):
            raise ValueError(
                f"batch must have the field {f} (a task batch with a leading "
                "task axis)"
            )


def hvp_meta_gradient(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: maml.LossFn,
    inner_steps: int = 1,
    alpha: float = 0.01,
    inner_loss_fn: maml.LossFn | None = None,
) -> Params:
    r"""The second-order meta-gradient
    :math:`\frac1T \sum_i \prod_j (I - \alpha H_{ij})\, g_i` by explicit
    Hessian-vector products, as a dict like :func:`mlkit.maml.meta_gradient`.

    For each task the inner loop runs without a graph,
    :math:`g = \nabla \mathcal{L}^Q(\theta_k)` is taken at the fast weights,
    and then for :math:`j = k-1, \dots, 0` the vector is updated to
    :math:`g - \alpha \nabla^2 \mathcal{L}^S(\theta_j)\, g`: one Hessian-vector
    product (the gradient of
    :math:`\langle \nabla \mathcal{L}^S(\theta_j), g\rangle`) per inner step.
    Equal to autograd through the inner loop up to rounding
    (``tests/test_theory.py``).
    """
    _check_meta_args(batch, inner_steps, alpha)
    inner_loss_fn = loss_fn if inner_loss_fn is None else inner_loss_fn
    names = [n for n, _ in model.named_parameters()]
    total = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    n_tasks = batch.support_x.shape[0]
    for t in range(n_tasks):
        sx, sy, qx, qy = _task(batch, t)
        thetas = _trajectory(model, sx, sy, inner_loss_fn, inner_steps, alpha)
        fast = {n: v.clone().requires_grad_() for n, v in thetas[-1].items()}
        g = list(
            torch.autograd.grad(
                loss_fn(maml.predict(model, fast, qx), qy), list(fast.values())
            )
        )
        for theta_j in reversed(thetas[:-1]):
            p = {n: v.clone().requires_grad_() for n, v in theta_j.items()}
            grads = torch.autograd.grad(
                inner_loss_fn(maml.predict(model, p, sx), sy),
                list(p.values()),
                create_graph=True,
            )
            hv = torch.autograd.grad(grads, list(p.values()), grad_outputs=g)
            g = [gi - alpha * hi for gi, hi in zip(g, hv)]
        for n, gi in zip(names, g):
            total[n] += gi / n_tasks
    return total


def explicit_meta_gradient(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: maml.LossFn,
    inner_steps: int = 1,
    alpha: float = 0.01,
    inner_loss_fn: maml.LossFn | None = None,
    max_params: int = 2000,
) -> torch.Tensor:
    r"""The k-step meta-gradient formula evaluated literally, as a flat vector:
    each Hessian :math:`H_{ij} = \nabla^2 \mathcal{L}^S_i(\theta_j)` is formed
    as a matrix and :math:`\frac1T\sum_i (I - \alpha H_{i0}) \cdots (I - \alpha
    H_{i,k-1})\, \nabla\mathcal{L}^Q_i(\theta_k)` is multiplied out. Quadratic
    memory in the number of parameters: tiny networks only (at most
    ``max_params``)."""
    _check_meta_args(batch, inner_steps, alpha)
    inner_loss_fn = loss_fn if inner_loss_fn is None else inner_loss_fn
    shapes = {n: p.shape for n, p in model.named_parameters()}
    n_par = sum(int(np.prod(s)) for s in shapes.values())
    if n_par > max_params:
        raise ValueError(
            f"model must have at most max_params={max_params} parameters for "
            f"explicit Hessians, got {n_par}"
        )

    def unflat(v: torch.Tensor) -> Params:
        out, i = {}, 0
        for n, s in shapes.items():
            k = int(np.prod(s))
            out[n] = v[i : i + k].reshape(s)
            i += k
        return out

    total = None
    for t in range(batch.support_x.shape[0]):
        sx, sy, qx, qy = _task(batch, t)
        thetas = _trajectory(model, sx, sy, inner_loss_fn, inner_steps, alpha)
        vecs = [flat(th) for th in thetas]
        g = torch.func.grad(
            lambda v: loss_fn(maml.predict(model, unflat(v), qx), qy)
        )(vecs[-1])
        jac = torch.eye(n_par, dtype=g.dtype)
        for v in vecs[:-1]:
            h = torch.func.hessian(
                lambda w: inner_loss_fn(maml.predict(model, unflat(w), sx), sy)
            )(v)
            jac = jac @ (torch.eye(n_par, dtype=g.dtype) - alpha * h)
        contrib = jac @ g
        total = contrib if total is None else total + contrib
    return total / batch.support_x.shape[0]


def meta_gradients_three_ways(
    model: nn.Module,
    batch: Any,
    *,
    loss_fn: maml.LossFn,
    inner_steps: int = 1,
    alpha: float = 0.01,
    inner_loss_fn: maml.LossFn | None = None,
) -> dict[str, torch.Tensor]:
    """Flat meta-gradients of one task batch: ``"autograd"`` (differentiating
    through the inner loop, :func:`mlkit.maml.meta_gradient`), ``"hvp"``
    (:func:`hvp_meta_gradient`) and ``"first_order"`` (FOMAML: the query
    gradient at the fast weights)."""
    kw = dict(
        loss_fn=loss_fn,
        inner_steps=inner_steps,
        alpha=alpha,
        inner_loss_fn=inner_loss_fn,
    )
    return {
        "autograd": flat(maml.meta_gradient(model, batch, **kw)),
        "hvp": flat(hvp_meta_gradient(model, batch, **kw)),
        "first_order": flat(
            maml.meta_gradient(model, batch, first_order=True, **kw)
        ),
    }


def first_order_drift(
    iterations: int = 300,
    *,
    every: int = 25,
    inner_steps: int = 1,
    alpha: float = 0.01,
    meta_lr: float = 1e-3,
    meta_batch: int = 10,
    k_shot: int = 10,
    hidden: tuple[int, ...] = (40, 40),
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Second-order MAML on sinusoid tasks (:func:`mlkit.maml.meta_train`),
    stopped every ``every`` iterations to compare, on one fixed batch of
    held-out tasks, the first-order and the Hessian-vector-product
    meta-gradients with autograd's.

    Returns one row per checkpoint (iteration 0 included): ``iteration``,
    ``cosine`` and ``norm_ratio`` of first-order against autograd,
    ``hvp_cosine`` and ``hvp_norm_ratio`` (which stay at 1), and ``meta_loss``
    on the fixed batch. Runs in float64.
    """
    _check_int("iterations", iterations, 1)
    _check_int("every", every, 1)
    _check_int("inner_steps", inner_steps, 1)
    _check_positive("alpha", alpha)
    torch.manual_seed(_check_int("seed", seed, 0))
    model = SinusoidMLP(hidden).double()
    probe = to_double(
        data.sample_sinusoid_tasks(
            meta_batch, k_shot, k_shot, seed=seed + 10_000
        )
    )

    def sample(rng: np.random.Generator) -> Any:
        return to_double(
            data.sample_sinusoid_tasks(meta_batch, k_shot, k_shot, seed=rng)
        )

    rows, state = [], None
    kw = dict(loss_fn=maml.mse_loss, inner_steps=inner_steps, alpha=alpha)
    for stop in range(0, iterations + 1, every):
        if stop > 0:
            saved: dict[str, Any] = {}
            maml.meta_train(
                model,
                sample,
                iterations=stop,
                meta_lr=meta_lr,
                state=state,
                rng=np.random.default_rng(seed),
                save=saved.update,
                save_every_s=math.inf,
                progress=progress,
                log_every=every,
                **kw,
            )
            state = saved
        g = meta_gradients_three_ways(model, probe, **kw)
        fo = gradient_agreement(g["first_order"], g["autograd"])
        hv = gradient_agreement(g["hvp"], g["autograd"])
        loss = float(maml.query_loss(model, probe, **kw)[0].mean().detach())
        rows.append(
            {
                "iteration": stop,
                "cosine": fo["cosine"],
                "norm_ratio": fo["norm_ratio"],
                "hvp_cosine": hv["cosine"],
                "hvp_norm_ratio": hv["norm_ratio"],
                "meta_loss": loss,
            }
        )
    return rows


def to_double(tasks: Any) -> Any:
    """A copy of a task batch (a dataclass such as
    :class:`mlkit.data.SinusoidTasks`) with its floating-point tensors in
    float64, for checks that need more than float32's precision.
    """
    if not hasattr(tasks, "__dataclass_fields__") or isinstance(tasks, type):
        raise ValueError(
            f"tasks must be a task batch dataclass, got "
            f"{type(tasks).__name__}"
        )
    return type(tasks)(
        *(
            (
                getattr(tasks, f.name).double()
                if torch.is_floating_point(getattr(tasks, f.name))
                else getattr(tasks, f.name)
            )
            for f in tasks.__dataclass_fields__.values()
        )
    )


# -----------------------------------------------------------------------------
# 5.1 Linear regression: the MAML optimum in closed form
# -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearTasks:
    """Linear regression tasks ``y = slope * x + intercept + noise``, a task
    batch with the fields :mod:`mlkit.maml` reads (``support_x``
    ``(T, k_shot, 1)`` ... float64).
    """

    support_x: torch.Tensor
    support_y: torch.Tensor
    query_x: torch.Tensor
    query_y: torch.Tensor
    slope: torch.Tensor
    intercept: torch.Tensor

    def __len__(self) -> int:
        return self.support_x.shape[0]


def sample_linear_tasks(
    n_tasks: int = 8,
    k_shot: int = 5,
    n_query: int = 10,
    *,
    noise: float = 0.1,
    seed: int = 0,
) -> LinearTasks:
    """Draw linear tasks: slope ~ N(1, 1), intercept ~ N(0, 1), and each task's
    inputs from U[c - 1, c + 1] around its own centre c ~ U[-1.5, 1.5] (so the
    tasks' support sets have different design matrices and MAML's optimum
    differs from the pooled fit). Gaussian label noise of standard deviation
    ``noise``. Float64."""
    n_tasks = _check_int("n_tasks", n_tasks, 1)
    k_shot = _check_int("k_shot", k_shot, 1)
    n_query = _check_int("n_query", n_query, 1)
    if (
        isinstance(noise, bool)
        or not isinstance(noise, (int, float))
        or not (math.isfinite(noise) and noise >= 0)
    ):
        raise ValueError(f"noise must be >= 0 and finite, got {noise!r}")
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    slope = rng.normal(1.0, 1.0, n_tasks)
    icpt = rng.normal(0.0, 1.0, n_tasks)
    centre = rng.uniform(-1.5, 1.5, n_tasks)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = centre[:, None, None] + rng.uniform(-1.0, 1.0, (n_tasks, n, 1))
        y = (
            slope[:, None, None] * x
            + icpt[:, None, None]
            + noise * rng.normal(size=x.shape)
        )
        return x, y

    (sx, sy), (qx, qy) = draw(k_shot), draw(n_query)
    t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return LinearTasks(t(sx), t(sy), t(qx), t(qy), t(slope), t(icpt))


def linear_model(theta: Sequence[float] = (0.0, 0.0)) -> SinusoidMLP:
    """The linear model ``y = w x + b`` as the book's sinusoid network without
    hidden layers (so :mod:`mlkit.maml`'s task-batch layout runs it), float64,
    with ``theta = (w, b)``.
    """
    try:
        th = np.asarray(theta, dtype=np.float64)
    except (TypeError, ValueError):
        th = np.empty(0)
    if th.shape != (2,) or not np.isfinite(th).all():
        raise ValueError(
            f"theta must be two finite numbers (w, b), got {theta!r}"
        )
    model = SinusoidMLP(hidden=()).double()
    with torch.no_grad():
        model.head.weight.fill_(float(theta[0]))
        model.head.bias.fill_(float(theta[1]))
    return model


def _features(x: torch.Tensor) -> np.ndarray:
    x = x.detach().numpy()[..., 0]
    return np.stack([x, np.ones_like(x)], axis=-1)  # (..., n, 2): [x, 1]


def _check_tasks(tasks: Any) -> None:
    if not isinstance(tasks, LinearTasks):
        raise ValueError(
            "tasks must be LinearTasks (from sample_linear_tasks), got "
            f"{type(tasks).__name__}"
        )


def inner_affine_map(
    tasks: LinearTasks, *, alpha: float, inner_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    r"""The inner loop of every task as an affine map
    :math:`\theta_k = M_i \theta + c_i`.

    With support features :math:`X_i` (rows :math:`[x, 1]`) and the mean
    squared error, :math:`\nabla\mathcal{L}^S_i(\theta) = A_i\theta - b_i` with
    :math:`A_i = \tfrac{2}{n} X_i^\top X_i`,
    :math:`b_i = \tfrac{2}{n} X_i^\top y_i`, so one step is
    :math:`\theta \mapsto (I - \alpha A_i)\theta + \alpha b_i` and ``k`` steps
    give :math:`M_i = (I - \alpha A_i)^k`,
    :math:`c_i = \sum_{j<k} (I - \alpha A_i)^j \alpha b_i`. Returns ``M``
    ``(T, 2, 2)`` and ``c`` ``(T, 2)``.
    """
    _check_tasks(tasks)
    alpha = _check_positive("alpha", alpha)
    inner_steps = _check_int("inner_steps", inner_steps, 0)
    X = _features(tasks.support_x)
    y = tasks.support_y.numpy()[..., 0]
    n = X.shape[1]
    A = 2.0 / n * np.einsum("tni,tnj->tij", X, X)
    b = 2.0 / n * np.einsum("tni,tn->ti", X, y)
    step = np.eye(2) - alpha * A
    Mk = np.broadcast_to(np.eye(2), A.shape).copy()
    c = np.zeros(b.shape)
    for _ in range(inner_steps):
        Mk = step @ Mk
        c = np.einsum("tij,tj->ti", step, c) + alpha * b
    return Mk, c


def _query_quadratic(
    tasks: LinearTasks,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = _features(tasks.query_x)
    y = tasks.query_y.numpy()[..., 0]
    n = X.shape[1]
    return (
        np.einsum("tni,tnj->tij", X, X) / n,
        np.einsum("tni,tn->ti", X, y) / n,
        (y**2).mean(1),
    )


def linear_maml_objective(
    tasks: LinearTasks, theta: np.ndarray, *, alpha: float, inner_steps: int
) -> np.ndarray:
    r"""The MAML objective
    :math:`\frac1T \sum_i \mathcal{L}^Q_i(M_i\theta + c_i)` (mean squared error
    on each query set) at ``theta`` ``(..., 2)``; returns ``(...)``. Vectorised
    so that a whole grid of ``theta`` (for contour lines) is one call."""
    Mk, c = inner_affine_map(tasks, alpha=alpha, inner_steps=inner_steps)
    Q, r, s = _query_quadratic(tasks)
    th = np.asarray(theta, dtype=np.float64)
    if th.shape[-1:] != (2,):
        raise ValueError(
            "theta must have a last axis of size 2 (w, b), got shape "
            f"{th.shape}"
        )
    fast = np.einsum("tij,...j->...ti", Mk, th) + c  # (..., T, 2)
    per = (
        np.einsum("...ti,tij,...tj->...t", fast, Q, fast)
        - 2 * np.einsum("...ti,ti->...t", fast, r)
        + s
    )
    return per.mean(-1)


def linear_maml_gradient(
    tasks: LinearTasks, theta: np.ndarray, *, alpha: float, inner_steps: int
) -> np.ndarray:
    r"""The gradient of :func:`linear_maml_objective`,
    :math:`\frac{2}{T}\sum_i M_i^\top \big(Q_i (M_i\theta + c_i) - r_i\big)`
    with :math:`Q_i = \tfrac1n X_i^{Q\top} X_i^Q`,
    :math:`r_i = \tfrac1n X_i^{Q\top} y^Q_i`.
    """
    Mk, c = inner_affine_map(tasks, alpha=alpha, inner_steps=inner_steps)
    Q, r, _ = _query_quadratic(tasks)
    th = np.asarray(theta, dtype=np.float64)
    if th.shape != (2,):
        raise ValueError(f"theta must be (w, b), shape (2,), got {th.shape}")
    fast = Mk @ th + c
    resid = np.einsum("tij,tj->ti", Q, fast) - r
    return 2.0 * np.einsum("tji,tj->i", Mk, resid) / len(tasks)


def linear_maml_optimum(
    tasks: LinearTasks, *, alpha: float, inner_steps: int
) -> np.ndarray:
    r"""The minimiser :math:`\theta^\star = (w, b)` of the linear MAML
    objective, in closed form:

    .. math:: \theta^\star = \Big(\sum_i M_i^\top Q_i M_i\Big)^{-1}
              \sum_i M_i^\top (r_i - Q_i c_i).

    ``inner_steps = 0`` gives the pooled least-squares fit of the query sets.
    """
    Mk, c = inner_affine_map(tasks, alpha=alpha, inner_steps=inner_steps)
    Q, r, _ = _query_quadratic(tasks)
    G = np.einsum("tki,tkl,tlj->ij", Mk, Q, Mk)
    h = np.einsum("tki,tk->i", Mk, r - np.einsum("tij,tj->ti", Q, c))
    return _solve(G, h)


def linear_fomaml_fixed_point(
    tasks: LinearTasks, *, alpha: float, inner_steps: int
) -> np.ndarray:
    r"""Where first-order MAML stops on the linear tasks: the point where the
    first-order meta-gradient
    :math:`\frac{2}{T}\sum_i \big(Q_i (M_i\theta + c_i) - r_i\big)` vanishes,

    .. math:: \theta_{FO} = \Big(\sum_i Q_i M_i\Big)^{-1}
              \sum_i (r_i - Q_i c_i).

    It differs from :func:`linear_maml_optimum` whenever the factors
    :math:`M_i^\top` that first order drops differ between tasks.
    """
    Mk, c = inner_affine_map(tasks, alpha=alpha, inner_steps=inner_steps)
    Q, r, _ = _query_quadratic(tasks)
    G = np.einsum("tij,tjk->ik", Q, Mk)
    h = (r - np.einsum("tij,tj->ti", Q, c)).sum(0)
    return _solve(G, h)


def _solve(G: np.ndarray, h: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.solve(G, h)
    except np.linalg.LinAlgError:
        raise ValueError(
            "alpha makes the inner loop singular for these tasks "
            "(no unique optimum): choose another alpha or "
            "inner_steps"
        ) from None


def train_linear_maml(
    tasks: LinearTasks,
    *,
    alpha: float,
    inner_steps: int,
    iterations: int = 150,
    meta_lr: float = 0.08,
    snapshots: int = 6,
    theta0: Sequence[float] = (0.0, 0.0),
    first_order: bool = False,
) -> np.ndarray:
    """Meta-train :func:`linear_model` on ``tasks`` (the same full batch every
    iteration) with :func:`mlkit.maml.meta_train` (Adam, ``meta_lr``). Training
    stops ``snapshots`` times and resumes from its saved state, so the path can
    be drawn. Returns the path of ``theta = (w, b)``, ``(snapshots + 1, 2)``,
    starting at ``theta0``; its last row is the trained optimum."""
    _check_tasks(tasks)
    _check_int("iterations", iterations, 1)
    _check_int("snapshots", snapshots, 1)
    model = linear_model(theta0)
    path = [np.array([float(theta0[0]), float(theta0[1])])]
    state = None
    stops = np.unique(
        np.linspace(0, iterations, snapshots + 1).round().astype(int)
    )[1:]
    for stop in stops:
        saved: dict[str, Any] = {}
        maml.meta_train(
            model,
            lambda rng: tasks,
            loss_fn=maml.mse_loss,
            iterations=int(stop),
            inner_steps=inner_steps,
            alpha=alpha,
            meta_lr=meta_lr,
            first_order=first_order,
            state=state,
            rng=np.random.default_rng(0),
            save=saved.update,
            save_every_s=math.inf,
            progress=False,
            log_every=iterations,
        )
        state = saved
        path.append(
            np.array(
                [
                    float(model.head.weight.detach()),
                    float(model.head.bias.detach()),
                ]
            )
        )
    return np.stack(path)


# -----------------------------------------------------------------------------
# 5.1 Cost of second order
# -----------------------------------------------------------------------------


def autograd_peak_bytes(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return its result with the peak number of bytes that
    autograd held for backward passes while it ran: tensors saved by the graph
    (``torch.autograd.graph. saved_tensors_hooks``), each storage counted once
    while any graph node holds it.

    This is the memory that second-order MAML adds (the inner loop's graph must
    live until the outer backward pass); it is deterministic, unlike the
    process's resident size.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a callable, got {fn!r}")
    live: dict[int, list[int]] = {}  # storage pointer -> [holders, bytes]
    cur, peak = [0], [0]

    class _Held:
        __slots__ = ("t", "__weakref__")

        def __init__(self, t: torch.Tensor) -> None:
            self.t = t

    def release(key: int) -> None:
        entry = live[key]
        entry[0] -= 1
        if entry[0] == 0:
            cur[0] -= entry[1]
            del live[key]

    def pack(t: torch.Tensor) -> _Held:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key in live:
            live[key][0] += 1
        else:
            live[key] = [1, st.nbytes()]
            cur[0] += st.nbytes()
            peak[0] = max(peak[0], cur[0])
        h = _Held(t)
        weakref.finalize(h, release, key)
        return h

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda h: h.t):
        out = fn()
    return out, peak[0]


def meta_gradient_cost(
    inner_steps: Sequence[int] = (1, 2, 4, 8),
    *,
    repeats: int = 5,
    meta_batch: int = 10,
    k_shot: int = 10,
    hidden: tuple[int, ...] = (40, 40),
    alpha: float = 0.01,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Time and autograd memory of one meta-gradient
    (:func:`mlkit.maml.meta_gradient`, task-batch layout) of the sinusoid
    network, second- against first-order, per number of inner steps.

    Returns one row per (inner_steps, order): ``inner_steps``, ``order``
    (``"second"`` or ``"first"``), ``seconds`` (median wall time over
    ``repeats`` runs, nondeterministic) and ``graph_bytes``
    (:func:`autograd_peak_bytes`, deterministic).
    """
    steps = [_check_int("inner_steps", k, 1) for k in inner_steps]
    if not steps:
        raise ValueError("inner_steps must hold at least one number of steps")
    _check_int("repeats", repeats, 1)
    torch.manual_seed(_check_int("seed", seed, 0))
    model = SinusoidMLP(hidden)
    batch = data.sample_sinusoid_tasks(meta_batch, k_shot, k_shot, seed=seed)
    rows = []
    for k in steps:
        for order in ("second", "first"):
            kw = dict(
                loss_fn=maml.mse_loss,
                inner_steps=k,
                alpha=alpha,
                first_order=order == "first",
                batched=True,
            )
            _, nbytes = autograd_peak_bytes(
                lambda: maml.meta_gradient(model, batch, **kw)
            )
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                maml.meta_gradient(model, batch, **kw)
                times.append(time.perf_counter() - t0)
            rows.append(
                {
                    "inner_steps": k,
                    "order": order,
                    "seconds": float(np.median(times)),
                    "graph_bytes": int(nbytes),
                }
            )
    return rows


# -----------------------------------------------------------------------------
# 5.2 The contrastive loss
# -----------------------------------------------------------------------------


def contrastive_gradients(
    a: torch.Tensor,
    b: torch.Tensor,
    same: torch.Tensor,
    margin: float,
    *,
    form: str = "source",
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Closed-form gradients of each pair's contrastive loss with respect to
    its two embeddings, ``(dL/da, dL/db)``, both ``(n, D)``.

    With :math:`d = \lVert a - b\rVert` and :math:`u = (a - b)/d`:

    * source form, same pair: :math:`\partial L/\partial a = u`; different
      pair: :math:`-u` if :math:`d < m`, else 0;
    * Hadsell, same pair: :math:`d\,u = a - b`; different pair:
      :math:`-(m - d)\,u` if :math:`d < m`, else 0;

    and :math:`\partial L/\partial b = -\partial L/\partial a` always. The
    plain Euclidean distance (no ``eps``) is used: at :math:`d = 0` the
    direction :math:`u` is undefined and the result is NaN wherever the formula
    needs :math:`u` (every source-form pair and Hadsell's different pairs);
    Hadsell's same-pair gradient :math:`a - b` is fine there.
    """
    _check_form(form)
    margin = _check_positive("margin", margin)
    for name, v in (("a", a), ("b", b), ("same", same)):
        if not isinstance(v, torch.Tensor):
            raise ValueError(
                f"{name} must be a torch.Tensor, got {type(v).__name__}"
            )
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"a and b must both be (n, D) with the same shape, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )
    if same.shape != a.shape[:1]:
        raise ValueError(
            f"same must be (n,) with n = {a.shape[0]}, got {tuple(same.shape)}"
        )
    is_same = (same != 0)[:, None]
    diff = a - b
    d = diff.norm(dim=1, keepdim=True)
    u = diff / d
    inside = (d < margin).to(a.dtype)
    # torch.where picks per pair, so the other kind's formula (NaN at d = 0)
    # cannot leak in
    if form == "source":
        ga = torch.where(is_same, u, -inside * u)
    else:
        ga = torch.where(is_same, diff, -inside * (margin - d) * u)
    return ga, -ga


def _check_points(
    points: Any, labels: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        x = torch.as_tensor(np.asarray(points), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(labels))
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(
            f"points must be (n, D) numbers and labels (n,), got "
            f"{type(points).__name__} and "
            f"{type(labels).__name__}"
        ) from None
    if not bool(torch.isfinite(x).all()):
        raise ValueError("points must be finite (no NaN or inf)")
    if x.dim() != 2 or y.shape != x.shape[:1]:
        raise ValueError(
            f"points must be (n, D) and labels (n,), got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if len(torch.unique(y)) < 2:
        raise ValueError("labels must hold at least two classes")
    return x, y


def toy_points(
    n_classes: int = 4,
    per_class: int = 6,
    *,
    spread: float = 0.5,
    separation: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Start positions for :func:`contrastive_toy`: ``n_classes * per_class``
    points in 2-D, each class a Gaussian blob (standard deviation ``spread``)
    around its own centre, the centres drawn with standard deviation
    ``separation`` around the origin (0: every class starts in the same blob,
    fully mixed). Returns ``(points, labels)``."""
    n_classes = _check_int("n_classes", n_classes, 2)
    per_class = _check_int("per_class", per_class, 2)
    spread = _check_positive("spread", spread)
    if (
        isinstance(separation, bool)
        or not isinstance(separation, (int, float))
        or not (math.isfinite(separation) and separation >= 0)
    ):
        raise ValueError(
            f"separation must be >= 0 and finite, got {separation!r}"
        )
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    centres = rng.normal(0.0, 1.0, (n_classes, 2)) * separation
    labels = np.repeat(np.arange(n_classes), per_class)
    points = centres[labels] + spread * rng.normal(size=(len(labels), 2))
    return points, labels


def contrastive_toy(
    points: Any,
    labels: Any,
    margin: float,
    *,
    form: str = "source",
    steps: int = 200,
    lr: float = 0.05,
    radius: float | None = 1.0,
    noise: float = 0.0,
    snapshots: int = 4,
    seed: int = 0,
) -> np.ndarray:
    r"""Free points moved by gradient descent on the contrastive loss over all
    their pairs.

    Every point is a parameter (no network): each step moves the points by
    ``-lr`` times the gradient of
    :math:`\frac{1}{|S|}\sum_S L + \frac{1}{|D|}\sum_D L` (``form`` as in
    :func:`mlkit.siamese.contrastive_loss`; the two means keep the many
    different pairs from drowning the few same ones), scaled by the number of
    points so a step moves a point by about ``lr`` whatever their number. With
    ``radius`` the points are projected back into the disc of that radius after
    each step, as for embeddings of bounded norm; without it the loss has no
    length scale other than the margin. ``noise`` adds Gaussian jitter of that
    standard deviation to every point after each step (seeded by ``seed``): it
    stands for the variation between a class's examples that a real embedding
    cannot remove, and keeps the classes from collapsing to single points.
    Returns the positions at ``snapshots + 1`` evenly spaced steps (the first
    is the start), ``(snapshots + 1, n, D)``.
    """
    x, y = _check_points(points, labels)
    margin = _check_positive("margin", margin)
    _check_form(form)
    steps = _check_int("steps", steps, 1)
    lr = _check_positive("lr", lr)
    snapshots = _check_int("snapshots", snapshots, 1)
    if radius is not None:
        radius = _check_positive("radius", radius)
    if (
        isinstance(noise, bool)
        or not isinstance(noise, (int, float))
        or not (math.isfinite(noise) and noise >= 0)
    ):
        raise ValueError(f"noise must be >= 0 and finite, got {noise!r}")
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    i, j = torch.triu_indices(len(x), len(x), 1)
    same = (y[i] == y[j]).to(torch.float64)
    x = x.clone().requires_grad_(True)
    keep = set(
        np.linspace(0, steps, snapshots + 1).round().astype(int).tolist()
    )
    out = [x.detach().clone()] if 0 in keep else []
    for step in range(1, steps + 1):
        per = contrastive_loss(
            euclidean_distance(x[i], x[j]),
            same,
            margin,
            form=form,
            reduction="none",
        )
        loss = per[same == 1].mean() + per[same == 0].mean()
        (g,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            x -= lr * len(x) * g
            if noise > 0:
                x += noise * torch.randn(x.shape, generator=gen, dtype=x.dtype)
            # after the noise, so that no point leaves the disc
            if radius is not None:
                norms = x.norm(dim=1, keepdim=True).clamp(min=radius)
                x *= radius / norms
        if step in keep:
            out.append(x.detach().clone())
    return torch.stack(out).numpy()


def class_spacing(
    points: Any, labels: Any, margin: float | None = None
) -> dict[str, float]:
    """How a 2-D configuration separates its classes.

    ``within``: mean distance between points of the same class; ``between``:
    smallest distance between two class centres; ``gap``: smallest distance
    between two points of different classes; ``nn_accuracy``: share of points
    whose nearest other point has their class (leave-one-out 1-NN). With
    ``margin``, also ``inside_margin``: share of different-class pairs closer
    than the margin (the pairs still pushing).
    """
    x, y = _check_points(points, labels)
    d = torch.cdist(x, x)
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(x), dtype=torch.bool)
    classes = torch.unique(y)
    centres = torch.stack([x[y == c].mean(0) for c in classes])
    dc = torch.cdist(centres, centres)
    dc = dc[~torch.eye(len(classes), dtype=torch.bool)]
    nn_idx = d.masked_fill(eye, math.inf).argmin(1)
    out = {
        "within": float(d[same & ~eye].mean()),
        "between": float(dc.min()),
        "gap": float(d[~same].min()),
        "nn_accuracy": float((y[nn_idx] == y).double().mean()),
    }
    if margin is not None:
        out["inside_margin"] = float(
            (d[~same] < _check_positive("margin", margin)).double().mean()
        )
    return out
