"""Tests of chapter 6's tools in mlkit.interpret: CKA, frozen-statistics
attributions, support influence and the inner-loop trajectory, each against a
case whose answer is known.
"""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mlkit import interpret
from mlkit import maml
from mlkit.nets import ConvNet, InductiveConvEmbedding


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------ linear CKA


def test_cka_of_a_representation_with_itself_is_one():
    x = torch.randn(40, 7, generator=_gen())
    assert interpret.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    conv = torch.randn(10, 3, 4, 4, generator=_gen(1))  # flattened per example
    assert interpret.linear_cka(conv, conv) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transforms_and_isotropic_scaling():
    g = _gen(2)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(6, 9, generator=g, dtype=torch.float64))
    base = interpret.linear_cka(x, y)
    q, _ = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))
    assert interpret.linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert interpret.linear_cka(3.7 * x, 0.02 * y) == pytest.approx(
        base, abs=1e-10
    )
    assert interpret.linear_cka(x, x @ q * 5.0) == pytest.approx(
        1.0, abs=1e-10
    )
    assert 0.0 < base < 1.0
    # not invariant to a general invertible map: stretching one axis changes it
    stretch = torch.diag(
        torch.tensor([50.0, 1, 1, 1, 1, 1], dtype=torch.float64)
    )
    assert abs(interpret.linear_cka(x @ stretch, y) - base) > 1e-3


def test_cka_of_independent_noise_is_small():
    a = torch.randn(2000, 5, generator=_gen(3))
    b = torch.randn(2000, 5, generator=_gen(4))
    assert interpret.linear_cka(a, b) < 0.02


@pytest.mark.parametrize(
    "x,y,word",
    [
        (torch.ones(6, 3), torch.randn(6, 2), "vary"),
        (torch.randn(5, 3), torch.randn(4, 3), "same examples"),
        (torch.randn(1, 3), torch.randn(1, 3), "at least 4"),
        ([[1.0, 2.0]], torch.randn(1, 2), "x must be a torch.Tensor"),
        (torch.full((3, 2), float("nan")), torch.randn(3, 2), "finite"),
    ],
)
def test_cka_bad_input(x, y, word):
    with pytest.raises(ValueError, match=word):
        interpret.linear_cka(x, y)


def test_layer_cka_is_one_for_unchanged_weights_and_drops_for_a_new_head():
    torch.manual_seed(0)
    net = ConvNet(3)
    x = torch.rand(12, 1, 28, 28, generator=_gen(5))
    same = interpret.layer_cka(net, None, dict(net.named_parameters()), x)
    assert list(same) == ["body.0", "body.1", "body.2", "body.3", "head"]
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in same.values())
    other = {k: v.detach().clone() for k, v in net.named_parameters()}
    other["head.weight"] = torch.randn(
        other["head.weight"].shape, generator=_gen(6)
    )
    changed = interpret.layer_cka(net, None, other, x)
    assert changed["body.3"] == pytest.approx(1.0, abs=1e-9)
    assert changed["head"] < 0.99


# --------------------------------------------- frozen statistics, attributions


def test_frozen_statistics_matches_live_batch_treats_examples_independently():
    torch.manual_seed(1)
    net = ConvNet(4)
    x = torch.rand(8, 1, 28, 28, generator=_gen(7))
    f = interpret.frozen_statistics(net, None, x)
    assert torch.allclose(f(x), net(x), atol=1e-5)
    # one example alone gives the same output as inside the batch
    assert torch.allclose(f(x[2:3]), f(x)[2:3], atol=1e-5)
    # the live network's output for one example depends on its batch mates
    assert not torch.allclose(net(x[:4])[0], net(x)[0], atol=1e-4)
    # hooks are gone afterwards
    assert all(
        not m._forward_hooks and not m._forward_pre_hooks
        for m in net.modules()
    )


