"""Tests of mlkit.siamese: distance, both contrastive losses, weight
sharing, pairs, evaluation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlkit import checkpoints
from mlkit import siamese
from mlkit.data import ClassPool, Episode, sample_episode
from mlkit.nets import InductiveConvEmbedding


def _toy_pool(n_chars: int = 12, size: int = 28, seed: int = 0) -> ClassPool:
    """Characters 1..6 are Arcadian, 27..32 Armenian (two alphabets), random
    binary ink."""
    rng = np.random.default_rng(seed)
    images = (rng.random((n_chars, 20, size, size)) < 0.2).astype(np.float32)
    half = n_chars // 2
    ids = np.concatenate(
        [np.arange(1, half + 1), np.arange(27, 27 + n_chars - half)]
    )
    return ClassPool(
        "toy", images, ids, np.arange(n_chars), np.zeros(n_chars, dtype=int)
    )


# --------------------------------------------------------- distance and losses


def test_distance_matches_norm_away_from_zero():
    a, b = torch.tensor([[3.0, 4.0], [1.0, 1.0]]), torch.tensor(
        [[0.0, 0.0], [1.0, 2.0]]
    )
    d = siamese.euclidean_distance(a, b)
    assert torch.allclose(d, torch.tensor([5.0, 1.0]), atol=1e-6)


def test_source_loss_hand_computed():
    d = torch.tensor([0.5, 2.0, 0.3, 1.5])
    same = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # same pairs cost d: 0.5, 2.0; different pairs max(0, 1 - d): 0.7, 0.0
    per = siamese.contrastive_loss(
        d, same, 1.0, form="source", reduction="none"
    )
    assert torch.allclose(per, torch.tensor([0.5, 2.0, 0.7, 0.0]))
    assert siamese.contrastive_loss(
        d, same, 1.0, form="source", reduction="sum"
    ).item() == (pytest.approx(3.2))
    assert siamese.contrastive_loss(
        d, same, 1.0, form="source"
    ).item() == pytest.approx(0.8)


def test_hadsell_loss_hand_computed():
    d = torch.tensor([0.5, 2.0, 0.3, 1.5])
    same = torch.tensor([1, 1, 0, 0])
    # same: d^2 / 2 = 0.125, 2.0; different: max(0, 1 - d)^2 / 2 = 0.245, 0.0
    per = siamese.contrastive_loss(
        d, same, 1.0, form="hadsell", reduction="none"
    )
    assert torch.allclose(per, torch.tensor([0.125, 2.0, 0.245, 0.0]))
    assert siamese.contrastive_loss(
        d, same, 1.0, form="hadsell"
    ).item() == pytest.approx(2.37 / 4)
    # a wider margin makes the far different pair cost something:
    # (2 - 1.5)^2 / 2
    assert siamese.contrastive_loss(
        d[3:], same[3:], 2.0, form="hadsell"
    ).item() == pytest.approx(0.125)


def test_loss_gradients_in_d_differ_between_forms():
    d = torch.tensor([0.5, 0.3], requires_grad=True)
    same = torch.tensor([1.0, 0.0])
    (g_src,) = torch.autograd.grad(
        siamese.contrastive_loss(d, same, 1.0, form="source", reduction="sum"),
        d,
    )
    (g_had,) = torch.autograd.grad(
        siamese.contrastive_loss(
            d, same, 1.0, form="hadsell", reduction="sum"
        ),
        d,
    )
    assert torch.allclose(
        g_src, torch.tensor([1.0, -1.0])
    )  # constant pull / push
    assert torch.allclose(g_had, torch.tensor([0.5, -0.7]))  # d and -(m - d)


def test_gradient_finite_at_zero_distance():
    z = torch.randn(3, 8, requires_grad=True)
    # the plain formula sqrt(sum sq): d/ds sqrt(s) = inf at s = 0,
    # times 0 -> NaN
    naive = torch.sqrt((z - z.detach().clone()).pow(2).sum(1))
    (g_naive,) = torch.autograd.grad(naive.sum(), z)
    assert torch.isnan(g_naive).all()  # the problem the eps solves
    for form in siamese.LOSS_FORMS:
        d = siamese.euclidean_distance(z, z.detach().clone())
        assert torch.allclose(
            d, torch.full((3,), math.sqrt(siamese.DISTANCE_EPS))
        )
        (g,) = torch.autograd.grad(
            siamese.contrastive_loss(d, torch.ones(3), 1.0, form=form), z
        )
        assert torch.isfinite(g).all() and torch.equal(g, torch.zeros_like(g))
    # through the whole network, with identical inputs in both branches
    torch.manual_seed(0)
    net = siamese.SiameseNet(InductiveConvEmbedding(hidden=8))
    x = torch.rand(4, 1, 28, 28)
    loss = siamese.contrastive_loss(
        net(x, x.clone()), torch.ones(4), 1.0, form="source"
    )
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())


@pytest.mark.parametrize(
    "margin", [0, 0.0, -1.0, float("inf"), float("nan"), True, "1"]
)
def test_bad_margin(margin):
    with pytest.raises(ValueError, match="margin"):
        siamese.contrastive_loss(torch.ones(2), torch.ones(2), margin)


def test_bad_loss_inputs():
    with pytest.raises(ValueError, match="form"):
        siamese.contrastive_loss(
            torch.ones(2), torch.ones(2), 1.0, form="triplet"
        )
    with pytest.raises(ValueError, match="reduction"):
        siamese.contrastive_loss(
            torch.ones(2), torch.ones(2), 1.0, reduction="max"
        )
    with pytest.raises(ValueError, match="distance and same"):
        siamese.contrastive_loss(torch.ones(2), torch.ones(3), 1.0)
    with pytest.raises(ValueError, match="same"):
        siamese.contrastive_loss(torch.ones(2), torch.tensor([1.0, 0.5]), 1.0)
    with pytest.raises(ValueError, match="a and b"):
        siamese.euclidean_distance(torch.ones(2, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="eps"):
        siamese.euclidean_distance(torch.ones(2, 3), torch.ones(2, 3), eps=0.0)


def test_balanced_pair_loss_hand_computed():
    per = torch.tensor([0.2, 0.4, 0.0, 0.0, 0.0, 0.6])
    same = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    # all negatives: 0.5 * (0.3 + 0.6 / 4);
    # active ones only: 0.5 * (0.3 + 0.6 / 1)
    assert siamese.balanced_pair_loss(per, same).item() == pytest.approx(0.225)
    assert siamese.balanced_pair_loss(
        per, same, negatives="active"
    ).item() == pytest.approx(0.45)
    # no negative inside the margin: "active" falls back to the (zero) mean
    # of all of them
    quiet = torch.tensor([0.2, 0.4, 0.0, 0.0])
    assert siamese.balanced_pair_loss(
        quiet, same[:4], negatives="active"
    ).item() == pytest.approx(0.15)


def test_halving_rate_halves_evenly():
    rates = [siamese.halving_rate(1.0, it, 100, 3) for it in range(100)]
    assert (
        rates[0] == rates[24] == 1.0 and rates[25] == 0.5 and rates[50] == 0.25
    )
    assert rates[75] == rates[99] == 0.125
    assert siamese.halving_rate(1e-3, 5000, 100, 0) == 1e-3


def test_balanced_pair_loss_bad_input():
    with pytest.raises(ValueError, match="negatives"):
        siamese.balanced_pair_loss(
            torch.ones(2), torch.tensor([1.0, 0.0]), negatives="hard"
        )
    with pytest.raises(ValueError, match="per_pair and same"):
        siamese.balanced_pair_loss(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="both"):
        siamese.balanced_pair_loss(torch.ones(2), torch.ones(2))
    with pytest.raises(ValueError, match="negatives"):
        siamese.train_siamese(1, config={"negatives": "some"}, progress=False)


def test_normalized_embedding_has_unit_length_and_the_same_parameters():
    torch.manual_seed(0)
    plain, unit = InductiveConvEmbedding(hidden=8), InductiveConvEmbedding(
        hidden=8, normalize=True
    )
    unit.load_state_dict(
        plain.state_dict()
    )  # same parameter names: no parameters added
    x = torch.rand(5, 1, 28, 28)
    z, u = plain.eval()(x), unit.eval()(x)
    assert torch.allclose(u.norm(dim=1), torch.ones(5), atol=1e-6)
    assert torch.allclose(u, z / z.norm(dim=1, keepdim=True), atol=1e-6)
    assert siamese.build_siamese(
        {"hidden": 8, "normalize": True}
    ).embedding.normalize


# ----------------------------------------------------- one network, two inputs


def test_single_shared_parameter_set():
    torch.manual_seed(0)
    net = siamese.SiameseNet(InductiveConvEmbedding(hidden=8))
    assert [id(p) for p in net.parameters()] == [
        id(p) for p in net.embedding.parameters()
    ]
    x1, x2 = torch.rand(5, 1, 28, 28), torch.rand(5, 1, 28, 28)
    net.eval()
    d = net(x1, x2)
    assert torch.allclose(
        d, net(x2, x1)
    )  # symmetric: the same f on both sides
    assert torch.allclose(
        d, siamese.euclidean_distance(net.embed(x1), net.embed(x2)), atol=1e-6
    )
    # both branches' gradients land in the same tensors
    net.train()
    net(x1, x2).sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads[:1])
    with pytest.raises(ValueError, match="x1 and x2"):
        net(x1, x2[:3])


def test_pair_distances_equal_forward_in_eval_mode():
    torch.manual_seed(0)
    net = siamese.SiameseNet(InductiveConvEmbedding(hidden=8)).eval()
    pool = _toy_pool()
    b = siamese.PairSampler(pool, 8, seed=0).batch()
    d = net(b.x1, b.x2)
    assert torch.allclose(
        net.pair_distances(b.images, b.left, b.right), d, atol=1e-5
    )
    # the same distances from a table of precomputed embeddings
    assert torch.allclose(
        b.distances(siamese.embed_pool(net.embedding, pool)), d, atol=1e-5
    )


def test_eval_embedding_does_not_depend_on_batch():
    torch.manual_seed(0)
    f = InductiveConvEmbedding(hidden=8)
    f.train()
    f(
        torch.rand(16, 1, 28, 28)
    )  # move the running statistics away from their start
    x = torch.rand(6, 1, 28, 28)
    alone = torch.cat(
        [siamese.embed_images(f, x[i : i + 1]) for i in range(6)]
    )
    assert torch.allclose(
        alone, siamese.embed_images(f, x, batch_size=4), atol=1e-5
    )
    assert f.training  # mode restored


# ---------------------------------------------------------------- pairs


@pytest.mark.parametrize("within", [0.0, 1.0])
def test_pair_sampler_balance_and_labels(within):
    pool = _toy_pool()
    sampler = siamese.PairSampler(pool, 10, within_alphabet=within, seed=1)
    for _ in range(20):
        b = sampler.batch()
        assert len(b) == 10 and b.same.sum().item() == 5
        cl, cr = b.classes[b.left.numpy()], b.classes[b.right.numpy()]
        assert np.array_equal(b.same.numpy() == 1, cl == cr)
        assert (b.left != b.right).all()
        # each pair's images are the drawings of the classes the labels claim
        for i in range(len(b)):
            imgs = pool.images[cl[i]]
            assert any(
                np.array_equal(b.images[b.left[i], 0].numpy(), im)
                for im in imgs
            )
        if within == 1.0:
            neg = b.same.numpy() == 0
            assert all(
                pool.alphabet(a) == pool.alphabet(c)
                for a, c in zip(cl[neg], cr[neg])
            )


def test_pair_sampler_reproducible_and_augment():
    pool = _toy_pool()
    a = siamese.PairSampler(pool, 8, seed=3).batch()
    b = siamese.PairSampler(pool, 8, seed=3).batch()
    assert torch.equal(a.images, b.images) and torch.equal(a.right, b.right)
    c = siamese.PairSampler(pool, 8, augment=True, seed=3).batch()
    assert c.images.shape == a.images.shape and not torch.equal(
        c.images, a.images
    )


def test_affine_augment_identity_and_range():
    x = torch.rand(4, 1, 28, 28)
    assert torch.allclose(
        siamese.affine_augment(x, seed=0, p=0.0), x, atol=1e-4
    )
    y = siamese.affine_augment(x, seed=0, p=1.0)
    assert y.shape == x.shape and not torch.allclose(y, x)
    with pytest.raises(ValueError, match="p"):
        siamese.affine_augment(x, p=1.5)
    with pytest.raises(ValueError, match="x"):
        siamese.affine_augment(x[0])


@pytest.mark.parametrize(
    "kwargs,name",
    [
        ({"n_pairs": 7}, "n_pairs"),
        ({"n_pairs": 2}, "n_pairs"),
        ({"n_pairs": 100}, "n_pairs"),
        ({"within_alphabet": 1.5}, "within_alphabet"),
        ({"group": 1}, "group"),
    ],
)
def test_pair_sampler_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        siamese.PairSampler(_toy_pool(), **{"n_pairs": 8, **kwargs})


# ---------------------------------------------------------------- evaluation


def test_episode_indices_match_sample_episode():
    pool = _toy_pool()
    classes, which = siamese.episode_indices(
        len(pool), 5, 1, 3, np.random.default_rng(7)
    )
    ep = sample_episode(pool, 5, 1, 3, seed=np.random.default_rng(7))
    assert np.array_equal(classes, ep.classes)
    assert torch.equal(
        ep.support_x[:, 0], torch.from_numpy(pool.images[classes, which[:, 0]])
    )


def test_few_shot_on_separable_embeddings():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 1, 16)) * 10
    z = torch.tensor(
        centres + 0.1 * rng.normal(size=(30, 20, 16)), dtype=torch.float32
    )
    for method in ("nearest", "prototype"):
        acc = siamese.few_shot_accuracy(
            z, 20, 1, 10, q_queries=5, method=method, seed=0
        )
        assert acc.shape == (10,) and (acc == 100.0).all()
    # pure noise: about chance (5-way -> 20%)
    noise = torch.randn(30, 20, 16)
    assert (
        abs(
            siamese.few_shot_accuracy(
                noise, 5, 1, 200, method="nearest"
            ).mean()
            - 20
        )
        < 5
    )
    with pytest.raises(ValueError, match="n_way"):
        siamese.few_shot_accuracy(z, 31, 1)
    with pytest.raises(ValueError, match="q_queries"):
        siamese.few_shot_accuracy(z, 5, 5, q_queries=16)
    with pytest.raises(ValueError, match="method"):
        siamese.few_shot_accuracy(z, 5, 1, method="cosine")
    with pytest.raises(ValueError, match="embeddings"):
        siamese.few_shot_accuracy(z[:, :10], 5, 1)


def test_lake_runs_accuracy_on_a_fake_run():
    x = torch.rand(4, 1, 28, 28)
    order = torch.tensor([2, 0, 3, 1])
    run = Episode(x, torch.arange(4), x[order] + 0.01, order, np.arange(4))
    acc, preds = siamese.lake_runs_accuracy(lambda t: t.flatten(1), [run, run])
    assert acc.tolist() == [100.0, 100.0] and np.array_equal(
        preds[0], order.numpy()
    )
    with pytest.raises(ValueError, match="runs"):
        siamese.lake_runs_accuracy(lambda t: t.flatten(1), [])


def test_threshold_and_verification_accuracy():
    d = np.array([0.1, 0.2, 0.3, 0.9, 1.0, 0.25])
    same = np.array([1, 1, 1, 0, 0, 0])
    t = siamese.best_threshold(d, same)
    assert 0.2 < t < 0.9  # 0.1, 0.2 | 0.25 | 0.3 : two cuts tie at 5 of 6
    assert siamese.verification_accuracy(d, same, t) == pytest.approx(
        100 * 5 / 6
    )
    assert siamese.verification_accuracy(d, same, 0.22) == pytest.approx(
        100 * 5 / 6
    )
    assert siamese.verification_accuracy(d, same, 0.0) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="distance and same"):
        siamese.best_threshold(d, same[:3])


# ---------------------------------------------------------------- training


@pytest.fixture
def tiny_training(monkeypatch, tmp_path):
    """A tiny, single-threaded Siamese config whose runs/ and checkpoints go
    to tmp_path."""
    from mlkit.data import omniglot_dir

    if not (omniglot_dir() / "images_background.npz").exists():
        pytest.skip("no Omniglot copy: set MLKIT_DATA")
    monkeypatch.setattr(checkpoints, "RUN_DIR", tmp_path / "runs")
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", tmp_path / "ck")
    torch.set_num_threads(1)
    return {"hidden": 8, "n_pairs": 16, "eval_every": 0, "rotations": False}


def test_training_is_resumable(tiny_training):
    pytest.importorskip("tqdm")
    # a constant rate, so that a run of 2 continued to 4 must equal a run of 4
    cfg = {**tiny_training, "lr_halvings": 0}
    straight, h = siamese.train_siamese(4, config=cfg, progress=False)
    siamese.train_siamese(2, config=cfg, progress=False, run_name="r")
    resumed, h2 = siamese.train_siamese(
        4, config=cfg, progress=False, run_name="r", resume=True
    )
    for a, b in zip(
        straight.state_dict().values(), resumed.state_dict().values()
    ):
        assert torch.equal(a, b)
    assert h2["loss"] == h["loss"] and len(h["loss"]) == 4


# ------------------------------------------------------------- chapter helpers


def test_nearest_neighbours_excludes_self():
    z = torch.tensor([[0.0], [1.0], [1.5], [10.0]])
    nn_ = siamese.nearest_neighbours(z, [0, 3], k=2)
    assert nn_.tolist() == [[1, 2], [2, 1]]
    with pytest.raises(ValueError, match="k"):
        siamese.nearest_neighbours(z, [0], k=4)
    with pytest.raises(ValueError, match="queries"):
        siamese.nearest_neighbours(z, [4], k=2)


def test_margin_report_hand_computed():
    d, same = np.array([0.5, 2.0, 0.3, 1.5]), np.array([1, 1, 0, 0])
    r = siamese.margin_report(d, same, 1.0)
    assert r == pytest.approx(
        {
            "loss": 0.8,
            "inside_margin": 0.5,
            "loss_same": 1.25,
            "loss_different": 0.35,
        }
    )
    assert siamese.margin_report(d, same, 2.0)["inside_margin"] == 1.0
    with pytest.raises(ValueError, match="margin"):
        siamese.margin_report(d, same, -1.0)
    with pytest.raises(ValueError, match="same"):
        siamese.margin_report(d, np.ones(4), 1.0)


def test_loss_gradient_curves():
    c = siamese.loss_gradient_curves(np.array([0.25, 0.5, 2.0]), margin=1.0)
    assert np.allclose(c["source"]["grad_same"], 1.0)
    assert np.allclose(c["source"]["grad_different"], [-1.0, -1.0, 0.0])
    assert np.allclose(c["hadsell"]["grad_same"], [0.25, 0.5, 2.0])
    assert np.allclose(c["hadsell"]["grad_different"], [-0.75, -0.5, 0.0])


def test_fit_2d_embedding_separates_classes():
    torch.manual_seed(0)
    y = np.repeat(np.arange(3), 8)
    x = (
        torch.randn(3, 16).repeat_interleave(8, 0) * 3
        + torch.randn(24, 16) * 0.3
    )
    p = siamese.fit_2d_embedding(x, y, 2.0, steps=100, seed=0)
    assert p.shape == (24, 2)
    centres = np.stack([p[y == c].mean(0) for c in range(3)])
    spread = max(
        np.linalg.norm(p[y == c] - centres[c], axis=1).max() for c in range(3)
    )
    gaps = [
        np.linalg.norm(centres[a] - centres[b])
        for a in range(3)
        for b in range(a + 1, 3)
    ]
    assert min(gaps) > 2 * spread
    with pytest.raises(ValueError, match="features"):
        siamese.fit_2d_embedding(x, y[:5], 1.0)


@pytest.mark.parametrize(
    "name, recorded",
    [
        ("siamese-omniglot", lambda metrics: metrics["lake_runs"]),
        (
            "siamese-omniglot-ensemble",
            lambda metrics: metrics["ensemble"]["lake_runs"],
        ),
    ],
)
def test_committed_checkpoint_reproduces_its_lake_runs_number(
    capsys, name, recorded
):
    """The checkpoints in the repository (one network; the recipe's three
    seeds together) evaluate to the numbers the manifest records."""
    from mlkit.__main__ import main
    from mlkit.data import omniglot_dir

    if not (omniglot_dir() / "all_runs.zip").exists():
        pytest.skip("no Omniglot copy: set MLKIT_DATA")
    torch.set_num_threads(1)
    expected = recorded(
        checkpoints.checkpoint_entry("siamese-omniglot")["metrics"]
    )
    assert main(["evaluate", name, "--lake-runs", "--json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["name"] == name and line["metric"] == "accuracy"
    assert line["tasks"] == 20
    assert round(line["mean"], 2) == expected[0]


def test_time_limit_stops_and_resume_finishes_the_run(
    monkeypatch, tiny_training
):
    cfg = {**tiny_training, "lr_halvings": 1}
    straight, h = siamese.train_siamese(4, config=cfg, progress=False)
    calls = iter(
        [False, False, True]
    )  # out of time before the third iteration
    monkeypatch.setattr(
        checkpoints.ResumableRun, "out_of_time", lambda self: next(calls)
    )
    _, stopped = siamese.train_siamese(
        4, config=cfg, progress=False, run_name="t"
    )
    assert (
        stopped["iteration"] == [1, 2]
        and checkpoints.load_state("t")["iteration"] == 2
    )
    monkeypatch.setattr(
        checkpoints.ResumableRun, "out_of_time", lambda self: False
    )
    resumed, h2 = siamese.train_siamese(
        4, config=cfg, progress=False, run_name="t", resume=True
    )
    for a, b in zip(
        straight.state_dict().values(), resumed.state_dict().values()
    ):
        assert torch.equal(a, b)
    assert h2["loss"] == h["loss"]
    with pytest.raises(ValueError, match="time_limit_s"):
        checkpoints.ResumableRun(
            None,
            straight,
            torch.optim.Adam(straight.parameters()),
            np.random.default_rng(0),
            {"wall_time_s": 0.0},
            time_limit_s=0,
        )


def test_embed_images_runs_on_the_module_device_and_returns_cpu_values():
    net = InductiveConvEmbedding(hidden=4)
    z = siamese.embed_images(net, np.zeros((3, 1, 28, 28), np.float32))
    assert z.device.type == "cpu" and z.shape == (3, 4) and not z.requires_grad


def test_resume_without_runs_starts_from_the_committed_checkpoint(
    tiny_training, tmp_path, capsys
):
    cfg = {**tiny_training, "lr_halvings": 1}
    net, h = siamese.train_siamese(
        2, config=cfg, progress=False, run_name="fresh"
    )
    checkpoints.save_checkpoint(
        "fresh",
        net.state_dict(),
        config=cfg,
        command="test",
        seed=0,
        iterations=2,
        wall_time_s=h["wall_time_s"],
        metrics={"sessions": h["sessions"]},
    )
    import shutil

    shutil.rmtree(tmp_path / "runs")  # a fresh clone has no runs/
    resumed, h2 = siamese.train_siamese(
        4, config=cfg, progress=False, run_name="fresh", resume=True
    )
    assert (
        "resuming from the committed checkpoint at iteration 2"
        in capsys.readouterr().out
    )
    assert h2["iteration"] == [3, 4]
    assert (
        h2["sessions"][-1]["to_iteration"] == 4
        and h2["sessions"][0]["from_iteration"] == 0
    )
    assert not torch.equal(
        next(iter(resumed.state_dict().values())),
        next(iter(net.state_dict().values())),
    )


def test_committed_recipe_is_the_recorded_variant_v4():
    """The checkpoint was trained with SIAMESE_CONFIG, which is variant v4 of
    the recorded recipes (benchmarks/siamese_variants.py), and reports v4's
    measured numbers.
    """
    entry = checkpoints.checkpoint_entry("siamese-omniglot")
    assert entry["config"] == siamese.SIAMESE_CONFIG
    variants = {v["tag"]: v for v in entry["metrics"]["variants"]}
    assert set(variants) == {f"v{i}" for i in range(13)}
    assert all(
        siamese.SIAMESE_CONFIG[k] == v
        for k, v in variants["v4"]["changes"].items()
    )
    # v5 and v11 are the recipe again from other seeds; the recipe's own run
    # is seed 0
    assert siamese.recipe_seeds(entry["metrics"]["variants"], "v4") == [
        "v4",
        "v5",
        "v11",
    ]
    assert [variants[t]["seed"] for t in ("v4", "v5", "v11")] == [0, 1, 2]
    assert entry["seed"] == 0
    for key in ("lake_runs", "evaluation_5way1shot", "evaluation_20way1shot"):
        assert entry["metrics"][key] == variants["v4"][key]


def test_record_metrics_merges_into_the_entry_and_keeps_the_weights_valid(
    tmp_path,
):
    net = InductiveConvEmbedding(hidden=4)
    checkpoints.save_checkpoint(
        "toy",
        net.state_dict(),
        config={},
        command="c",
        seed=0,
        iterations=1,
        wall_time_s=0.0,
        metrics={"lake_runs": [1.0, 0.5]},
        directory=tmp_path,
    )
    checkpoints.record_metrics(
        "toy", {"variants": [{"tag": "v0"}]}, directory=tmp_path
    )
    # sha256 still checks
    _, entry = checkpoints.load_checkpoint("toy", tmp_path)
    assert entry["metrics"] == {
        "lake_runs": [1.0, 0.5],
        "variants": [{"tag": "v0"}],
    }


def test_seed_report_reads_variants_against_the_recipes_seeds():
    def row(tag, changes, seed, lake, episodes):
        return {
            "tag": tag,
            "what": f"what {tag}",
            "changes": changes,
            "seed": seed,
            "lake_runs": [lake, 3.0],
            "evaluation_20way1shot": [episodes, 0.3],
        }

    rows = [
        row("a", {"k": 1}, 0, 91.0, 91.5),
        row("b", {"k": 1}, 1, 90.0, 91.9),
        row("c", {"k": 2}, 0, 93.0, 91.7),
        row("d", {"k": 3}, 0, 92.5, 92.4),
        row("e", {"k": 4}, 0, 91.9, 99.0),
    ]
    lines = siamese.seed_report(rows, recipe="a", target=92.0)
    assert lines[0] == (
        "a from 2 seeds (a: seed 0, b: seed 1): Lake's runs 90.00–91.00, "
        "20-way episodes 91.50–91.90"
    )
    # e is below the target on Lake's runs, so it gets no line however well
    # it does elsewhere
    assert lines[1:] == [
        "c (what c): 93.00 on Lake's runs, 91.70 on the 20-way episodes, "
        "not above the best seed's 91.90",
        "d (what d): 92.50 on Lake's runs, 92.40 on the 20-way episodes, "
        "above the best seed's 91.90",
    ]
    assert siamese.recipe_seeds(rows, "c") == ["c"]
    with pytest.raises(ValueError, match="recipe"):
        siamese.seed_report(rows, recipe="z")


# ------------------------------------------------- the recipe from three seeds


def test_ensemble_distance_is_the_mean_of_the_members_squared_distances():
    torch.manual_seed(0)
    members = [InductiveConvEmbedding(hidden=4).eval() for _ in range(3)]
    ens = siamese.EnsembleEmbedding(members)
    a, b = torch.randn(5, 1, 28, 28), torch.randn(5, 1, 28, 28)

    def sq(x, y):
        return ((x - y) ** 2).sum(1)

    with torch.no_grad():
        d2 = sq(ens(a), ens(b))
        each = [
            sq(F.normalize(m(a), dim=1), F.normalize(m(b), dim=1))
            for m in members
        ]
        assert torch.allclose(d2, torch.stack(each).mean(0), atol=1e-6)
        # one member: that member's embedding on the unit sphere
        one = siamese.EnsembleEmbedding(members[:1])
        assert torch.allclose(one(a), F.normalize(members[0](a), dim=1))
    with pytest.raises(ValueError, match="members"):
        siamese.EnsembleEmbedding([])


def test_seed_checkpoint_names():
    assert siamese.seed_checkpoint(0) == "siamese-omniglot"
    assert siamese.seed_checkpoint(2) == "siamese-omniglot-seed2"
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match="seed"):
            siamese.seed_checkpoint(bad)


def test_committed_ensemble_is_the_recipe_from_three_seeds():
    """Its members were trained with SIAMESE_CONFIG from seeds 0, 1, 2
    (recorded as variants v4, v5 and v11) and each still reports its
    variant's numbers."""
    entry = checkpoints.checkpoint_entry("siamese-omniglot")
    variants = {v["tag"]: v for v in entry["metrics"]["variants"]}
    for seed, tag in zip(siamese.ENSEMBLE_SEEDS, ("v4", "v5", "v11")):
        member = checkpoints.checkpoint_entry(siamese.seed_checkpoint(seed))
        assert (
            member["config"] == siamese.SIAMESE_CONFIG
            and member["seed"] == seed
        )
        assert member["iterations"] == variants[tag]["iterations"]
        for key in (
            "lake_runs",
            "evaluation_5way1shot",
            "evaluation_20way1shot",
        ):
            assert member["metrics"][key] == variants[tag][key]
    assert entry["metrics"]["ensemble"]["members"] == [
        siamese.seed_checkpoint(s) for s in siamese.ENSEMBLE_SEEDS
    ]


