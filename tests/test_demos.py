"""Tests of mlkit.demos, the small models of chapters 1 and 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mlkit import data
from mlkit import demos
from mlkit.nets import SinusoidMLP


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models train many times faster on one thread on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fit_from_scratch_fits_its_support_points():
    task = data.sample_sinusoid_tasks(1, k_shot=5, seed=0)
    model = demos.fit_from_scratch(
        task.support_x[0], task.support_y[0], steps=300
    )
    with torch.no_grad():
        err = torch.nn.functional.mse_loss(
            model(task.support_x[0]), task.support_y[0]
        )
    assert err < 0.05  # five points are easy to fit exactly ...
    errors = demos.scratch_errors(
        data.sample_sinusoid_tasks(3, 5, 50, seed=1), steps=300
    )
    # ... and the curve between them is not
    assert errors.shape == (3,) and np.all(errors > 0.05)


def test_fit_from_scratch_bad_input():
    x = torch.zeros(5, 1)
    with pytest.raises(ValueError, match="steps"):
        demos.fit_from_scratch(x, x, steps=-1)
    with pytest.raises(ValueError, match="lr"):
        demos.fit_from_scratch(x, x, lr=0.0)
    with pytest.raises(ValueError, match="support_x and support_y"):
        demos.fit_from_scratch(x, torch.zeros(4, 1))


def test_sinusoid_tasks_with_amplitudes():
    t = demos.sinusoid_tasks_with_amplitudes(
        [0.5, 8.0], k_shot=5, n_query=7, seed=0
    )
    assert t.support_x.shape == (2, 5, 1) and t.query_y.shape == (2, 7, 1)
    torch.testing.assert_close(t.amplitude, torch.tensor([0.5, 8.0]))
    y = t.amplitude[:, None, None] * torch.sin(
        t.support_x - t.phase[:, None, None]
    )
    torch.testing.assert_close(t.support_y, y)
    with pytest.raises(ValueError, match="amplitude"):
        demos.sinusoid_tasks_with_amplitudes([], 5, 5)
    with pytest.raises(ValueError, match="k_shot"):
        demos.sinusoid_tasks_with_amplitudes([1.0], 0, 5)


def test_prototype_classifier_by_hand():
    # an identity "embedding" of 2 numbers: prototypes (1, 0) and (0, 4)
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    clf = demos.PrototypeClassifier(
        nn.Identity(), support, torch.tensor([0, 0, 1])
    )
    logits = clf(torch.tensor([[1.0, 0.0], [0.0, 3.0]]))
    torch.testing.assert_close(
        logits, torch.tensor([[0.0, -17.0], [-10.0, -1.0]])
    )


def test_prototype_classifier_scores_each_query_alone():
    torch.manual_seed(0)
    net = demos.InductiveConvEmbedding(hidden=8)
    sx, sy = torch.rand(4, 1, 28, 28), torch.tensor([0, 0, 1, 1])
    clf = demos.PrototypeClassifier(net, sx, sy)
    q = torch.rand(6, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(clf(q)[:2], clf(q[:2]))
    assert clf(q).shape == (6, 2)


def test_add_marker():
    x = torch.zeros(2, 1, 28, 28)
    m = demos.add_marker(x, size=5, offset=1)
    assert m[..., 1:6, 1:6].eq(1).all() and m.sum() == 2 * 25 and x.sum() == 0
    with pytest.raises(ValueError, match="size"):
        demos.add_marker(x, size=30)


def test_sinusoid_weight_changes_shapes():
    torch.manual_seed(0)
    model = SinusoidMLP()
    tasks = data.sample_sinusoid_tasks(3, 5, seed=0)
    changes = demos.sinusoid_weight_changes(
        model, tasks, inner_steps=2, alpha=0.01
    )
    assert set(changes) == {n for n, _ in model.named_parameters()}
    assert all(v.shape == (3,) and np.all(v > 0) for v in changes.values())


@pytest.fixture(scope="module")
def tiny_net():
    pytest.importorskip("PIL")
    try:
        data.omniglot_classes("background")
    except (FileNotFoundError, OSError) as e:  # no data and no network
        pytest.skip(f"Omniglot not available: {e}")
    return demos.train_tiny_protonet(20, hidden=8, seed=0)


def test_train_tiny_protonet_and_evaluate(tiny_net):
    net, history = tiny_net
    assert len(history) == 20 and not net.training
    assert {"episode", "loss", "accuracy"} <= set(history[0])
    acc = demos.evaluate_protonet(net, 5, seed=1)
    assert acc.shape == (5,) and np.all((0 <= acc) & (acc <= 1))
    again, _ = demos.train_tiny_protonet(20, hidden=8, seed=0)
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_marker_shortcut_keys_and_ranges(tiny_net):
    res = demos.marker_shortcut(tiny_net[0], 3, seed=0)
    assert set(res) == {
        "clean",
        "same source",
        "new source",
        "sent to marked class",
    }
    assert all(
        v.shape == (3,) and np.all((0 <= v) & (v <= 1)) for v in res.values()
    )


def test_episode_images_full_size():
    try:
        pool = data.omniglot_classes("evaluation")
    except (FileNotFoundError, OSError) as e:
        pytest.skip(f"Omniglot not available: {e}")
    ep = data.sample_episode(pool, 3, 1, 1, seed=0)
    full = demos.episode_images_full_size(
        pool, ep.query_x, ep.query_y, ep.classes
    )
    assert full.shape == (3, 105, 105)
    small = torch.nn.functional.interpolate(
        torch.from_numpy(full.copy())[:, None], size=28, mode="area"
    )
    torch.testing.assert_close(small, ep.query_x)