def test_frozen_statistics_uses_fast_weights():
    torch.manual_seed(2)
    net = ConvNet(3)
    x = torch.rand(6, 1, 28, 28, generator=_gen(8))
    fast = {k: v.detach() + 0.05 for k, v in net.named_parameters()}
    f = interpret.frozen_statistics(net, fast, x)
    assert torch.allclose(f(x), maml.predict(net, fast, x), atol=1e-5)


def test_integrated_gradients_completeness_on_a_batchnorm_network():
    torch.manual_seed(3)
    net = ConvNet(5).double()
    x = torch.rand(6, 1, 28, 28, generator=_gen(9), dtype=torch.float64)
    f = interpret.frozen_statistics(net, None, x)
    res = interpret.integrated_gradients(
        f, x[:3], target=torch.tensor([0, 2, 4]), n_steps=200
    )
    total = res.attribution.reshape(3, -1).sum(1)
    gap = res.output - res.baseline_output
    assert torch.allclose(
        total, gap, atol=0.02 * float(gap.abs().max()) + 1e-6
    )
    assert res.delta.abs().max() < 0.02 * float(gap.abs().max()) + 1e-6


def test_integrated_gradients_exact_for_a_linear_function():
    w = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.tensor([[1.0, 1.0, 2.0]], dtype=torch.float64)
    res = interpret.integrated_gradients(lambda z: z @ w, x, n_steps=8)
    assert torch.allclose(res.attribution, x * w)
    sal = interpret.saliency(lambda z: z @ w, x, absolute=False)
    assert torch.allclose(sal.attribution, w.expand_as(x))


def test_attribution_bad_input():
    f = lambda z: z @ torch.ones(3, 2)  # noqa: E731
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="target"):
        interpret.integrated_gradients(f, x)  # two outputs, no target
    with pytest.raises(ValueError, match="target"):
        interpret.saliency(f, x, target=5)
    with pytest.raises(ValueError, match="n_steps"):
        interpret.integrated_gradients(f, x, target=0, n_steps=1)
    with pytest.raises(ValueError, match="method"):
        interpret.integrated_gradients(f, x, target=0, method="simpson")
    with pytest.raises(ValueError, match="reference_x"):
        interpret.frozen_statistics(ConvNet(2), None, torch.rand(1, 1, 28, 28))


def test_pair_similarity_attributions_complete_for_each_image():
    torch.manual_seed(4)
    emb = InductiveConvEmbedding(hidden=8).double().eval()
    a = torch.rand(1, 1, 28, 28, generator=_gen(10), dtype=torch.float64)
    b = torch.rand(1, 1, 28, 28, generator=_gen(11), dtype=torch.float64)
    s_a = interpret.pair_similarity(emb, b)
    assert s_a(a).shape == (1,) and float(s_a(a).detach()) < 0
    res = interpret.integrated_gradients(s_a, a, n_steps=200)
    gap = float(res.output - res.baseline_output)
    assert float(res.attribution.sum()) == pytest.approx(
        gap, abs=0.02 * abs(gap) + 1e-6
    )
    # roles swapped: symmetric similarity
    s_b = interpret.pair_similarity(emb, a)
    assert float(s_b(b).detach()) == pytest.approx(
        float(s_a(a).detach()), rel=1e-9
    )


def test_prototype_scorer_is_minus_squared_distance_to_class_means():
    z = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    ident = lambda x: x  # noqa: E731
    f = interpret.prototype_scorer(ident, z, torch.tensor([0, 0, 1]))
    out = f(torch.tensor([[1.0, 0.0]]))
    assert torch.allclose(out, torch.tensor([[0.0, -17.0]]))
    with pytest.raises(ValueError, match="support_y"):
        # class 1 has no example
        interpret.prototype_scorer(ident, z, torch.tensor([0, 0, 2]))


def test_support_attention_rows_sum_to_one_on_embeddings():
    a = interpret.support_attention(
        torch.randn(7, 4, generator=_gen(12)),
        torch.randn(5, 4, generator=_gen(13)),
    )
    assert torch.allclose(a.sum(1), torch.ones(7))