def test_ensemble_train_writes_one_checkpoint_per_seed(
    monkeypatch, tiny_training, capsys
):
    """``train siamese-omniglot`` keeps the recorded variants; ``train
    siamese-omniglot-ensemble`` trains seeds 1 and 2 and records the three
    together.
    """
    from mlkit.__main__ import main

    monkeypatch.setattr(
        siamese, "SIAMESE_CONFIG", {**siamese.SIAMESE_CONFIG, **tiny_training}
    )
    # the orchestration is under test here, not the (slow) measurement of the
    # full splits
    monkeypatch.setattr(
        siamese, "final_metrics", lambda embed, **kw: {"lake_runs": [0.0, 0.0]}
    )
    assert main(["train", "siamese-omniglot", "--iterations", "2"]) == 0
    # runs/ only
    assert not (checkpoints.CHECKPOINT_DIR / "MANIFEST.json").exists()
    assert main(["train", "siamese-omniglot", "--promote"]) == 0
    checkpoints.record_metrics(
        "siamese-omniglot", {"variants": [{"tag": "v0"}]}
    )
    assert (
        main(["train", "siamese-omniglot", "--iterations", "3", "--resume"])
        == 0
    )
    assert main(["train", "siamese-omniglot", "--promote"]) == 0
    entry = checkpoints.checkpoint_entry("siamese-omniglot")
    assert entry["iterations"] == 3
    assert entry["metrics"]["variants"] == [{"tag": "v0"}]
    assert main(["train", "siamese-omniglot-ensemble", "--seed", "5"]) == 2
    assert "fixed seeds" in capsys.readouterr().err
    assert (
        main(["train", "siamese-omniglot-ensemble", "--iterations", "2"]) == 0
    )
    assert main(["train", "siamese-omniglot-ensemble", "--promote"]) == 0
    weights = []
    for seed in (1, 2):
        state, entry = checkpoints.load_checkpoint(
            siamese.seed_checkpoint(seed)
        )
        assert entry["seed"] == seed and entry["iterations"] == 2
        assert entry["command"] == (
            "python -m mlkit train siamese-omniglot-ensemble " "--iterations 2"
        )
        weights.append(next(iter(state.values())))
    assert not torch.equal(*weights)
    together = checkpoints.checkpoint_entry("siamese-omniglot")["metrics"][
        "ensemble"
    ]
    assert together == {
        "members": [
            "siamese-omniglot",
            "siamese-omniglot-seed1",
            "siamese-omniglot-seed2",
        ],
        "seeds": [0, 1, 2],
        "lake_runs": [0.0, 0.0],
    }


