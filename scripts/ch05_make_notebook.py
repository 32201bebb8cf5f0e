"""Write chapters/05_mathematics.ipynb (unexecuted) from the cells below.

Run from the repository root, then execute it in place:

    .venv/bin/python scripts/ch05_make_notebook.py
    MLKIT_DATA=/work/shared/data .venv/bin/jupyter execute --inplace --timeout=900 \
        chapters/05_mathematics.ipynb
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nb import Notebook  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "chapters" / "05_mathematics.ipynb"
nb = Notebook()
md, code = nb.md, nb.code

md(r"""
# 5 The mathematics

The source text states two objectives in its section 4: the MAML objective

$$
\min_\theta \sum_i \mathcal{L}_i\big(\theta - \alpha \nabla_\theta \mathcal{L}_i(\theta)\big)
$$

and the contrastive loss of a Siamese network

$$
\min_\theta \sum_{(i,j) \in S} d\big(f(x_i), f(x_j)\big)
+ \sum_{(i,j) \in D} \max\Big(0,\; m - d\big(f(x_i), f(x_j)\big)\Big),
$$

with $S$ the same-class pairs, $D$ the different-class pairs and $m$ the margin. This chapter
derives what follows from each: the gradient that MAML's outer loop follows and what it costs,
an optimum that can be written down exactly, and the forces that the contrastive loss puts on
a pair of embeddings. Every formula is followed by a cell that computes **both sides** with
`mlkit.theory.both_sides`, which prints them and whether they agree, so nothing here rests on
the algebra alone. The functions live in `mlkit.theory` (tested in `tests/test_theory.py`);
the chapter runs on a CPU in about a minute.
""")

code(r"""
import functools

import numpy as np
import torch
import matplotlib.pyplot as plt

from mlkit import data as D, maml as M, siamese as S, theory as T, viz
from mlkit.nets import SinusoidMLP
from mlkit.widgets import Slider, explorer

torch.set_num_threads(1)  # single-threaded reductions: the printed numbers are reproducible
""")

md(r"""
## 5.1 The MAML objective

Chapter 3 splits each task $i$ into a support set and a query set: the inner loop adapts on
the support loss $\mathcal{L}^S_i$, the outer loop scores the adapted weights on the query
loss $\mathcal{L}^Q_i$ {cite}`finn2017maml`. The source's objective writes one
$\mathcal{L}_i$ for both; everything below holds in that case too (set
$\mathcal{L}^S_i = \mathcal{L}^Q_i$). We write $g_i(\theta) = \nabla \mathcal{L}^S_i(\theta)$
for the support gradient and $H_i(\theta) = \nabla^2 \mathcal{L}^S_i(\theta)$ for its Hessian.

### One inner step

The inner step is a function of $\theta$:

$$
\theta' = U_i(\theta) = \theta - \alpha\, g_i(\theta),
\qquad
\frac{\partial \theta'}{\partial \theta} = I - \alpha H_i(\theta).
$$

The chain rule gives the gradient of the query loss at the adapted weights with respect to
the *initial* weights, and since a Hessian is symmetric the transpose changes nothing:

$$
\nabla_\theta\, \mathcal{L}^Q_i\big(U_i(\theta)\big)
= \Big(\frac{\partial \theta'}{\partial \theta}\Big)^{\!\top} \nabla_{\theta'} \mathcal{L}^Q_i(\theta')
= \big(I - \alpha H_i(\theta)\big)\, \nabla_{\theta'} \mathcal{L}^Q_i(\theta').
$$

The meta-gradient of the whole objective is the mean of this over the tasks of a batch.
To check it we take a network small enough for its Hessian to be written out as a matrix
(one hidden layer of five units) and compare the meta-gradient that autograd computes by
differentiating through the inner loop (`mlkit.maml.meta_gradient`) with the right-hand side
built from explicit Hessian matrices (`mlkit.theory.explicit_meta_gradient`).
""")

code(r"""
torch.manual_seed(0)
tiny = SinusoidMLP(hidden=(5,)).double()
tiny_tasks = T.to_double(D.sample_sinusoid_tasks(3, 5, 10, seed=1))
n_params = sum(p.numel() for p in tiny.parameters())
print(f"{n_params} parameters, {len(tiny_tasks)} tasks, alpha = 0.05")

kw = dict(loss_fn=M.mse_loss, alpha=0.05)
T.both_sides("one step: autograd through the inner loop  vs  (I - alpha H) grad L^Q(theta')",
             T.flat(M.meta_gradient(tiny, tiny_tasks, inner_steps=1, **kw)),
             T.explicit_meta_gradient(tiny, tiny_tasks, inner_steps=1, **kw))
# the source's form: one loss for both loops (query set = support set)
source_form = D.SinusoidTasks(tiny_tasks.support_x, tiny_tasks.support_y, tiny_tasks.support_x,
                              tiny_tasks.support_y, tiny_tasks.amplitude, tiny_tasks.phase)
ok = T.both_sides("the source's form, L^S = L^Q: autograd  vs  (I - alpha H) grad L(theta')",
                  T.flat(M.meta_gradient(tiny, source_form, inner_steps=1, **kw)),
                  T.explicit_meta_gradient(tiny, source_form, inner_steps=1, **kw))
""")

md(r"""
### $k$ inner steps

With $\theta_0 = \theta$ and $\theta_{j+1} = \theta_j - \alpha\, g_i(\theta_j)$, each step has
the Jacobian $I - \alpha H_i(\theta_j)$, evaluated *where that step started*. The Jacobian of
$\theta_k$ with respect to $\theta$ is the product of the $k$ step Jacobians, the last step's
on the left; transposing reverses the order:

$$
\frac{\partial \theta_k}{\partial \theta} = \prod_{j=k-1}^{0}\big(I - \alpha H_i(\theta_j)\big),
\qquad
\nabla_\theta\, \mathcal{L}^Q_i(\theta_k)
= \big(I - \alpha H_i(\theta_0)\big)\big(I - \alpha H_i(\theta_1)\big)\cdots\big(I - \alpha H_i(\theta_{k-1})\big)\, \nabla \mathcal{L}^Q_i(\theta_k).
$$

For two steps, multiplied out,

$$
\nabla_\theta\, \mathcal{L}^Q_i(\theta_2)
= \Big(I - \alpha\big(H_i(\theta_0) + H_i(\theta_1)\big) + \alpha^2 H_i(\theta_0) H_i(\theta_1)\Big)\, \nabla \mathcal{L}^Q_i(\theta_2).
$$

Every Hessian along the inner trajectory appears: that is why second-order MAML has to keep
the whole inner loop in memory (measured at the end of this section). Dropping all the
Hessian terms leaves $\nabla \mathcal{L}^Q_i(\theta_k)$, the first-order approximation
(FOMAML) {cite}`finn2017maml,nichol2018first`.
""")

code(r"""
for k in (2, 3):
    T.both_sides(f"{k} steps: autograd  vs  product of {k} explicit Jacobians times grad L^Q(theta_{k})",
                 T.flat(M.meta_gradient(tiny, tiny_tasks, inner_steps=k, **kw)),
                 T.explicit_meta_gradient(tiny, tiny_tasks, inner_steps=k, **kw))

# the two-step expansion, term by term, for the first task
sx, sy, qx, qy = (tiny_tasks.support_x[:1], tiny_tasks.support_y[:1],
                  tiny_tasks.query_x[:1], tiny_tasks.query_y[:1])
one = D.SinusoidTasks(sx, sy, qx, qy, tiny_tasks.amplitude[:1], tiny_tasks.phase[:1])
names = [n for n, _ in tiny.named_parameters()]
shapes = [p.shape for p in tiny.parameters()]

def unflat(v):
    out, i = {}, 0
    for n, s in zip(names, shapes):
        out[n] = v[i:i + s.numel()].reshape(s)
        i += s.numel()
    return out

support_loss = lambda v: M.mse_loss(M.predict(tiny, unflat(v), sx[0]), sy[0])
query_loss = lambda v: M.mse_loss(M.predict(tiny, unflat(v), qx[0]), qy[0])
alpha = kw["alpha"]
th0 = T.flat(dict(tiny.named_parameters())).detach()
th1 = th0 - alpha * torch.func.grad(support_loss)(th0)
th2 = th1 - alpha * torch.func.grad(support_loss)(th1)
H0, H1 = torch.func.hessian(support_loss)(th0), torch.func.hessian(support_loss)(th1)
g2 = torch.func.grad(query_loss)(th2)
I = torch.eye(len(th0), dtype=th0.dtype)
ok = T.both_sides("two steps: autograd  vs  (I - alpha (H0 + H1) + alpha^2 H0 H1) grad L^Q(theta_2)",
             T.flat(M.meta_gradient(tiny, one, inner_steps=2, **kw)),
             (I - alpha * (H0 + H1) + alpha ** 2 * H0 @ H1) @ g2)
""")

md(r"""
### Three ways to compute it

A network of realistic size has too many parameters for Hessian matrices, but the formula
only ever needs a Hessian *times a vector*, and $H v = \nabla_\theta \langle g(\theta), v \rangle$
costs one extra backward pass {cite}`pearlmutter1994fast`. So the product can be evaluated
from the right: start from $v = \nabla \mathcal{L}^Q_i(\theta_k)$ and for
$j = k-1, \dots, 0$ replace $v$ by $v - \alpha H_i(\theta_j)\, v$
(`mlkit.theory.hvp_meta_gradient`). That gives three ways to compute the meta-gradient:

1. **autograd through the inner loop**: the inner gradients keep their graph
   (`create_graph=True`) and one backward pass of the query loss differentiates everything;
2. **explicit Hessian-vector products**, as just described;
3. **first order**: the query gradient at the fast weights, no Hessian at all.

On Finn et al.'s sinusoid network (two hidden layers of 40 units) and ten
sinusoid tasks with Finn's $\alpha = 0.01$, the first two agree to rounding; the third is a
different vector, and the cosine of its angle with the exact one and its norm ratio say how
different.
""")

code(r"""
torch.manual_seed(0)
net = SinusoidMLP().double()
batch = T.to_double(D.sample_sinusoid_tasks(10, 10, 10, seed=2))
print(f"{sum(p.numel() for p in net.parameters())} parameters, {len(batch)} tasks")
for k in (1, 5):
    g = T.meta_gradients_three_ways(net, batch, loss_fn=M.mse_loss, inner_steps=k, alpha=0.01)
    T.both_sides(f"{k} inner step(s): autograd  vs  Hessian-vector products", g["autograd"], g["hvp"])
    fo = T.gradient_agreement(g["first_order"], g["autograd"])
    print(f"    first order against autograd: cosine {fo['cosine']:.4f}, norm ratio {fo['norm_ratio']:.4f}")
""")

md(r"""
How far first order is from second order is not fixed: it depends on the curvature of the
support loss where the network currently is, which changes as meta-training moves $\theta$.
`mlkit.theory.first_order_drift` meta-trains the network (second order, with
`mlkit.maml.meta_train`), stops every 25 iterations, and compares the three gradients on a
fixed batch of held-out tasks.
""")

code(r"""
drift = T.first_order_drift(300, every=25, alpha=0.01, meta_batch=10)
cos = [r["cosine"] for r in drift]
ratio = [r["norm_ratio"] for r in drift]
print(f"first order against autograd over {len(drift)} checkpoints: "
      f"cosine {min(cos):.3f} .. {max(cos):.3f}, norm ratio {min(ratio):.3f} .. {max(ratio):.3f}")
print("first-order norm ratio more than 10% away from 1 at some checkpoint:",
      any(abs(r - 1) > 0.1 for r in ratio))
print("Hessian-vector products against autograd at every checkpoint: agree to 1e-9:",
      all(abs(r["hvp_cosine"] - 1) < 1e-9 and abs(r["hvp_norm_ratio"] - 1) < 1e-9 for r in drift))
fig = viz.plot_meta_gradient_agreement(drift)
plt.show()
""")

md(r"""
The Hessian-vector products stay on the line at 1, as they must: they compute the same
product as autograd, in another order. The first-order gradient points in nearly the same
direction when the cosine stays close to 1, but its length can be quite different (second
line of the output): the Hessian term $-\alpha H\, \nabla\mathcal{L}^Q$ need not be small
even at $\alpha = 0.01$, because the sinusoid losses (amplitudes up to 5) are steep. An optimiser like Adam, which rescales every coordinate, is less sensitive to a wrong
length than to a wrong direction, which may be one reason first-order MAML comes close to
second order in Finn et al.'s and Nichol et al.'s experiments
{cite}`finn2017maml,nichol2018first`.

### Linear regression: the optimum in closed form

For a linear model and the squared loss everything above can be solved exactly. Take
$f_\theta(x) = w x + b$ with $\theta = (w, b)$ and the feature vector $\phi(x) = (x, 1)$;
stack a task's $n$ support features as the rows of $X_i$ and its targets as $y_i$. The
support loss and its derivatives are

$$
\mathcal{L}^S_i(\theta) = \tfrac1n \lVert X_i \theta - y_i \rVert^2,
\qquad
g_i(\theta) = A_i \theta - b_i,
\qquad
H_i = A_i = \tfrac2n X_i^\top X_i,
\quad b_i = \tfrac2n X_i^\top y_i ,
$$

so the Hessian does not depend on $\theta$ and one inner step is an affine map,
$\theta' = (I - \alpha A_i)\theta + \alpha b_i$. After $k$ steps

$$
\theta_k = M_i \theta + c_i,
\qquad
M_i = (I - \alpha A_i)^k,
\qquad
c_i = \sum_{j=0}^{k-1} (I - \alpha A_i)^j\, \alpha b_i .
$$

With $Q_i = \tfrac1{n_q} X_i^{Q\top} X^Q_i$, $r_i = \tfrac1{n_q} X_i^{Q\top} y^Q_i$ and
$s_i = \tfrac1{n_q}\lVert y^Q_i\rVert^2$ from the query set, the query loss is the quadratic
$\mathcal{L}^Q_i(\theta') = \theta'^\top Q_i \theta' - 2 r_i^\top \theta' + s_i$, and the MAML
objective over $T$ tasks

$$
J(\theta) = \frac1T \sum_{i=1}^T \mathcal{L}^Q_i(M_i\theta + c_i),
\qquad
\nabla J(\theta) = \frac2T \sum_{i=1}^T M_i^\top \big(Q_i (M_i \theta + c_i) - r_i\big)
$$

is a quadratic in $\theta$. (The factor $M_i^\top = (I - \alpha A_i)^k$ is the product of the
$k$ Jacobians from above, all equal here.) Setting the gradient to zero gives the MAML
optimum

$$
\theta^\star = \Big(\sum_i M_i^\top Q_i M_i\Big)^{-1} \sum_i M_i^\top (r_i - Q_i c_i),
$$

unique when the matrix is positive definite. With $k = 0$ it is the pooled least-squares fit
of all query sets; as $k$ or $\alpha$ grows it moves to where a few inner steps reach each
task best. The tasks (`mlkit.theory.sample_linear_tasks`): slopes $\sim N(1, 1)$,
intercepts $\sim N(0, 1)$, five support and ten query points per task, each task's inputs
drawn around its own centre, so that the $A_i$ differ from task to task. The inner loop
contracts when every eigenvalue of $\alpha A_i$ lies in $(0, 2)$; the cell checks that
for the values of $\alpha$ used below. Each line checks one formula against `mlkit.maml`.
""")

code(r"""
tasks = T.sample_linear_tasks(n_tasks=8, k_shot=5, n_query=10, seed=0)
alpha, k = 0.2, 2
X = torch.cat([tasks.support_x, torch.ones_like(tasks.support_x)], -1).numpy()
A = 2 / X.shape[1] * np.einsum("tni,tnj->tij", X, X)
print(f"{len(tasks)} tasks; largest eigenvalue of alpha A_i at alpha = 0.25: "
      f"{0.25 * np.linalg.eigvalsh(A).max():.3f} (below 2: the inner loops contract)")

theta = np.array([0.5, -0.3])
model = T.linear_model(theta)
# the support loss of task 0: its gradient and Hessian by autograd against A_0 theta - b_0 and A_0
b0 = 2 / X.shape[1] * X[0].T @ tasks.support_y[0, :, 0].numpy()
loss0 = lambda v: M.mse_loss(M.predict(model, {"head.weight": v[:1].reshape(1, 1), "head.bias": v[1:]},
                                       tasks.support_x[0]), tasks.support_y[0])
v0 = torch.tensor(theta)
T.both_sides("task 0: gradient of L^S by autograd  vs  A_0 theta - b_0",
             torch.func.grad(loss0)(v0), A[0] @ theta - b0)
T.both_sides("task 0: Hessian of L^S by autograd  vs  A_0 = 2/n X^T X",
             torch.func.hessian(loss0)(v0), A[0])
Mk, c = T.inner_affine_map(tasks, alpha=alpha, inner_steps=k)
fast = M.adapt_tasks(model, tasks.support_x, tasks.support_y, loss_fn=M.mse_loss,
                     inner_steps=k, alpha=alpha)
T.both_sides("theta_k: mlkit.maml.adapt_tasks  vs  M_i theta + c_i (all tasks)",
             torch.stack([fast["head.weight"][:, 0, 0], fast["head.bias"][:, 0]], 1),
             Mk @ theta + c)
losses, _ = M.query_loss(model, tasks, loss_fn=M.mse_loss, inner_steps=k, alpha=alpha)
T.both_sides("J(theta): mlkit.maml.query_loss  vs  the quadratic",
             losses.mean(), T.linear_maml_objective(tasks, theta, alpha=alpha, inner_steps=k))
T.both_sides("grad J(theta): mlkit.maml.meta_gradient  vs  2/T sum M_i^T (Q_i theta_k - r_i)",
             T.flat(M.meta_gradient(model, tasks, loss_fn=M.mse_loss, inner_steps=k, alpha=alpha)),
             T.linear_maml_gradient(tasks, theta, alpha=alpha, inner_steps=k))
star = T.linear_maml_optimum(tasks, alpha=alpha, inner_steps=k)
ok = T.both_sides("grad J(theta*): mlkit.maml.meta_gradient at the closed form  vs  zero",
             T.flat(M.meta_gradient(T.linear_model(star), tasks, loss_fn=M.mse_loss,
                                    inner_steps=k, alpha=alpha)), np.zeros(2))
""")

md(r"""
The closed form is a stationary point of the objective that `mlkit.maml` differentiates.
Does `mlkit.maml`'s training find it? `mlkit.theory.train_linear_maml` runs
`mlkit.maml.meta_train` (second order, Adam) on the same eight tasks, starting at
$\theta = (0, 0)$, and records the path.
""")

code(r"""
path = T.train_linear_maml(tasks, alpha=alpha, inner_steps=k)
print(f"closed form theta* = ({star[0]:.4f}, {star[1]:.4f})")
print(f"trained by mlkit.maml: ({path[-1, 0]:.4f}, {path[-1, 1]:.4f}); "
      f"distance below 1e-3: {np.linalg.norm(path[-1] - star) < 1e-3}")
pooled = T.linear_maml_optimum(tasks, alpha=alpha, inner_steps=0)
Xq_all = torch.cat([tasks.query_x, torch.ones_like(tasks.query_x)], -1).reshape(-1, 2).numpy()
T.both_sides("k = 0: theta* of the closed form  vs  least squares on all query sets (numpy lstsq)",
             pooled, np.linalg.lstsq(Xq_all, tasks.query_y.reshape(-1).numpy(), rcond=None)[0])

task_fits = np.stack([tasks.slope.numpy(), tasks.intercept.numpy()], 1)
W, B = np.meshgrid(np.linspace(-0.5, 3.0, 70), np.linspace(-2.5, 1.5, 70))

def draw_linear(alpha: float, inner_steps: int, path=None, figsize=(5.0, 3.6)):
    star = T.linear_maml_optimum(tasks, alpha=alpha, inner_steps=inner_steps)
    path = trained_path(alpha, inner_steps) if path is None else path
    Z = T.linear_maml_objective(tasks, np.stack([W, B], -1), alpha=alpha, inner_steps=inner_steps)
    gap = np.linalg.norm(path[-1] - star)
    return viz.plot_linear_maml(task_fits, W, B, Z, star, path, pooled=pooled, figsize=figsize,
                                title=f"α = {alpha:g}, {inner_steps} steps: "
                                      f"trained − closed form = {gap:.0e}")

@functools.lru_cache(maxsize=None)
def trained_path(alpha: float, inner_steps: int):
    if inner_steps == 0:  # alpha plays no part: train once
        return trained_path(0.15, 0) if alpha != 0.15 else T.train_linear_maml(tasks, alpha=0.15, inner_steps=0)
    return T.train_linear_maml(tasks, alpha=alpha, inner_steps=inner_steps)

fig = draw_linear(alpha, k, path=path, figsize=(6.2, 4.6))
plt.show()
""")

md(r"""
The grey dots are the eight tasks' own parameters, the contour lines those of the MAML
objective $J$, the red line the path of meta-training. The explorer below moves $\alpha$ and
the number of inner steps: for each setting the closed form (star) is recomputed and
`mlkit.maml` is trained again from $(0, 0)$ (cross), so the two can be seen to move
together. At $k = 0$ both sit on the pooled fit; as $\alpha k$ grows the optimum moves to a
point from which a few inner steps reach every task well, which is not the average of the
tasks.
""")

code(r"""
ALPHAS, STEPS = [0.05, 0.15, 0.25], [0, 1, 2, 4]  # 12 frames: each one trains mlkit.maml
explorer(draw_linear,
         [Slider("alpha", values=ALPHAS, value=0.15, label="α (inner rate)", fmt="{:g}"),
          Slider("inner_steps", values=STEPS, value=2, label="inner steps")],
         title="Linear MAML: closed-form optimum (star) and mlkit.maml's (cross)")
""", tags=["nbval-ignore-output"])

code(r"""
# the same grid as the explorer: mlkit.maml's trained optimum against the closed form
worst = max(np.linalg.norm(trained_path(a, s)[-1] - T.linear_maml_optimum(tasks, alpha=a, inner_steps=s))
            for a in ALPHAS for s in STEPS)
print(f"largest distance between trained and closed-form optimum over the {len(ALPHAS) * len(STEPS)} settings "
      f"below 1e-2: {worst < 1e-2}")
""")

md(r"""
### Cost: what second order pays

Autograd through the inner loop must keep the graph of every inner step, including the
graph of each inner *gradient*, until the outer backward pass has used it: memory grows
linearly with the number of inner steps $k$, and the backward pass runs through every step
twice over (once for the gradient, once for its derivative). First order treats each inner
gradient as a constant, so the graph of an inner step is freed as soon as its gradient is
taken; its memory does not grow with $k$, its time still does (the inner loop still runs).
This is the cost that first-order MAML, Reptile {cite}`nichol2018first` and implicit
gradients {cite}`rajeswaran2019meta` avoid.

`mlkit.theory.meta_gradient_cost` measures one meta-gradient of the sinusoid network on ten
tasks, for $k = 1, 2, 4, 8, 16$. Time is the median of five runs on this machine's CPU and
varies from run to run, so it appears only in the figure. Memory is counted exactly: the
bytes of every tensor the autograd graph holds for a backward pass, at their peak
(`mlkit.theory.autograd_peak_bytes`), which does not vary between runs.
""")

code(r"""
cost = T.meta_gradient_cost((1, 2, 4, 8, 16), repeats=5, meta_batch=10)
print("inner steps   second order KiB   first order KiB")
for s in (1, 2, 4, 8, 16):
    second = next(r["graph_bytes"] for r in cost if r["inner_steps"] == s and r["order"] == "second")
    first = next(r["graph_bytes"] for r in cost if r["inner_steps"] == s and r["order"] == "first")
    print(f"{s:>11} {second / 1024:>18.1f} {first / 1024:>17.1f}")
mem2 = [r["graph_bytes"] for r in cost if r["order"] == "second"]
mem1 = [r["graph_bytes"] for r in cost if r["order"] == "first"]
print(f"second order adds {(mem2[-1] - mem2[0]) / 15 / 1024:.1f} KiB per inner step; "
      f"first order constant: {len(set(mem1)) == 1}")
fig = viz.plot_meta_gradient_cost(cost)  # timings vary between runs: figure only
plt.show()
""")

md(r"""
The memory of second order grows by the same amount with every step (the graph of one
inner step of ten tasks), first order's stays where it was. The time of both grows with $k$;
second order does more work per step (the backward pass through each inner gradient), and
the figure shows what that costs on the machine that ran this notebook, where other work
running at the same time adds noise. The same linear growth of memory, on networks and
inputs far larger than this one, is what makes second-order MAML with many inner steps
expensive and motivated implicit meta-gradients {cite}`rajeswaran2019meta`.

## 5.2 The contrastive loss

For one pair of embeddings $a = f(x_i)$, $b = f(x_j)$ at distance $d = \lVert a - b\rVert$
with $y = 1$ for a same-class pair and $y = 0$ otherwise, the source's loss and the squared
form of Hadsell, Chopra and LeCun {cite}`hadsell2006dimensionality` are

$$
\ell_{\text{source}} = y\, d + (1 - y) \max(0,\, m - d),
\qquad
\ell_{\text{Hadsell}} = \tfrac12\, y\, d^2 + \tfrac12 (1 - y) \max(0,\, m - d)^2 .
$$

### Gradients with respect to the two embeddings

The distance depends on the pair only through $a - b$, and

$$
\frac{\partial d}{\partial a} = \frac{a - b}{d} = u,
\qquad
\frac{\partial d}{\partial b} = -u,
$$

with $u$ the unit vector from $b$ to $a$. By the chain rule, for $d \ne 0$ and $d \ne m$,

$$
\frac{\partial \ell_{\text{source}}}{\partial a} =
\begin{cases} u & y = 1 \\ -u & y = 0,\ d < m \\ 0 & y = 0,\ d > m \end{cases}
\qquad
\frac{\partial \ell_{\text{Hadsell}}}{\partial a} =
\begin{cases} d\, u = a - b & y = 1 \\ -(m - d)\, u & y = 0,\ d < m \\ 0 & y = 0,\ d > m \end{cases}
$$

and $\partial \ell / \partial b = -\partial \ell / \partial a$ in every case. Gradient descent
moves $a$ along $-\partial\ell/\partial a$, so:

* a **same-class pair** is pulled together: with the source's form by a force of constant
  size 1 whatever the distance, with Hadsell's by a spring whose force $d$ fades as the two
  meet;
* a **different-class pair** inside the margin is pushed apart, by 1 (source) or by
  $m - d$ (Hadsell, strongest when the two coincide);
* a different-class pair **beyond the margin** contributes nothing at all: its gradient is
  exactly zero, so a pair that is already far enough apart costs no effort;
* the two members always receive equal and opposite forces, so a pair never moves its
  midpoint.

The cell compares these formulas (`mlkit.theory.contrastive_gradients`) with autograd
through `mlkit.siamese.contrastive_loss` and `mlkit.siamese.euclidean_distance` on random
pairs, some of them beyond the margin.
""")

code(r"""
gen = torch.Generator().manual_seed(0)
a = torch.randn(200, 4, generator=gen, dtype=torch.float64)
b = torch.randn(200, 4, generator=gen, dtype=torch.float64)
same = (torch.arange(200) % 2).double()
margin = 2.5
dist = (a - b).norm(dim=1)
for form in ("source", "hadsell"):
    by_hand = (same * dist + (1 - same) * torch.clamp(margin - dist, min=0) if form == "source" else
               0.5 * same * dist ** 2 + 0.5 * (1 - same) * torch.clamp(margin - dist, min=0) ** 2)
    T.both_sides(f"{form}: per-pair loss of mlkit.siamese  vs  the formula",
                 S.contrastive_loss(S.euclidean_distance(a, b), same, margin, form=form, reduction="none"),
                 by_hand, rtol=1e-6, atol=1e-7)
print(f"different-class pairs beyond the margin: {int(((dist > margin) & (same == 0)).sum())} of {int((same == 0).sum())}")
for form in ("source", "hadsell"):
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = S.contrastive_loss(S.euclidean_distance(a_, b_), same, margin, form=form, reduction="sum")
    ga, gb = torch.autograd.grad(loss, [a_, b_])
    ca, cb = T.contrastive_gradients(a, b, same, margin, form=form)
    # rtol 1e-6: euclidean_distance has an eps of 1e-8 inside the root
    beyond = (dist > margin) & (same == 0)
    T.both_sides(f"{form}: dL/da by autograd  vs  the formula (pairs inside the margin or same)",
                 ga[~beyond], ca[~beyond], rtol=1e-6, atol=1e-7)
    T.both_sides(f"{form}: dL/da by autograd  vs  the formula (different pairs beyond the margin)",
                 ga[beyond], ca[beyond], rtol=1e-6, atol=1e-7)
    T.both_sides(f"{form}: those beyond the margin  vs  exactly zero", ga[beyond], torch.zeros_like(ga[beyond]),
                 rtol=0, atol=0)
    order = torch.cat([torch.nonzero(~beyond)[:, 0], torch.nonzero(beyond)[:, 0]])
    T.both_sides(f"{form}: dL/db  vs  -dL/da (all pairs)", gb[order], -ca[order], rtol=1e-6, atol=1e-7)
""")

md(r"""
### The singularity at $d = 0$

At $d = 0$ the unit vector $u = (a - b)/d$ is undefined, and with it every formula that
uses it: the source's pull on a same-class pair (its size is 1 for every $d > 0$, but its
direction flips as $a$ passes $b$, so gradient descent with a fixed step overshoots and
chatters around the meeting point), and both forms' push on a different-class pair that
coincides (every direction is equally good). Only Hadsell's same-class gradient $a - b$ is
smooth there, which is one reason for the square. Autograd meets the same problem: the
derivative of $\sqrt{s}$ at $s = 0$ is infinite, multiplied by $\partial s / \partial a = 0$
it gives NaN. `mlkit.siamese.euclidean_distance` computes $\sqrt{\lVert a - b\rVert^2 + \varepsilon}$
with $\varepsilon = 10^{-8}$: its gradient is $(a - b)/\sqrt{\lVert a - b\rVert^2 + \varepsilon}$,
zero at $a = b$ and within $10^{-4}$ of $d$ everywhere.
""")

code(r"""
a0 = torch.zeros(1, 3, dtype=torch.float64)
rows = {
    "plain sqrt(sum (a - b)^2)": lambda x: torch.sqrt(((x - a0) ** 2).sum()),
    "torch.linalg.vector_norm": lambda x: torch.linalg.vector_norm(x - a0),
    "mlkit.siamese.euclidean_distance (eps)": lambda x: S.euclidean_distance(x, a0).sum(),
}
for name, fn in rows.items():
    x = a0.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(x), x)
    print(f"d d/da at a = b, {name:<40} {g.numpy().round(6).tolist()}")
for form, y in (("source", 1.0), ("source", 0.0), ("hadsell", 1.0), ("hadsell", 0.0)):
    ga, _ = T.contrastive_gradients(a0, a0.clone(), torch.tensor([y]), 1.0, form=form)
    print(f"closed-form dL/da at d = 0, {form:>7}, {'same' if y else 'different'} pair: {ga.numpy().round(6).tolist()}")

# how fast the smoothed gradient's size goes from 0 to 1: over distances near sqrt(eps) = 1e-4
for delta in (1e-6, 1e-4, 1e-2):
    x = torch.tensor([[delta, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(S.euclidean_distance(x, a0).sum(), x)
    T.both_sides(f"|dd/da| at distance {delta:g}: autograd  vs  delta / sqrt(delta^2 + eps)",
                 g.norm(), delta / np.sqrt(delta ** 2 + S.DISTANCE_EPS))
""")

md(r"""
A consequence worth knowing: with the smoothed distance, two *different-class* embeddings
that coincide exactly feel no force from their own pair (the gradient is 0, not "push
apart"), so a network that has collapsed two classes onto one point is at a stationary point
of their pair terms and relies on other pairs to move it away.

### Loss and gradient against the distance

`mlkit.siamese.loss_gradient_curves` differentiates both losses with autograd on a grid of
distances. The derivative $\partial\ell/\partial d$ is the size of the force along $u$
(positive: pulled together). The cell checks it against the formulas above at every grid
point, then draws it; the explorer under it moves the margin.
""")

code(r"""
grid = np.linspace(0.01, 3.0, 300)
curves = S.loss_gradient_curves(grid, margin=1.0)
inside = (grid < 1.0).astype(float)
T.both_sides("source: dl/dd, same pairs  vs  1", curves["source"]["grad_same"], np.ones_like(grid))
T.both_sides("source: dl/dd, different pairs  vs  -1[d < m]", curves["source"]["grad_different"], -inside)
T.both_sides("Hadsell: dl/dd, same pairs  vs  d", curves["hadsell"]["grad_same"], grid)
T.both_sides("Hadsell: dl/dd, different pairs  vs  -(m - d) 1[d < m]",
             curves["hadsell"]["grad_different"], -(1.0 - grid) * inside)
fig = viz.plot_loss_gradients(grid, curves, margin=1.0)
plt.show()
""")

code(r"""
def draw_curves(margin: float):
    return viz.plot_loss_gradients(grid, S.loss_gradient_curves(grid, margin=margin), margin=margin)

explorer(draw_curves, [Slider("margin", values=[0.5, 1.0, 2.0, 3.0], value=1.0,
                              label="margin m", fmt="{:g}")],
         title="Contrastive losses and their derivatives against the distance")
""", tags=["nbval-ignore-output"])

md(r"""
Moving the margin moves the kink of the source's push (a jump of the force from 1 to 0 at
$d = m$: the loss is not differentiable there) and the end of Hadsell's (which reaches 0
continuously). The pulls do not depend on $m$ at all.

### A 2-D toy: what the margin does to classes

To see the forces at work, `mlkit.theory.contrastive_toy` treats 24 points of four classes
in the plane as free parameters (no network) and moves them by gradient descent on the loss
of all their pairs: the mean over same-class pairs plus the mean over different-class pairs.
Two things stand in for what a real embedding network has. The points stay inside the unit
disc (projected back after each step), as embeddings of bounded norm do. And every step adds
a little Gaussian noise (standard deviation 0.05), the variation among a class's examples
that a network cannot remove; without it the same-class pull would shrink each class to a
single point and the margin would only set the distance between those points. All classes
start mixed in one blob. `mlkit.theory.class_spacing` then reports the mean within-class
distance, the smallest distance between two class centres, the share of points whose nearest
neighbour has their class, and the share of different-class pairs still inside the margin
(still pushing).
""")

code(r"""
points, labels = T.toy_points(n_classes=4, per_class=6, seed=0)
MARGINS = [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0]
TOY = dict(steps=300, lr=0.02, radius=1.0, noise=0.05)

@functools.lru_cache(maxsize=None)
def toy_run(margin: float, form: str):
    return T.contrastive_toy(points, labels, margin, form=form, **TOY)

spacing = {(m, f): T.class_spacing(toy_run(m, f)[-1], labels, m)
           for f in ("source", "hadsell") for m in MARGINS}
print("form     margin  within  between-centres  1-NN accuracy  different pairs inside margin")
for (m, f), s in spacing.items():
    print(f"{f:<8} {m:>6g} {s['within']:>7.3f} {s['between']:>16.3f} {s['nn_accuracy']:>14.2f} "
          f"{s['inside_margin']:>30.2f}")
""")

code(r"""
def draw_toy(margin: float, form: str, figsize=(7.5, 3.6)):
    s = spacing[(margin, form)]
    return viz.plot_contrastive_toy(
        toy_run(margin, form), labels, margin, radius=TOY["radius"], figsize=figsize,
        title=f"{form} form, m = {margin:g}: centres >= {s['between']:.2f} apart, "
              f"1-NN accuracy {s['nn_accuracy']:.2f}")

fig = draw_toy(1.0, "source", figsize=(9, 4.2))
plt.show()
""")

code(r"""
explorer(draw_toy,
         [Slider("margin", values=[0.1, 0.5, 1.0, 2.0, 3.0], value=1.0, label="margin m", fmt="{:g}"),
          Slider("form", values=["source", "hadsell"], value="source", label="loss")],
         title="Free points under the contrastive loss (dashed circles: radius m/2 around each class centre)")
""", tags=["nbval-ignore-output"])

md(r"""
Reading the table and the explorer (the dashed circles have radius $m/2$, so two circles
overlap exactly when their centres are closer than the margin):

* **The margin sets the spacing.** The push stops once a different-class pair is $m$ apart,
  so, for margins large enough to matter, the distance between class centres grows with $m$
  until the disc runs out of room. The source's form puts the centres about $m$ apart;
  Hadsell's leaves them closer than $m$, because its push $m - d$ fades as a pair approaches
  the margin while the noise keeps spreading the classes.
* **Too small a margin** stops the push while the classes are still closer than their own
  spread: the within-class distance (set by the noise and the pull) is then comparable to the
  distance between centres, and the nearest-neighbour accuracy drops. Hadsell's pull is weak
  at short range (its force is $d$), so its classes stay wider and suffer more than the
  source's, whose pull is 1 at every distance.
* **Too large a margin** cannot be met: four points in the unit disc cannot all be more than
  $\sqrt 2$ apart, so at margins well above that every different-class pair stays inside the
  margin and keeps pushing (last column), the loss never reaches zero, and the classes are pressed against the
  boundary. In a network without a bound the same margin simply inflates the embedding: the
  loss has no length scale other than $m$.

The cell checks the claims of this list on the numbers above.
""")

code(r"""
src = [spacing[(m, "source")] for m in MARGINS]
had = [spacing[(m, "hadsell")] for m in MARGINS]
active = [m for m in MARGINS if 0.5 <= m < np.sqrt(2)]
print(f"from m = 0.5 up to the disc's limit the centre spacing grows with m (both forms):",
      all(spacing[(m1, f)]["between"] < spacing[(m2, f)]["between"]
          for f in ("source", "hadsell") for m1, m2 in zip(active, active[1:])))
print("there, the source's centres end up at least 0.95 m apart:",
      all(spacing[(m, "source")]["between"] >= 0.95 * m for m in active))
print("and Hadsell's closer than m:", all(spacing[(m, "hadsell")]["between"] < m for m in active))
print("smallest margin: 1-NN accuracy below that at m = 1 (both forms):",
      all(spacing[(MARGINS[0], f)]["nn_accuracy"] < spacing[(1.0, f)]["nn_accuracy"] for f in ("source", "hadsell")))
print("Hadsell's classes wider than the source's at every margin:",
      all(h["within"] > s_["within"] for h, s_ in zip(had, src)))
print("margins 2 and 3: every different pair still inside the margin:",
      all(spacing[(m, f)]["inside_margin"] == 1.0 for f in ("source", "hadsell") for m in MARGINS if m >= 2))
""")

md(r"""
## Exercises

The checks recompute the reference answers with `mlkit`; the fixed problems are named in each
exercise.

```{exercise} The two-step meta-gradient, by hand
:label: ex-ch5-1

For the linear tasks `tasks = mlkit.theory.sample_linear_tasks(seed=0)`, $\alpha = 0.2$ and
two inner steps, compute the meta-gradient $\nabla J(\theta)$ at $\theta = (0, 0)$ from the
two-step formula of section 5.1: build each task's $A_i$ and $b_i$, take the two inner steps,
take the query gradient $2(Q_i\theta_2 - r_i)$ at $\theta_2$, multiply by both Jacobians and
average. Do not call `meta_gradient`. Store the vector
$(\partial J/\partial w, \partial J/\partial b)$ as `answer_1`; the cell after yours checks it.
```

```{solution} ex-ch5-1
:class: dropdown

Here the two Jacobians are equal, $I - \alpha A_i$, so the product is $(I - \alpha A_i)^2$.
The hidden cell below computes it with numpy; its result agrees with autograd through the
inner loop.
```
""")

code(r"""
X = torch.cat([tasks.support_x, torch.ones_like(tasks.support_x)], -1).numpy()
Xq = torch.cat([tasks.query_x, torch.ones_like(tasks.query_x)], -1).numpy()
ys, yq = tasks.support_y.numpy()[..., 0], tasks.query_y.numpy()[..., 0]
alpha_ex, th = 0.2, np.zeros(2)
grads = []
for Xi, yi, Xqi, yqi in zip(X, ys, Xq, yq):
    Ai, bi = 2 / len(yi) * Xi.T @ Xi, 2 / len(yi) * Xi.T @ yi
    t1 = th - alpha_ex * (Ai @ th - bi)
    t2 = t1 - alpha_ex * (Ai @ t1 - bi)
    gq = 2 * (Xqi.T @ Xqi @ t2 - Xqi.T @ yqi) / len(yqi)
    J = np.eye(2) - alpha_ex * Ai
    grads.append(J @ J @ gq)
answer_1 = np.mean(grads, axis=0)
""", tags=["solution", "hide-cell"])

code(r"""
from mlkit.exercises import check
check("ex-ch5-1", answer_1)
""")

md(r"""
```{exercise} Doubling the margin
:label: ex-ch5-2

Run the 2-D toy *without* the disc and without noise:
`mlkit.theory.contrastive_toy(points, labels, m, form="hadsell", radius=None, steps=300, lr=0.02)`
with `points, labels = mlkit.theory.toy_points()`. Before you run it, predict the ratio of the
smallest distance between class centres at $m = 2$ to that at $m = 1$. Then compute it with
`class_spacing(...)["between"]` and store the ratio as `answer_2`.
```

```{solution} ex-ch5-2
:class: dropdown

Without a bound and without noise, the loss has no length scale other than $m$: Hadsell's
pull shrinks each class to a point and the push stops at distance $m$, so the spacing of the
centres is $m$ and doubling $m$ doubles it (the ratio is 2 up to the few hundred steps of
gradient descent). With the disc, doubling a margin that is already near the disc's limit
changes nearly nothing, as the table of section 5.2 shows.
```
""")

code(r"""
pts0, lab0 = T.toy_points()
between = [T.class_spacing(T.contrastive_toy(pts0, lab0, m, form="hadsell", radius=None,
                                             steps=300, lr=0.02)[-1], lab0)["between"]
           for m in (1.0, 2.0)]
answer_2 = between[1] / between[0]
""", tags=["solution", "hide-cell"])

code(r"""
check("ex-ch5-2", answer_2)
""")

md(r"""
```{exercise} Where does first-order MAML stop?
:label: ex-ch5-3

First-order MAML replaces $M_i^\top$ in $\nabla J$ by the identity. On the linear tasks of
the first exercise ($\alpha = 0.2$, two inner steps) derive the point $\theta_{FO}$
where this first-order gradient vanishes, compute it, and store it as `answer_3`. Is it the
MAML optimum $\theta^\star$? Confirm by training with
`mlkit.theory.train_linear_maml(tasks, alpha=0.2, inner_steps=2, first_order=True)`.
```

```{solution} ex-ch5-3
:class: dropdown

Setting $\sum_i \big(Q_i (M_i\theta + c_i) - r_i\big) = 0$ gives
$\theta_{FO} = \big(\sum_i Q_i M_i\big)^{-1} \sum_i (r_i - Q_i c_i)$
(`mlkit.theory.linear_fomaml_fixed_point`). It is not $\theta^\star$: the dropped factor
$M_i^\top$ weights the tasks differently, and first-order training converges to
$\theta_{FO}$, a point where the true meta-gradient is not zero.
```
""")

code(r"""
Mk2, c2 = T.inner_affine_map(tasks, alpha=0.2, inner_steps=2)
Qs = np.einsum("tni,tnj->tij", Xq, Xq) / Xq.shape[1]
rs = np.einsum("tni,tn->ti", Xq, yq) / Xq.shape[1]
answer_3 = np.linalg.solve(np.einsum("tij,tjk->ik", Qs, Mk2),
                           (rs - np.einsum("tij,tj->ti", Qs, c2)).sum(0))
fo_path = T.train_linear_maml(tasks, alpha=0.2, inner_steps=2, first_order=True)
star_ex = T.linear_maml_optimum(tasks, alpha=0.2, inner_steps=2)
print(f"first-order training ends within 1e-3 of theta_FO: {np.linalg.norm(fo_path[-1] - answer_3) < 1e-3}; "
      f"theta_FO differs from theta*: {np.linalg.norm(answer_3 - star_ex) > 1e-2}")
""", tags=["solution", "hide-cell"])

code(r"""
check("ex-ch5-3", answer_3)
""")


if __name__ == "__main__":
    nb.write(OUT)