def test_permutation_importance_zero_for_a_pixel_the_scorer_ignores():
    z = torch.rand(6, 2, generator=_gen(14))
    # scorer that looks at feature 0 and 1 only, of 3
    f = interpret.prototype_scorer(
        lambda x: x[:, :2], z, torch.tensor([0, 0, 0, 1, 1, 1])
    )
    x = torch.rand(30, 3, generator=_gen(15))
    y = f(x).argmax(1)
    res = interpret.permutation_importance(f, x, y, n_repeats=3)
    assert torch.all(res.importances[:, 2] == 0)


# ----------------------------------------------------------- support influence


def _proto_fit_predict(sx, sy, qx):
    return interpret.prototype_scorer(lambda x: x, sx, sy, 2)(qx)


def test_loo_influence_by_hand():
    sx = torch.tensor([[0.0], [2.0], [10.0], [11.0]])
    sy = torch.tensor([0, 0, 1, 1])
    qx, qy = torch.tensor([[1.0]]), torch.tensor([0])
    inf = interpret.loo_influence(_proto_fit_predict, sx, sy, qx, qy)
    assert inf.shape == (1, 4)

    def loss(s, y):
        return F.cross_entropy(_proto_fit_predict(s, y, qx), qy)

    full = loss(sx, sy)
    for i in range(4):
        keep = torch.arange(4) != i
        assert float(inf[0, i]) == pytest.approx(
            float(loss(sx[keep], sy[keep]) - full), abs=1e-6
        )


def test_gradient_influence_matches_finite_differences_through_inner_loop():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    sx = torch.randn(4, 3, generator=_gen(16), dtype=torch.float64)
    sy = torch.tensor([0, 1, 0, 1])
    qx = torch.randn(3, 3, generator=_gen(17), dtype=torch.float64)
    qy = torch.tensor([1, 0, 1])

    def fit_predict(s, y, q):
        fast = maml.adapt(
            net, s, y, loss_fn=maml.cross_entropy, inner_steps=2, alpha=0.5
        )
        return maml.predict(net, fast, q)

    grad, score = interpret.gradient_influence(fit_predict, sx, sy, qx, qy)

    def qloss(s):
        return float(F.cross_entropy(fit_predict(s, sy, qx), qy).detach())

    eps = 1e-6
    for i, j in [(0, 0), (2, 1), (3, 2)]:
        e = torch.zeros_like(sx)
        e[i, j] = eps
        fd = (qloss(sx + e) - qloss(sx - e)) / (2 * eps)
        assert float(grad[i, j]) == pytest.approx(fd, rel=1e-4, abs=1e-8)
    assert torch.allclose(score, -(grad * sx).sum(1))

    # a learner that detaches its support set leaves no path: a clear error,
    # not zeros
    def detached(s, y, q):
        fast = maml.adapt(
            net,
            s.detach(),
            y,
            loss_fn=maml.cross_entropy,
            inner_steps=1,
            alpha=0.5,
            first_order=True,
        )
        return maml.predict(net, fast, q)

    with pytest.raises(ValueError, match="support_x"):
        interpret.gradient_influence(detached, sx, sy, qx, qy)


def test_influence_bad_input():
    sx, sy = torch.zeros(4, 1), torch.tensor([0, 0, 1, 1])
    with pytest.raises(ValueError, match="query_y"):
        interpret.loo_influence(
            _proto_fit_predict, sx, sy, torch.zeros(2, 1), torch.tensor([0])
        )
    with pytest.raises(ValueError, match="support_y"):
        interpret.loo_influence(
            _proto_fit_predict,
            sx,
            sy[:3],
            torch.zeros(1, 1),
            torch.tensor([0]),
        )
    with pytest.raises(ValueError, match="query_x"):
        interpret.gradient_influence(
            _proto_fit_predict, sx, sy, torch.zeros(1, 2), torch.tensor([0])
        )