def test_ensemble_evaluate_record_says_why_it_cannot(capsys):
    """The ensemble has no manifest entry of its own: --record fails at once,
    saying so."""
    from mlkit.__main__ import main

    assert (
        main(
            [
                "evaluate",
                "siamese-omniglot-ensemble",
                "--lake-runs",
                "--record",
            ]
        )
        == 2
    )
    assert "siamese-omniglot-ensemble has none" in capsys.readouterr().err


def _variants_script():
    import importlib.util

    path = (
        Path(__file__).resolve().parents[1]
        / "benchmarks"
        / "siamese_variants.py"
    )
    spec = importlib.util.spec_from_file_location("siamese_variants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_selection_trains_without_validation_and_chooses_on_it_only():
    sv = _variants_script()
    config = sv.config_of("v4", selection=True)
    assert config["split"] == "background-train"
    assert {k: v for k, v in config.items() if k != "split"} == {
        k: v for k, v in sv.config_of("v4").items() if k != "split"
    }
    assert sv.run_name("v4", True) == "siamese-v4-select"

    def row(tag, five, twenty, iterations=10000):
        return {
            "tag": tag,
            "what": tag,
            "iterations": iterations,
            "validation_5way1shot": [five, 0.4],
            "validation_20way1shot": [twenty, 0.3],
        }

    rows = [
        row("v1", 99.0, 90.0),
        row("v4", 97.0, 92.0),
        row("v7", 97.5, 91.8),
        row("v6", 96.0, 91.0),
        row("v2", 99.9, 99.9, iterations=50),
    ]
    # v2 is unfinished; v7's interval reaches v4's mean, v6's does not
    assert sv.choose(rows) == {
        "chosen": "v4",
        "by": "validation_20way1shot",
        "tied": ["v7"],
    }
    assert sv.choose(rows, "validation_5way1shot")["chosen"] == "v1"
    table = sv.selection_table(rows, sv.choose(rows))
    assert "| **v4** |" in table and "within its interval: v7." in table
    with pytest.raises(ValueError, match="finished"):
        sv.choose([row("v2", 1.0, 1.0, iterations=5)])
