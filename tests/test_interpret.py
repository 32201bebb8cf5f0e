"""Tests of mlkit.interpret: each tool against a case whose answer is known."""

from __future__ import annotations

import pytest
import torch

from mlkit import interpret
from mlkit.nets import ConvEmbedding, SinusoidMLP

# ------------------------------------------------------------------ patch_mask


def test_patch_mask_labels_patches_row_major():
    m = interpret.patch_mask((1, 4, 6), 2)
    assert m.shape == (1, 4, 6)
    assert m[0, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert m[0, 3].tolist() == [3, 3, 4, 4, 5, 5]
    # 3x3 patches, the last ones narrower
    ragged = interpret.patch_mask((5, 5), 2)
    assert ragged.max() == 8 and ragged[4, 4] == 8


@pytest.mark.parametrize(
    "shape,patch,word",
    [((4,), 2, "shape"), ((4, 4), 0, "patch"), ((4, 4), 5, "patch")],
)
def test_patch_mask_bad_input(shape, patch, word):
    with pytest.raises(ValueError, match=word):
        interpret.patch_mask(shape, patch)


# ------------------------------------------------------ permutation importance


def _linear(w: torch.Tensor, b: float = 0.0):
    return lambda x: x @ w + b


def test_permutation_importance_is_zero_for_ignored_feature():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    w = torch.tensor([2.0, 0.0, -1.0])
    y = x @ w
    res = interpret.permutation_importance(
        _linear(w), x, y, n_repeats=4, seed=1
    )
    assert res.importances.shape == (4, 3)
    assert res.baseline_loss == pytest.approx(0.0, abs=1e-10)
    # exactly: the shuffled column is unused
    assert torch.all(res.importances[:, 1] == 0)
    # For MSE and independent standard normal features, I_j = 2 w_j^2 in
    # expectation.
    mean = res.importances_mean
    assert mean[0] > 4.0 and mean[2] > 1.0 and mean[0] > mean[2]
    assert res.importances_std.shape == (3,)


def test_permutation_importance_reproducible_and_leaves_global_rng_alone():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(3))
    w = torch.tensor([1.0, 2.0, 3.0, 0.5])
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = interpret.permutation_importance(_linear(w), x, x @ w, seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b = interpret.permutation_importance(_linear(w), x, x @ w, seed=7)
    assert torch.equal(a.importances, b.importances)


def test_permutation_importance_per_patch_classifier():
    # A classifier that looks only at the top-left 2x2 patch of a 4x4 image.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 1, 4, 4, generator=g)
    score = lambda x: x[:, 0, :2, :2].sum((-2, -1))  # noqa: E731
    predict = lambda x: torch.stack([score(x), -score(x)], 1)  # noqa: E731
    y = (score(x) < 0).long()
    res = interpret.permutation_importance(
        predict,
        x,
        y,
        feature_mask=interpret.patch_mask(x.shape, 2),
        n_repeats=3,
    )
    assert res.importances.shape == (3, 4)
    assert res.importances_mean[0] > 0.5
    assert torch.all(res.importances[:, 1:] == 0)


def test_permutation_importance_bad_input():
    x, y = torch.randn(10, 3), torch.randn(10)
    f = _linear(torch.ones(3))
    with pytest.raises(ValueError, match="x must hold at least 2"):
        interpret.permutation_importance(f, x[:1], y[:1])
    with pytest.raises(ValueError, match="y must have"):
        interpret.permutation_importance(f, x, y[:5])
    with pytest.raises(ValueError, match="n_repeats"):
        interpret.permutation_importance(f, x, y, n_repeats=0)
    with pytest.raises(ValueError, match="feature_mask"):
        interpret.permutation_importance(
            f, x, y, feature_mask=torch.tensor([0, 2, 2])
        )
    with pytest.raises(ValueError, match="feature_mask"):
        interpret.permutation_importance(
            f, x, y, feature_mask=torch.tensor([0, 1])
        )
    with pytest.raises(ValueError, match="x must be a torch.Tensor"):
        interpret.permutation_importance(f, [[1.0]], y)
    with pytest.raises(ValueError, match="loss_fn"):
        interpret.permutation_importance(
            f, x, y, loss_fn=lambda p, t: (p - t) ** 2
        )


# -------------------------------------------------------------- LIME surrogate


def test_lime_surrogate_recovers_linear_model():
    w = torch.tensor([1.5, -2.0, 0.0, 0.7, 3.0])
    x = torch.tensor([[1.0, 2.0, -1.0, 0.5, -0.4]])
    s = interpret.lime_surrogate(
        _linear(w, 0.3), x, n_samples=300, ridge_alpha=1e-6
    )
    # With a zero baseline, switching feature j off removes w_j x_j: that is
    # its coefficient.
    torch.testing.assert_close(s.coefficients, w * x[0], atol=1e-3, rtol=1e-3)
    assert s.intercept == pytest.approx(0.3, abs=1e-3)
    assert s.attribution.shape == x.shape
    # a linear model is explained exactly
    assert s.fidelity == pytest.approx(1.0, abs=1e-4)


def test_lime_surrogate_fidelity_is_low_for_an_interaction():
    # f = x0 * x1 cannot be written as a sum of per-feature effects of
    # switching them off.
    s = interpret.lime_surrogate(
        lambda x: x[:, 0] * x[:, 1],
        torch.ones(1, 2),
        n_samples=300,
        fidelity_samples=400,
    )
    assert s.fidelity < 0.8
    assert torch.isnan(
        torch.tensor(
            interpret.lime_surrogate(
                lambda x: x[:, 0] * x[:, 1],
                torch.ones(1, 2),
                fidelity_samples=0,
            ).fidelity
        )
    )


def test_lime_surrogate_on_patches_with_target_column():
    # Two outputs; column 1 depends only on the bottom-right patch.
    def predict(x):
        return torch.stack(
            [x.sum((1, 2, 3)), 4.0 * x[:, 0, 2:, 2:].sum((-2, -1))], 1
        )

    x = torch.ones(1, 1, 4, 4)
    s = interpret.lime_surrogate(
        predict,
        x,
        target=1,
        feature_mask=interpret.patch_mask(x.shape, 2),
        n_samples=200,
        ridge_alpha=1e-6,
    )
    torch.testing.assert_close(
        s.coefficients,
        torch.tensor([0.0, 0.0, 0.0, 16.0]),
        atol=1e-3,
        rtol=1e-3,
    )
    assert s.attribution.shape == x.shape
    assert torch.all(s.attribution[0, 0, 2:, 2:] == s.coefficients[3])
    # Reproducible from the seed.
    t = interpret.lime_surrogate(
        predict,
        x,
        target=1,
        feature_mask=interpret.patch_mask(x.shape, 2),
        n_samples=200,
        ridge_alpha=1e-6,
    )
    assert torch.equal(s.coefficients, t.coefficients)


def test_lime_surrogate_bad_input():
    f = _linear(torch.ones(3))
    with pytest.raises(ValueError, match="x must be one example"):
        interpret.lime_surrogate(f, torch.ones(2, 3))
    with pytest.raises(ValueError, match="n_samples"):
        interpret.lime_surrogate(f, torch.ones(1, 3), n_samples=1)
    with pytest.raises(ValueError, match="fidelity_samples"):
        interpret.lime_surrogate(f, torch.ones(1, 3), fidelity_samples=-1)
    with pytest.raises(ValueError, match="kernel_width"):
        interpret.lime_surrogate(f, torch.ones(1, 3), kernel_width=0.0)
    with pytest.raises(ValueError, match="target"):
        interpret.lime_surrogate(
            lambda x: torch.stack([f(x), f(x)], 1), torch.ones(1, 3), target=2
        )


# ----------------------------------------------------------- support attention


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_support_attention_rows_sum_to_one(metric):
    g = torch.Generator().manual_seed(0)
    q, s = torch.randn(7, 16, generator=g), torch.randn(10, 16, generator=g)
    a = interpret.support_attention(q, s, metric=metric, temperature=0.5)
    assert a.shape == (7, 10)
    assert torch.all(a >= 0)
    torch.testing.assert_close(a.sum(1), torch.ones(7))


def test_support_attention_prefers_nearest_support_example():
    s = torch.eye(4) * 3.0
    q = s[[2, 0]] + 0.1
    a = interpret.support_attention(q, s)
    assert a.argmax(1).tolist() == [2, 0]
    cos = interpret.support_attention(q, s, metric="cosine", temperature=0.1)
    assert cos.argmax(1).tolist() == [2, 0]
    # A very low temperature approaches a hard nearest-neighbour choice.
    hard = interpret.support_attention(q, s, temperature=1e-3)
    torch.testing.assert_close(hard, torch.eye(4)[[2, 0]])


def test_class_attention_sums_per_class():
    a = torch.tensor([[0.1, 0.2, 0.3, 0.4], [0.5, 0.0, 0.5, 0.0]])
    y = torch.tensor([0, 1, 0, 1])
    torch.testing.assert_close(
        interpret.class_attention(a, y), torch.tensor([[0.4, 0.6], [1.0, 0.0]])
    )


def test_support_attention_bad_input():
    q, s = torch.randn(2, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="metric"):
        interpret.support_attention(q, s, metric="manhattan")
    with pytest.raises(ValueError, match="temperature"):
        interpret.support_attention(q, s, temperature=0)
    with pytest.raises(ValueError, match="support must have"):
        interpret.support_attention(q, torch.randn(4, 5))
    with pytest.raises(ValueError, match="query"):
        interpret.support_attention(torch.randn(3), s)
    with pytest.raises(ValueError, match="support_y"):
        interpret.class_attention(torch.ones(2, 4) / 4, torch.tensor([0, 1]))


# ----------------------------------------------------------------- activations


def test_record_activations_shapes_and_removal():
    torch.manual_seed(0)
    net = ConvEmbedding(hidden=8, layers=4)
    x = torch.randn(5, 1, 28, 28)
    names = ["body.0", "body.1", "body.3"]
    with interpret.record_activations(net, names) as acts:
        net(x)
    assert list(acts) == names
    assert acts["body.0"].shape == (5, 8, 14, 14)
    assert acts["body.1"].shape == (5, 8, 7, 7)
    assert acts["body.3"].shape == (5, 8, 1, 1)
    assert not acts["body.0"].requires_grad
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_record_activations_default_leaves_and_removal_after_error():
    net = SinusoidMLP()
    with pytest.raises(RuntimeError):
        with interpret.record_activations(net) as acts:
            net(torch.ones(3, 1))
            raise RuntimeError("boom")
    assert set(acts) == {"body.0", "body.1", "body.2", "body.3", "head"}
    assert acts["body.1"].shape == (3, 40) and torch.all(acts["body.1"] >= 0)
    assert all(len(m._forward_hooks) == 0 for m in net.modules())


def test_record_activations_with_fast_weights():
    net = SinusoidMLP()
    fast = {n: torch.zeros_like(p) for n, p in net.named_parameters()}
    with interpret.record_activations(net, ["body.1"]) as acts:
        torch.func.functional_call(net, fast, (torch.ones(2, 1),))
    # the zero fast weights were used, not net's
    assert torch.all(acts["body.1"] == 0)


def test_record_activations_bad_input():
    with pytest.raises(ValueError, match="layers"):
        with interpret.record_activations(SinusoidMLP(), ["body.9"]):
            pass
    with pytest.raises(ValueError, match="model"):
        with interpret.record_activations(lambda x: x):
            pass


def test_feature_mask_for_one_image_is_broadcast_over_channels_and_batch():
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    f = lambda x: x[:, 0, :2, :2].sum((-2, -1))  # noqa: E731
    res = interpret.permutation_importance(
        f, x, f(x), feature_mask=interpret.patch_mask((4, 4), 2), n_repeats=2
    )
    assert res.importances.shape == (2, 4)
    with pytest.raises(ValueError, match="feature_mask has more dimensions"):
        interpret.permutation_importance(
            f,
            x,
            f(x),
            feature_mask=torch.zeros(1, 1, 1, 4, 4, dtype=torch.long),
        )


# --------------------------------------------------------------- weight change


def test_weight_change_relative_and_absolute():
    before = {
        "a": torch.tensor([3.0, 4.0]),
        "b": torch.zeros(2),
        "c": torch.ones(2, 2),
    }
    after = {
        "a": torch.tensor([3.0, 4.5]),
        "b": torch.tensor([0.0, 1.0]),
        "c": torch.ones(2, 2),
    }
    rel = interpret.weight_change(before, after)
    assert rel["a"] == pytest.approx(0.1)
    assert rel["b"] == float("inf") and rel["c"] == 0.0
    assert interpret.weight_change(before, after, relative=False)[
        "b"
    ] == pytest.approx(1.0)


def test_weight_change_of_one_gradient_step_is_alpha_times_gradient():
    net = SinusoidMLP()
    x = torch.linspace(-1, 1, 8)[:, None]
    loss = ((net(x) - x) ** 2).mean()
    names, params = zip(*net.named_parameters())
    grads = torch.autograd.grad(loss, params)
    after = {n: p - 0.1 * g for n, p, g in zip(names, params, grads)}
    change = interpret.weight_change(
        dict(net.named_parameters()), after, relative=False
    )
    for n, g in zip(names, grads):
        assert change[n] == pytest.approx(0.1 * float(g.norm()), rel=1e-5)


def test_weight_change_bad_input():
    with pytest.raises(
        ValueError, match="after must have the same parameter names"
    ):
        interpret.weight_change({"a": torch.ones(1)}, {"b": torch.ones(1)})
    with pytest.raises(ValueError, match=r"after\['a'\] has shape"):
        interpret.weight_change({"a": torch.ones(1)}, {"a": torch.ones(2)})
    with pytest.raises(ValueError, match="mappings"):
        interpret.weight_change([torch.ones(1)], {"a": torch.ones(1)})