# ------------------------------------------------ the inner loop, step by step


def _omniglot_like_task(n_way=3, seed=18):
    g = _gen(seed)
    sx = torch.rand(n_way, 1, 28, 28, generator=g)
    qx = torch.rand(2 * n_way, 1, 28, 28, generator=g)
    return sx, torch.arange(n_way), qx, torch.arange(n_way).repeat(2)


def test_trajectory_equals_adapt_at_every_step():
    torch.manual_seed(6)
    net = ConvNet(3)
    sx, sy, qx, qy = _omniglot_like_task()
    tr = interpret.fast_weight_trajectory(
        net,
        sx,
        sy,
        loss_fn=maml.cross_entropy,
        inner_steps=3,
        alpha=0.3,
        query_x=qx,
        query_y=qy,
    )
    assert (
        len(tr.params) == 4
        and len(tr.support_loss) == 4
        and len(tr.query_accuracy) == 4
    )
    for t in (0, 1, 3):
        ref = maml.adapt(
            net,
            sx,
            sy,
            loss_fn=maml.cross_entropy,
            inner_steps=t,
            alpha=0.3,
            first_order=True,
        )
        for k in ref:
            assert torch.allclose(
                tr.params[t][k], ref[k].detach(), atol=1e-5
            ), (t, k)
    assert tr.support_loss[3] < tr.support_loss[0]
    assert list(tr.step_size) == [
        "body.0",
        "body.1",
        "body.2",
        "body.3",
        "head",
    ]
    assert tr.distance["head"][0] == 0.0 and tr.step_size["head"][0] > 0
    # ANIL: only the head moves
    anil = interpret.fast_weight_trajectory(
        net,
        sx,
        sy,
        loss_fn=maml.cross_entropy,
        inner_steps=2,
        alpha=0.3,
        adapt_names=["head.weight", "head.bias"],
    )
    assert anil.distance["body.0"][-1] == 0.0 and anil.distance["head"][-1] > 0


def test_batched_trajectory_equals_adapt_tasks():
    torch.manual_seed(7)
    net = ConvNet(3)
    tasks = [_omniglot_like_task(seed=s) for s in (19, 20)]
    sx, sy, qx, qy = (torch.stack([t[i] for t in tasks]) for i in range(4))
    tr = interpret.fast_weight_trajectory(
        net,
        sx,
        sy,
        loss_fn=maml.cross_entropy,
        inner_steps=2,
        alpha=0.3,
        query_x=qx,
        query_y=qy,
        batched=True,
    )
    ref = maml.adapt_tasks(
        net,
        sx,
        sy,
        loss_fn=maml.cross_entropy,
        inner_steps=2,
        alpha=0.3,
        first_order=True,
    )
    for k in ref:
        assert torch.allclose(tr.params[2][k], ref[k].detach(), atol=1e-5)
    assert tr.task_accuracy[2].shape == (2,)
    one = interpret.task_params(tr.params[2], 1)
    single = maml.adapt(
        net, sx[1], sy[1], loss_fn=maml.cross_entropy, inner_steps=2, alpha=0.3
    )
    assert torch.allclose(
        one["head.weight"], single["head.weight"].detach(), atol=1e-5
    )
    with pytest.raises(ValueError, match="task"):
        interpret.task_params(tr.params[2], 2)


