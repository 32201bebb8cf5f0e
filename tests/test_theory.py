"""Tests of mlkit.theory (chapter 5): the meta-gradient three ways, the
closed-form linear MAML optimum, the cost measurement, and the contrastive
gradients and toy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mlkit import data
from mlkit import maml
from mlkit import siamese
from mlkit import theory
from mlkit.nets import SinusoidMLP


def _tiny(seed=0, hidden=(5,)):
    torch.manual_seed(seed)
    net = SinusoidMLP(hidden).double()
    batch = theory.to_double(
        data.sample_sinusoid_tasks(3, 5, 6, seed=seed + 1)
    )
    return net, batch


# -------------------------------------------------------------- meta-gradients


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_hvp_and_explicit_hessians_equal_autograd(steps):
    net, batch = _tiny()
    kw = dict(loss_fn=maml.mse_loss, inner_steps=steps, alpha=0.05)
    auto = theory.flat(maml.meta_gradient(net, batch, **kw))
    hvp = theory.flat(theory.hvp_meta_gradient(net, batch, **kw))
    explicit = theory.explicit_meta_gradient(net, batch, **kw)
    torch.testing.assert_close(hvp, auto, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(explicit, auto, rtol=1e-10, atol=1e-12)
    # and first order really differs here, so the comparison can fail
    fo = theory.flat(maml.meta_gradient(net, batch, first_order=True, **kw))
    assert (fo - auto).norm() > 1e-3 * auto.norm()


def test_three_ways_and_agreement():
    net, batch = _tiny()
    g = theory.meta_gradients_three_ways(
        net, batch, loss_fn=maml.mse_loss, inner_steps=2, alpha=0.05
    )
    assert set(g) == {"autograd", "hvp", "first_order"}
    same = theory.gradient_agreement(g["hvp"], g["autograd"])
    assert same["cosine"] == pytest.approx(1.0, abs=1e-12)
    assert same["norm_ratio"] == pytest.approx(1.0, abs=1e-12)
    fo = theory.gradient_agreement(g["first_order"], g["autograd"])
    assert fo["cosine"] < 1 - 1e-6
    v = torch.tensor([1.0, 0.0])
    assert theory.gradient_agreement(2 * v, v) == {
        "cosine": 1.0,
        "norm_ratio": 2.0,
    }
    assert theory.gradient_agreement(-v, v)["cosine"] == -1.0


def test_zero_inner_steps_meta_gradient_is_plain_gradient():
    net, batch = _tiny()
    g = theory.flat(
        theory.hvp_meta_gradient(
            net, batch, loss_fn=maml.mse_loss, inner_steps=0, alpha=0.1
        )
    )
    fo = theory.flat(
        maml.meta_gradient(
            net, batch, loss_fn=maml.mse_loss, inner_steps=0, alpha=0.1
        )
    )
    torch.testing.assert_close(g, fo)


def test_first_order_drift_rows():
    rows = theory.first_order_drift(
        4, every=2, meta_batch=3, k_shot=4, hidden=(8,)
    )
    assert [r["iteration"] for r in rows] == [0, 2, 4]
    for r in rows:
        assert r["hvp_cosine"] == pytest.approx(1.0, abs=1e-9)
        assert r["hvp_norm_ratio"] == pytest.approx(1.0, abs=1e-9)
        assert -1 <= r["cosine"] <= 1 and r["norm_ratio"] > 0
    # meta-training changed the model between rows
    assert rows[0]["meta_loss"] != rows[-1]["meta_loss"]


# ---------------------------------------------------------------- linear MAML


@pytest.mark.parametrize(
    "alpha,steps", [(0.1, 1), (0.3, 2), (0.2, 5), (0.3, 0)]
)
def test_closed_form_is_a_stationary_point_and_a_minimum(alpha, steps):
    tasks = theory.sample_linear_tasks(seed=3)
    th = theory.linear_maml_optimum(tasks, alpha=alpha, inner_steps=steps)
    assert (
        np.abs(
            theory.linear_maml_gradient(
                tasks, th, alpha=alpha, inner_steps=steps
            )
        ).max()
        < 1e-10
    )
    # mlkit.maml's own meta-gradient (autograd through the inner loop)
    # vanishes there too
    g = (
        theory.flat(
            maml.meta_gradient(
                theory.linear_model(th),
                tasks,
                loss_fn=maml.mse_loss,
                inner_steps=steps,
                alpha=alpha,
            )
        )
        .detach()
        .numpy()
    )
    assert np.abs(g).max() < 1e-9
    rng = np.random.default_rng(0)
    f0 = theory.linear_maml_objective(
        tasks, th, alpha=alpha, inner_steps=steps
    )
    for _ in range(5):
        assert (
            theory.linear_maml_objective(
                tasks,
                th + 0.05 * rng.normal(size=2),
                alpha=alpha,
                inner_steps=steps,
            )
            > f0
        )


def test_linear_objective_and_gradient_match_mlkit_maml():
    tasks = theory.sample_linear_tasks(seed=1)
    theta = np.array([0.3, -0.7])
    model = theory.linear_model(theta)
    losses, _ = maml.query_loss(
        model, tasks, loss_fn=maml.mse_loss, inner_steps=3, alpha=0.2
    )
    assert float(losses.mean().detach()) == pytest.approx(
        float(
            theory.linear_maml_objective(
                tasks, theta, alpha=0.2, inner_steps=3
            )
        ),
        rel=1e-12,
    )
    g = theory.flat(
        maml.meta_gradient(
            model, tasks, loss_fn=maml.mse_loss, inner_steps=3, alpha=0.2
        )
    )
    np.testing.assert_allclose(
        g.detach().numpy(),
        theory.linear_maml_gradient(tasks, theta, alpha=0.2, inner_steps=3),
        rtol=1e-10,
    )
    # vectorised over a grid
    grid = np.stack([theta, theta + 1])[None]
    vals = theory.linear_maml_objective(tasks, grid, alpha=0.2, inner_steps=3)
    assert vals.shape == (1, 2)


def test_inner_affine_map_equals_adapt():
    tasks = theory.sample_linear_tasks(seed=2)
    Mk, c = theory.inner_affine_map(tasks, alpha=0.15, inner_steps=3)
    theta = np.array([0.5, 0.2])
    fast = maml.adapt_tasks(
        theory.linear_model(theta),
        tasks.support_x,
        tasks.support_y,
        loss_fn=maml.mse_loss,
        inner_steps=3,
        alpha=0.15,
    )
    got = torch.stack(
        [fast["head.weight"][:, 0, 0], fast["head.bias"][:, 0]], 1
    )
    np.testing.assert_allclose(
        got.detach().numpy(), Mk @ theta + c, rtol=1e-12
    )


def test_meta_training_converges_to_the_closed_form_and_fomaml_elsewhere():
    tasks = theory.sample_linear_tasks(seed=0)
    th = theory.linear_maml_optimum(tasks, alpha=0.2, inner_steps=2)
    path = theory.train_linear_maml(
        tasks, alpha=0.2, inner_steps=2, iterations=240, snapshots=3
    )
    assert path.shape == (4, 2)
    assert np.linalg.norm(path[-1] - th) < 1e-3
    assert np.linalg.norm(path[0] - th) > 0.5
    fo = theory.linear_fomaml_fixed_point(tasks, alpha=0.2, inner_steps=2)
    assert np.linalg.norm(fo - th) > 0.05
    path_fo = theory.train_linear_maml(
        tasks,
        alpha=0.2,
        inner_steps=2,
        iterations=240,
        snapshots=1,
        first_order=True,
    )
    assert np.linalg.norm(path_fo[-1] - fo) < 1e-3


def test_zero_steps_is_pooled_least_squares():
    tasks = theory.sample_linear_tasks(seed=4)
    X = (
        torch.cat([tasks.query_x, torch.ones_like(tasks.query_x)], -1)
        .reshape(-1, 2)
        .numpy()
    )
    y = tasks.query_y.reshape(-1).numpy()
    ls = np.linalg.lstsq(X, y, rcond=None)[0]
    np.testing.assert_allclose(
        theory.linear_maml_optimum(tasks, alpha=0.1, inner_steps=0),
        ls,
        rtol=1e-10,
    )


# ---------------------------------------------------------------- cost


def test_autograd_peak_bytes_counts_saved_tensors():
    x = torch.randn(1000, dtype=torch.float64, requires_grad=True)
    _, n = theory.autograd_peak_bytes(
        lambda: (x * x).sum()
    )  # mul saves x (once: same storage)
    assert n == 8000
    _, n = theory.autograd_peak_bytes(
        lambda: torch.autograd.grad((x.exp()).sum(), x)
    )
    assert n == 8000  # exp saves its output, freed by the backward pass
    # add saves nothing
    _, n = theory.autograd_peak_bytes(lambda: (x + 1).sum())
    assert n == 0


def test_cost_second_order_memory_grows_first_order_does_not():
    rows = theory.meta_gradient_cost(
        (1, 2, 4), repeats=1, meta_batch=2, k_shot=3, hidden=(8,)
    )
    second = [r["graph_bytes"] for r in rows if r["order"] == "second"]
    first = [r["graph_bytes"] for r in rows if r["order"] == "first"]
    assert second[0] < second[1] < second[2]
    assert len(set(first)) == 1 and first[0] < second[0]
    assert all(r["seconds"] > 0 for r in rows)


# ---------------------------------------------------------------- contrastive


@pytest.mark.parametrize("form", ["source", "hadsell"])
def test_contrastive_gradients_equal_autograd(form):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(40, 3, generator=g, dtype=torch.float64)
    b = torch.randn(40, 3, generator=g, dtype=torch.float64)
    same = (torch.arange(40) % 2).double()
    margin = 2.0
    a_, b_ = a.clone().requires_grad_(), b.clone().requires_grad_()
    loss = siamese.contrastive_loss(
        siamese.euclidean_distance(a_, b_),
        same,
        margin,
        form=form,
        reduction="sum",
    )
    ga, gb = torch.autograd.grad(loss, [a_, b_])
    ca, cb = theory.contrastive_gradients(a, b, same, margin, form=form)
    # the eps inside euclidean_distance moves the result by ~1e-8 relative
    torch.testing.assert_close(ca, ga, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(cb, gb, rtol=1e-6, atol=1e-7)
    d = (a - b).norm(dim=1)
    assert bool(
        ((d > margin) & (same == 0)).any()
    ), "the test needs pairs beyond the margin"


@pytest.mark.parametrize("form", ["source", "hadsell"])
def test_gradient_beyond_the_margin_is_zero(form):
    a = torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[3.0, 0.0], [0.0, 1.5]], dtype=torch.float64)
    ga, gb = theory.contrastive_gradients(a, b, torch.zeros(2), 1.0, form=form)
    assert torch.equal(ga, torch.zeros_like(ga)) and torch.equal(
        gb, torch.zeros_like(gb)
    )
    a_ = a.clone().requires_grad_()
    loss = siamese.contrastive_loss(
        siamese.euclidean_distance(a_, b), torch.zeros(2), 1.0, form=form
    )
    (g,) = torch.autograd.grad(loss, a_)
    assert torch.equal(g, torch.zeros_like(g))


def test_singularity_at_zero_distance():
    a = torch.zeros(1, 2, dtype=torch.float64)
    src, _ = theory.contrastive_gradients(
        a, a.clone(), torch.ones(1), 1.0, form="source"
    )
    assert torch.isnan(src).all()
    had_same, _ = theory.contrastive_gradients(
        a, a.clone(), torch.ones(1), 1.0, form="hadsell"
    )
    assert torch.equal(had_same, torch.zeros_like(had_same))
    had_diff, _ = theory.contrastive_gradients(
        a, a.clone(), torch.zeros(1), 1.0, form="hadsell"
    )
    assert torch.isnan(had_diff).all()
    # the eps-smoothed distance of mlkit.siamese has gradient 0 there instead
    x = a.clone().requires_grad_()
    (g,) = torch.autograd.grad(siamese.euclidean_distance(x, a).sum(), x)
    assert torch.equal(g, torch.zeros_like(g))


def test_contrastive_toy_separates_classes_and_margin_sets_spacing():
    p, y = theory.toy_points(3, 5, seed=1)
    for m in (1.0, 2.0):
        tr = theory.contrastive_toy(
            p, y, m, form="hadsell", radius=None, steps=300, lr=0.02
        )
        s = theory.class_spacing(tr[-1], y, m)
        assert tr.shape == (5, 15, 2)
        assert s["nn_accuracy"] == 1.0
        assert s["between"] == pytest.approx(m, rel=0.05)
        assert s["within"] < 1e-3
    # radius: no point leaves the disc, even with noise
    tr = theory.contrastive_toy(p, y, 3.0, radius=1.0, noise=0.1, steps=50)
    assert np.linalg.norm(tr[-1], axis=1).max() <= 1.0 + 1e-12
    # same seed, same run
    np.testing.assert_array_equal(
        tr, theory.contrastive_toy(p, y, 3.0, radius=1.0, noise=0.1, steps=50)
    )


def test_class_spacing_values():
    pts = np.array([[0.0, 0.0], [0.0, 1.0], [3.0, 0.0], [3.0, 1.0]])
    s = theory.class_spacing(pts, [0, 0, 1, 1], margin=3.1)
    assert s["within"] == pytest.approx(1.0)
    assert s["between"] == pytest.approx(3.0)
    assert s["gap"] == pytest.approx(3.0)
    assert s["nn_accuracy"] == 1.0
    assert s["inside_margin"] == pytest.approx(0.5)


# ---------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument():
    net, batch = _tiny()
    tasks = theory.sample_linear_tasks()
    cases = [
        (
            lambda: theory.hvp_meta_gradient(
                net, batch, loss_fn=maml.mse_loss, inner_steps=-1
            ),
            "inner_steps",
        ),
        (
            lambda: theory.hvp_meta_gradient(
                net, batch, loss_fn=maml.mse_loss, alpha=0.0
            ),
            "alpha",
        ),
        (
            lambda: theory.hvp_meta_gradient(
                net, object(), loss_fn=maml.mse_loss
            ),
            "batch",
        ),
        (
            lambda: theory.explicit_meta_gradient(
                net, batch, loss_fn=maml.mse_loss, max_params=10
            ),
            "max_params",
        ),
        (
            lambda: theory.gradient_agreement(torch.ones(2), torch.ones(3)),
            "approx",
        ),
        (
            lambda: theory.gradient_agreement(torch.ones(2), torch.zeros(2)),
            "exact",
        ),
        (lambda: theory.sample_linear_tasks(0), "n_tasks"),
        (lambda: theory.sample_linear_tasks(noise=-1.0), "noise"),
        (
            lambda: theory.linear_maml_optimum(
                tasks, alpha=math.nan, inner_steps=1
            ),
            "alpha",
        ),
        (
            lambda: theory.linear_maml_optimum(
                tasks, alpha=0.1, inner_steps=1.5
            ),
            "inner_steps",
        ),
        (
            lambda: theory.linear_maml_optimum(
                batch, alpha=0.1, inner_steps=1
            ),
            "tasks",
        ),
        (
            lambda: theory.linear_maml_objective(
                tasks, np.zeros(3), alpha=0.1, inner_steps=1
            ),
            "theta",
        ),
        (
            lambda: theory.train_linear_maml(
                tasks, alpha=0.1, inner_steps=1, iterations=0
            ),
            "iterations",
        ),
        (lambda: theory.meta_gradient_cost(()), "inner_steps"),
        (lambda: theory.meta_gradient_cost((1,), repeats=0), "repeats"),
        (lambda: theory.first_order_drift(0), "iterations"),
        (
            lambda: theory.contrastive_gradients(
                torch.ones(2, 2), torch.ones(2, 2), torch.ones(2), -1.0
            ),
            "margin",
        ),
        (
            lambda: theory.contrastive_gradients(
                torch.ones(2, 2),
                torch.ones(2, 2),
                torch.ones(2),
                1.0,
                form="x",
            ),
            "form",
        ),
        (
            lambda: theory.contrastive_gradients(
                torch.ones(2, 2), torch.ones(3, 2), torch.ones(2), 1.0
            ),
            "a and b",
        ),
        (
            lambda: theory.contrastive_gradients(
                torch.ones(2, 2), torch.ones(2, 2), torch.ones(3), 1.0
            ),
            "same",
        ),
        (
            lambda: theory.contrastive_toy(
                np.zeros((4, 2)), [0, 0, 1, 1], 0.0
            ),
            "margin",
        ),
        (
            lambda: theory.contrastive_toy(
                np.zeros((4, 2)), [0, 0, 1, 1], 1.0, steps=0
            ),
            "steps",
        ),
        (
            lambda: theory.contrastive_toy(
                np.zeros((4, 2)), [0, 0, 1, 1], 1.0, lr=-1.0
            ),
            "lr",
        ),
        (
            lambda: theory.contrastive_toy(
                np.zeros((4, 2)), [0, 0, 1, 1], 1.0, radius=0.0
            ),
            "radius",
        ),
        (
            lambda: theory.contrastive_toy(
                np.zeros((4, 2)), [0, 0, 1, 1], 1.0, noise=-0.1
            ),
            "noise",
        ),
        (
            lambda: theory.contrastive_toy(
                np.zeros((4, 2)), [0, 0, 0, 0], 1.0
            ),
            "labels",
        ),
        (
            lambda: theory.contrastive_toy(np.zeros((4, 2)), [0, 1], 1.0),
            "points",
        ),
        (lambda: theory.toy_points(1), "n_classes"),
        (lambda: theory.toy_points(separation=-1.0), "separation"),
    ]
    for fn, name in cases:
        with pytest.raises(ValueError, match=name):
            fn()


def test_both_sides_prints_and_decides(capsys):
    assert theory.both_sides(
        "x", np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-12])
    )
    out = capsys.readouterr().out
    assert "left  [1, 2]" in out and "agree: True" in out
    assert not theory.both_sides("y", 1.0, 1.1)
    assert "agree: False" in capsys.readouterr().out
    with pytest.raises(ValueError, match="left and right"):
        theory.both_sides("z", np.ones(2), np.ones(3))