def test_trajectory_bad_input():
    net = ConvNet(3)
    sx, sy, qx, qy = _omniglot_like_task()
    kw = dict(loss_fn=maml.cross_entropy, alpha=0.3)
    with pytest.raises(ValueError, match="inner_steps"):
        interpret.fast_weight_trajectory(net, sx, sy, inner_steps=-1, **kw)
    with pytest.raises(ValueError, match="alpha"):
        interpret.fast_weight_trajectory(
            net,
            sx,
            sy,
            inner_steps=1,
            loss_fn=maml.cross_entropy,
            alpha=float("inf"),
        )
    with pytest.raises(ValueError, match="query_x and query_y"):
        interpret.fast_weight_trajectory(
            net, sx, sy, inner_steps=1, query_x=qx, **kw
        )
    with pytest.raises(ValueError, match="adapt_names"):
        interpret.fast_weight_trajectory(
            net, sx, sy, inner_steps=1, adapt_names=["tail.weight"], **kw
        )
    with pytest.raises(ValueError, match="support_y"):
        interpret.fast_weight_trajectory(net, sx, sy + 5, inner_steps=1, **kw)


def test_activation_change_zero_without_adaptation_and_positive_after():
    torch.manual_seed(8)
    net = ConvNet(3)
    sx, sy, qx, _ = _omniglot_like_task()
    tr = interpret.fast_weight_trajectory(
        net, sx, sy, loss_fn=maml.cross_entropy, inner_steps=2, alpha=0.5
    )
    ch = interpret.activation_change(net, tr.params, qx)
    assert all(v[0] == 0.0 for v in ch.per_step.values())
    assert ch.per_step["head"][2] > 0
    assert ch.per_unit["body.0"].shape == (64,) and ch.per_unit[
        "head"
    ].shape == (3,)
    with pytest.raises(ValueError, match="params"):
        interpret.activation_change(net, tr.params[:1], qx)


def test_top_activating_effective_rank_dead_units():
    acts = torch.tensor([[0.0, 1.0], [3.0, 0.5], [1.0, 2.0]])
    assert interpret.top_activating(acts, 2).tolist() == [[1, 2], [2, 0]]
    with pytest.raises(ValueError, match="k"):
        interpret.top_activating(acts, 4)
    line = torch.arange(10.0)[:, None] * torch.tensor([[1.0, 2.0, 3.0]])
    assert interpret.effective_rank(line) == pytest.approx(1.0, abs=1e-6)
    spread = torch.eye(4).repeat(2, 1)
    assert interpret.effective_rank(spread) > 2.5
    z = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 0.5]])
    assert interpret.dead_units(z).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="tol"):
        interpret.dead_units(z, tol=-1.0)


def test_layer_of():
    assert interpret.layer_of("body.0.1.weight") == "body.0"
    assert interpret.layer_of("head.bias") == "head"
    assert interpret.layer_of("body.2.0.weight", depth=3) == "body.2.0"
    with pytest.raises(ValueError, match="depth"):
        interpret.layer_of("head.bias", depth=0)


def test_class_selectivity():
    labels = torch.tensor([0, 0, 1, 1])
    z = torch.tensor(
        [[1.0, 0.0, 5.0], [1.0, 1.0, 5.0], [3.0, 0.0, 5.0], [3.0, 1.0, 5.0]]
    )
    eta = interpret.class_selectivity(z, labels)
    assert eta.tolist() == pytest.approx([1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="labels"):
        interpret.class_selectivity(z, labels[:3])


def test_gradient_influence_of_a_prototype_classifier():
    sx = torch.tensor([[0.0], [2.0], [10.0], [11.0]])
    sy = torch.tensor([0, 0, 1, 1])
    # between the prototypes 1 and 10.5
    qx, qy = torch.tensor([[5.5]]), torch.tensor([0])

    def fp(s, y, q):
        return interpret.prototype_scorer(
            lambda x: x, s, y, 2, support_grad=True
        )(q)

    grad, _ = interpret.gradient_influence(fp, sx, sy, qx, qy)
    # moving a class-0 support point towards the query (up) lowers the query
    # loss
    assert grad[0, 0] < 0 and grad[1, 0] < 0

    def no_grad_support(s, y, q):
        # support embedded without grad
        return interpret.prototype_scorer(lambda x: 2.0 * x, s, y, 2)(q)

    with pytest.raises(ValueError, match="support_x"):
        interpret.gradient_influence(no_grad_support, sx, sy, qx, qy)
