"""Tests of mlkit.maml: meta-gradients (against finite differences and the
Hessian form), first-order and ANIL variants, the two layouts, resumable
training, checkpoints, the CLI.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from mlkit import checkpoints
from mlkit import data
from mlkit import maml
from mlkit.nets import ConvNet, SinusoidMLP, head_parameter_names


def _tiny_batch(n_tasks=2, n_way=3, size=12, seed=0, dtype=torch.float64):
    """A tiny classification task batch of random images (no Omniglot
    needed)."""
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(n_tasks, n_way, 1, size, size, generator=g, dtype=dtype)
    qx = torch.rand(
        n_tasks, 2 * n_way, 1, size, size, generator=g, dtype=dtype
    )
    sy = torch.arange(n_way).repeat(n_tasks, 1)
    qy = torch.arange(n_way).repeat_interleave(2).repeat(n_tasks, 1)
    return data.Episode(sx, sy, qx, qy, np.zeros((n_tasks, n_way), int))


def _tiny_net(n_way=3, seed=0):
    torch.manual_seed(seed)
    return ConvNet(n_way, hidden=4).double()


def _flat(grads):
    return torch.cat([g.reshape(-1) for g in grads.values()])


def _loss_at(model, batch, theta, **kw):
    """Meta-loss with the model's parameters replaced by the flat vector
    theta."""
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
    losses, _ = maml.query_loss(model, batch, **kw)
    return losses.mean().item()


@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_meta_gradient_matches_finite_differences(steps):
    model, batch = _tiny_net(), _tiny_batch()
    kw = dict(loss_fn=maml.cross_entropy, inner_steps=steps, alpha=0.3)
    g = _flat(maml.meta_gradient(model, batch, **kw))
    theta = (
        torch.nn.utils.parameters_to_vector(model.parameters())
        .detach()
        .clone()
    )
    rng = torch.Generator().manual_seed(1)
    for _ in range(3):
        v = torch.randn(theta.shape, generator=rng, dtype=theta.dtype)
        v /= v.norm()
        eps = 1e-5
        fd = (
            _loss_at(model, batch, theta + eps * v, **kw)
            - _loss_at(model, batch, theta - eps * v, **kw)
        ) / (2 * eps)
        assert fd == pytest.approx(float(g @ v), rel=1e-5, abs=1e-8)
    # the first-order gradient is measurably different here, so the test can
    # tell them apart
    g1 = _flat(maml.meta_gradient(model, batch, first_order=True, **kw))
    assert (g1 - g).norm() > 1e-3 * g.norm()


def test_first_order_is_second_order_without_the_hessian_term():
    model, batch = _tiny_net(), _tiny_batch(n_tasks=1)
    alpha = 0.3
    kw = dict(loss_fn=maml.cross_entropy, inner_steps=1, alpha=alpha)
    g2 = maml.meta_gradient(model, batch, **kw)
    g1 = maml.meta_gradient(model, batch, first_order=True, **kw)
    sx, sy, qx, qy = (
        batch.support_x[0],
        batch.support_y[0],
        batch.query_x[0],
        batch.query_y[0],
    )
    theta = dict(model.named_parameters())
    fast = maml.adapt(model, sx, sy, **kw)
    fast_leaf = {n: p.detach().requires_grad_() for n, p in fast.items()}
    gq = torch.autograd.grad(
        maml.cross_entropy(maml.predict(model, fast_leaf, qx), qy),
        list(fast_leaf.values()),
    )
    gq = dict(zip(fast_leaf, gq))
    # FOMAML: the query gradient at the fast weights
    for n in g1:
        torch.testing.assert_close(g1[n], gq[n])
    # second order: (I - alpha H) gq, H the support loss's Hessian at theta
    ls = maml.cross_entropy(maml.predict(model, theta, sx), sy)
    grads = torch.autograd.grad(ls, list(theta.values()), create_graph=True)
    hv = torch.autograd.grad(
        grads, list(theta.values()), grad_outputs=[gq[n] for n in theta]
    )
    for n, h in zip(theta, hv):
        torch.testing.assert_close(g2[n], gq[n] - alpha * h)


def test_zero_inner_steps_is_the_unadapted_loss():
    model, batch = _tiny_net(), _tiny_batch()
    losses, _ = maml.query_loss(
        model, batch, loss_fn=maml.cross_entropy, inner_steps=0, alpha=0.4
    )
    direct = torch.stack(
        [
            maml.cross_entropy(model(batch.query_x[t]), batch.query_y[t])
            for t in range(2)
        ]
    )
    torch.testing.assert_close(losses, direct)
    fast = maml.adapt(
        model,
        batch.support_x[0],
        batch.support_y[0],
        loss_fn=maml.cross_entropy,
        inner_steps=0,
        alpha=0.4,
    )
    assert all(fast[n] is p for n, p in model.named_parameters())


@pytest.mark.parametrize("first_order", [False, True])
def test_task_batch_layout_equals_per_task_loop(first_order):
    model, batch = _tiny_net(), _tiny_batch(n_tasks=3)
    kw = dict(
        loss_fn=maml.cross_entropy,
        inner_loss_fn=maml.summed_cross_entropy(1),
        inner_steps=2,
        alpha=0.4,
        first_order=first_order,
    )
    a = maml.meta_gradient(model, batch, batched=True, **kw)
    b = maml.meta_gradient(model, batch, batched=False, **kw)
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-9, atol=1e-12)
    mlp = SinusoidMLP().double()
    t = data.sample_sinusoid_tasks(4, 5, 7, seed=0)
    t = data.SinusoidTasks(
        *(
            x.double()
            for x in (
                t.support_x,
                t.support_y,
                t.query_x,
                t.query_y,
                t.amplitude,
                t.phase,
            )
        )
    )
    a = maml.meta_gradient(
        mlp, t, loss_fn=maml.mse_loss, inner_steps=3, alpha=0.01, batched=True
    )
    b = maml.meta_gradient(
        mlp, t, loss_fn=maml.mse_loss, inner_steps=3, alpha=0.01, batched=False
    )
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-9, atol=1e-12)


def test_anil_adapts_only_the_head():
    model, batch = _tiny_net(), _tiny_batch()
    head = head_parameter_names(model)
    fast = maml.adapt_tasks(
        model,
        batch.support_x,
        batch.support_y,
        loss_fn=maml.cross_entropy,
        inner_steps=2,
        alpha=0.4,
        adapt_names=head,
    )
    for n, p in model.named_parameters():
        changed = not torch.allclose(fast[n][0], p)
        assert changed == (n in head), n


def test_adaptation_lowers_the_support_loss():
    model = SinusoidMLP()
    t = data.sample_sinusoid_tasks(1, 10, seed=3)
    before = maml.mse_loss(model(t.support_x[0]), t.support_y[0])
    fast = maml.adapt(
        model,
        t.support_x[0],
        t.support_y[0],
        loss_fn=maml.mse_loss,
        inner_steps=5,
        alpha=0.01,
    )
    after = maml.mse_loss(
        maml.predict(model, fast, t.support_x[0]), t.support_y[0]
    )
    assert after < before


@pytest.mark.parametrize(
    "kw,name",
    [
        ({"inner_steps": -1}, "inner_steps"),
        ({"inner_steps": 1.5}, "inner_steps"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": math.nan}, "alpha"),
        ({"alpha": math.inf}, "alpha"),
    ],
)
def test_bad_inner_loop_arguments(kw, name):
    model, batch = _tiny_net(), _tiny_batch()
    args = {
        "loss_fn": maml.cross_entropy,
        "inner_steps": 1,
        "alpha": 0.4,
        **kw,
    }
    with pytest.raises(ValueError, match=name):
        maml.adapt(model, batch.support_x[0], batch.support_y[0], **args)
    with pytest.raises(ValueError, match=name):
        maml.adapt_tasks(model, batch.support_x, batch.support_y, **args)


def test_bad_shapes_and_labels():
    model, batch = _tiny_net(), _tiny_batch()
    with pytest.raises(ValueError, match="support_x and support_y"):
        maml.adapt(
            model,
            batch.support_x[0],
            batch.support_y[0][:2],
            loss_fn=maml.cross_entropy,
        )
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        maml.adapt(
            model,
            batch.support_x[0],
            batch.support_y[0] + 1,
            loss_fn=maml.cross_entropy,
        )
    with pytest.raises(ValueError, match="support_x must be"):
        maml.adapt_tasks(
            model,
            batch.support_x[0, 0, 0],
            batch.support_y[0][:1],
            loss_fn=maml.cross_entropy,
        )
    with pytest.raises(ValueError, match="adapt_names"):
        maml.adapt(
            model,
            batch.support_x[0],
            batch.support_y[0],
            loss_fn=maml.cross_entropy,
            adapt_names=["nope"],
        )
    with pytest.raises(ValueError, match="order"):
        maml.MAMLConfig(task="sinusoid", order="third")


def _sinusoid_run(sample, iterations, rng_seed, **kw):
    """A seeded sinusoid MLP meta-trained with the resume tests' settings:
    (model, history)."""
    torch.manual_seed(0)
    model = SinusoidMLP()
    return model, maml.meta_train(
        model,
        sample,
        iterations=iterations,
        loss_fn=maml.mse_loss,
        inner_steps=1,
        alpha=0.01,
        meta_lr=1e-3,
        progress=False,
        log_every=1,
        rng=np.random.default_rng(rng_seed),
        **kw,
    )


def test_resumed_training_equals_uninterrupted_training():
    def sample(rng):
        return data.sample_sinusoid_tasks(4, 5, seed=rng)

    a, hist_a = _sinusoid_run(sample, 6, 5)
    saved = {}
    _sinusoid_run(sample, 3, 5, save=lambda s: saved.update(s))
    # a fresh process would start from a fresh model and generator
    c, hist_c = _sinusoid_run(sample, 6, 99, state=saved)
    for p, q in zip(a.parameters(), c.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert [h["meta_loss"] for h in hist_a] == [h["meta_loss"] for h in hist_c]


def test_checkpoint_roundtrip_evaluates_identically(tmp_path):
    torch.manual_seed(0)
    model = SinusoidMLP()
    config = maml.MAMLConfig(task="sinusoid", alpha=0.01)
    checkpoints.save_checkpoint(
        "toy",
        model.state_dict(),
        config=vars(config),
        command="test",
        seed=0,
        iterations=0,
        wall_time_s=0.0,
        directory=tmp_path,
    )
    state, entry = checkpoints.load_checkpoint("toy", tmp_path)
    assert entry["sha256"] and entry["command"] == "test"
    again = SinusoidMLP()
    again.load_state_dict(state)
    tasks = [data.sample_sinusoid_tasks(5, 5, 20, seed=1)]
    kw = dict(
        loss_fn=maml.mse_loss, inner_steps=3, alpha=0.01, metric=maml.mse_loss
    )
    np.testing.assert_array_equal(
        maml.evaluate(model, tasks, **kw), maml.evaluate(again, tasks, **kw)
    )
    # a changed file is refused
    with open(tmp_path / "toy.pt", "ab") as f:
        f.write(b"x")
    with pytest.raises(ValueError, match="sha256"):
        checkpoints.load_checkpoint("toy", tmp_path)


def test_cli_evaluate_json_line():
    if "maml-sinusoid" not in checkpoints.manifest():
        pytest.skip("maml-sinusoid checkpoint not trained yet")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlkit",
            "evaluate",
            "maml-sinusoid",
            "--tasks",
            "50",
            "--shots",
            "5",
            "--steps",
            "10",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = json.loads(out.strip().splitlines()[-1])
    assert (
        line["name"] == "maml-sinusoid"
        and line["metric"] == "mse"
        and line["tasks"] == 50
    )
    assert 0 < line["mean"] < 1.0 and line["ci95"] > 0


def test_resume_on_a_fresh_clone_starts_from_the_committed_checkpoint(
    tmp_path,
):
    # runs/ is not committed: --resume without it continues from the committed
    # checkpoint's iteration, into runs/ again
    env = {
        **__import__("os").environ,
        "MLKIT_CHECKPOINTS": str(tmp_path / "ck"),
        "MLKIT_RUNS": str(tmp_path / "runs"),
    }
    cmd = [sys.executable, "-m", "mlkit", "train", "maml-sinusoid"]
    subprocess.run(
        cmd + ["--iterations", "20"], env=env, check=True, capture_output=True
    )
    assert not (tmp_path / "ck").exists()  # training never writes checkpoints/
    subprocess.run(
        cmd + ["--promote"], env=env, check=True, capture_output=True
    )
    first = json.loads((tmp_path / "ck" / "MANIFEST.json").read_text())
    first = first["maml-sinusoid"]
    import shutil

    shutil.rmtree(tmp_path / "runs")
    out = subprocess.run(
        cmd + ["--iterations", "30", "--resume"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "resuming from the committed checkpoint at iteration 20" in out
    run = tmp_path / "runs" / "maml-sinusoid" / "MANIFEST.json"
    second = json.loads(run.read_text())["maml-sinusoid"]
    assert first["iterations"] == 20 and second["iterations"] == 30
    assert second["wall_time_s"] >= first["wall_time_s"]
    assert second["sha256"] != first["sha256"]


@pytest.mark.parametrize("anneal_from", [None, 2])
def test_time_limit_stops_saves_and_resumes_exactly(monkeypatch, anneal_from):
    # A fake clock that advances one second per task batch drawn, so the stop
    # is exact.
    clock = [0.0]
    monkeypatch.setattr(
        maml,
        "time",
        type("FakeTime", (), {"monotonic": staticmethod(lambda: clock[0])}),
    )

    def sample(rng):
        clock[0] += 1.0
        return data.sample_sinusoid_tasks(4, 5, seed=rng)

    a, hist_a = _sinusoid_run(sample, 6, 5, anneal_from=anneal_from)
    saved = {}
    _sinusoid_run(
        sample,
        6,
        5,
        time_limit_s=2.5,
        save=lambda s: saved.update(s),
        anneal_from=anneal_from,
    )
    assert (
        saved["iteration"] == 3
    )  # three batches cost three fake seconds >= 2.5
    assert saved["sessions"][-1]["from_iteration"] == 0
    assert saved["sessions"][-1]["to_iteration"] == 3
    c, hist_c = _sinusoid_run(
        sample,
        6,
        99,
        state=saved,
        save=lambda s: saved.update(s),
        anneal_from=anneal_from,
    )
    for p, q in zip(a.parameters(), c.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert [h["meta_loss"] for h in hist_a] == [h["meta_loss"] for h in hist_c]
    # both sessions ran on this machine: one row, iterations 0..6
    assert (
        len(saved["sessions"]) == 1
        and saved["sessions"][0]["to_iteration"] == 6
    )
    assert saved["sessions"][0]["machine"] == checkpoints.machine_description()


def test_cosine_meta_lr_follows_the_half_cosine():
    lr = lambda it: maml.cosine_meta_lr(it, 1e-3, 100, 300)  # noqa: E731
    assert lr(0) == lr(99) == lr(100) == 1e-3
    assert lr(200) == pytest.approx(0.5e-3)  # half way down the anneal
    assert lr(150) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    assert lr(300) == 0.0 and 0.0 < lr(299) < 1e-7
    assert (
        maml.cosine_meta_lr(10**6, 1e-3, None, 300) == 1e-3
    )  # no anneal: Finn's constant rate


def test_annealing_changes_training_only_from_anneal_from():
    def sample(rng):
        return data.sample_sinusoid_tasks(4, 5, seed=rng)

    plain, _ = _sinusoid_run(sample, 3, 5)
    late, _ = _sinusoid_run(
        sample, 3, 5, anneal_from=3
    )  # starts at the end: no change
    early, _ = _sinusoid_run(sample, 3, 5, anneal_from=1)
    for p, q in zip(plain.parameters(), late.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert any(
        not torch.equal(p, q)
        for p, q in zip(plain.parameters(), early.parameters())
    )


def test_recipe_config_keeps_the_anneal_length():
    full = maml.recipe_config("maml-omniglot-20w1s")
    tail = full.iterations - full.anneal_from
    assert tail > 0 and full == maml.CONFIGS["maml-omniglot-20w1s"]
    assert (
        full is not maml.CONFIGS["maml-omniglot-20w1s"]
    )  # a copy: the recipe is not changed
    longer = maml.recipe_config("maml-omniglot-20w1s", full.iterations + 500)
    assert longer.iterations - longer.anneal_from == tail
    short = maml.recipe_config("maml-omniglot-20w1s", 10)
    assert (short.iterations, short.anneal_from) == (
        10,
        0,
    )  # shorter than the anneal: all of it
    assert maml.recipe_config("maml-sinusoid", 5).anneal_from is None
    with pytest.raises(ValueError, match="iterations"):
        maml.recipe_config("maml-sinusoid", -1)
    with pytest.raises(ValueError, match="name"):
        maml.recipe_config("maml-nope")


@pytest.mark.parametrize("bad", [-1, 7, 2.5, True, "3"])
def test_bad_anneal_from(bad):
    with pytest.raises(ValueError, match="anneal_from"):
        maml.cosine_meta_lr(0, 1e-3, bad, 6)
    with pytest.raises(ValueError, match="anneal_from"):
        maml.MAMLConfig(
            task="sinusoid", alpha=0.01, iterations=6, anneal_from=bad
        )
    with pytest.raises(ValueError, match="anneal_from"):
        maml.meta_train(
            SinusoidMLP(),
            lambda rng: data.sample_sinusoid_tasks(2, 5, seed=rng),
            loss_fn=maml.mse_loss,
            iterations=6,
            anneal_from=bad,
            progress=False,
        )


def test_sessions_keep_the_machine_of_each_part():
    def sample(rng):
        return data.sample_sinusoid_tasks(2, 5, seed=rng)

    kw = dict(
        loss_fn=maml.mse_loss, progress=False, rng=np.random.default_rng(0)
    )
    saved = {}
    maml.meta_train(
        SinusoidMLP(),
        sample,
        iterations=2,
        save=lambda s: saved.update(s),
        **kw,
    )
    saved["sessions"][0]["machine"] = "another machine"
    maml.meta_train(
        SinusoidMLP(),
        sample,
        iterations=3,
        state=dict(saved),
        save=lambda s: saved.update(s),
        **kw,
    )
    rows = [
        (r["machine"], r["from_iteration"], r["to_iteration"])
        for r in saved["sessions"]
    ]
    assert rows == [
        ("another machine", 0, 2),
        (checkpoints.machine_description(), 2, 3),
    ]


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_time_limit(bad):
    with pytest.raises(ValueError, match="time_limit_s"):
        maml.meta_train(
            SinusoidMLP(),
            lambda rng: data.sample_sinusoid_tasks(2, 5, seed=rng),
            loss_fn=maml.mse_loss,
            iterations=1,
            time_limit_s=bad,
            progress=False,
        )


def test_task_batches_move_to_the_model_device():
    batch = _tiny_batch()
    assert maml._to_device(batch, torch.device("cpu")) is batch
    moved = maml._to_device(batch, torch.device("meta"))
    assert all(
        t.device.type == "meta"
        for t in (
            moved.support_x,
            moved.support_y,
            moved.query_x,
            moved.query_y,
        )
    )
    assert (
        moved.classes is batch.classes and batch.support_x.device.type == "cpu"
    )
    sin = maml._to_device(
        data.sample_sinusoid_tasks(2, 5, seed=0), torch.device("meta")
    )
    assert (
        sin.query_y.device.type == "meta"
        and sin.amplitude.device.type == "cpu"
    )


def test_cli_refuses_a_bad_time_limit():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlkit",
            "train",
            "maml-sinusoid",
            "--max-minutes",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    assert (
        out.returncode == 2
        and "--max-minutes: must be a positive" in out.stderr
    )


def test_fomaml_recipe_first_order_gradient_points_like_the_exact_one():
    """With the recipe's alpha the first-order meta-gradient must point
    roughly where the exact one does at initialisation: at alpha = 0.4
    (summed loss) the cosine was about -0.3 and first-order training stalled
    near 60%; at 0.1 it is about +0.3."""
    if not (data.omniglot_dir() / "images_background.npz").exists():
        pytest.skip("no Omniglot copy: set MLKIT_DATA")
    torch.set_num_threads(1)
    cfg = maml.CONFIGS["fomaml-omniglot-5w1s"]
    torch.manual_seed(0)
    model = maml.build_model(cfg)
    batch = maml._sampler(cfg)(np.random.default_rng(100))
    kw = dict(
        loss_fn=maml.cross_entropy,
        inner_loss_fn=maml.summed_cross_entropy(cfg.k_shot),
        inner_steps=cfg.inner_steps,
        alpha=cfg.alpha,
        batched=True,
    )
    fo, so = (
        _flat(maml.meta_gradient(model, batch, first_order=f, **kw))
        for f in (True, False)
    )
    assert float(torch.nn.functional.cosine_similarity(fo, so, dim=0)) > 0.2
    # the same check at the old alpha fails: the test can tell the two apart
    kw["alpha"] = 0.4
    fo, so = (
        _flat(maml.meta_gradient(model, batch, first_order=f, **kw))
        for f in (True, False)
    )
    assert float(torch.nn.functional.cosine_similarity(fo, so, dim=0)) < 0.0


@pytest.mark.parametrize(
    "variant", [dict(), dict(first_order=True), dict(anil=True)]
)
@pytest.mark.parametrize("batched", [False, True])
def test_concurrent_meta_gradient_equals_the_one_pass_gradient(
    variant, batched
):
    model = _tiny_net()
    batch = _tiny_batch(n_tasks=5)
    kw = dict(
        loss_fn=maml.cross_entropy,
        inner_steps=2,
        alpha=0.3,
        batched=batched,
        first_order=variant.get("first_order", False),
        adapt_names=(
            head_parameter_names(model) if variant.get("anil") else None
        ),
    )
    one = maml.meta_gradient(model, batch, **kw)
    grads, losses, out = maml.concurrent_meta_gradient(
        model, batch, workers=3, **kw
    )
    assert set(grads) == set(one)
    for n in one:
        torch.testing.assert_close(grads[n], one[n], rtol=1e-10, atol=1e-12)
    ref_losses, ref_out = maml.query_loss(model, batch, **kw)
    torch.testing.assert_close(
        losses, ref_losses.detach()
    )  # task order restored
    torch.testing.assert_close(out, ref_out.detach())
    assert torch.get_num_threads() >= 1 and all(
        p.grad is None for p in model.parameters()
    )


def test_concurrent_meta_train_runs_and_restores_threads():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = SinusoidMLP()
    hist = maml.meta_train(
        model,
        lambda rng: data.sample_sinusoid_tasks(4, 5, seed=rng),
        loss_fn=maml.mse_loss,
        iterations=3,
        workers=2,
        progress=False,
        log_every=1,
        metric=maml.mse_loss,
    )
    assert len(hist) == 3 and all(math.isfinite(h["meta_loss"]) for h in hist)
    assert torch.get_num_threads() == threads
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="workers"):
            maml.concurrent_meta_gradient(
                model,
                data.sample_sinusoid_tasks(2, 5, seed=0),
                loss_fn=maml.mse_loss,
                workers=bad,
            )


def test_begin_session_opens_one_row_per_machine():
    here = checkpoints.machine_description()
    fresh: list = []
    assert checkpoints.begin_session(fresh, 0, 0.0) == 0.0
    assert fresh == [
        {
            "machine": here,
            "from_iteration": 0,
            "to_iteration": 0,
            "wall_time_s": 0.0,
        }
    ]
    # a run saved before rows were kept: its first part is on the earlier
    # machine
    old: list = []
    assert (
        checkpoints.begin_session(old, 40, 123.44, earlier_machine="GPU B")
        == 0.0
    )
    assert [
        (
            r["machine"],
            r["from_iteration"],
            r["to_iteration"],
            r["wall_time_s"],
        )
        for r in old
    ] == [("GPU B", 0, 40, 123.4), (here, 40, 40, 0.0)]
    # resumed on the same machine: no new row, and the row's wall time goes
    # on from 12.5 s
    same = [
        {
            "machine": here,
            "from_iteration": 0,
            "to_iteration": 9,
            "wall_time_s": 12.5,
        }
    ]
    assert checkpoints.begin_session(same, 9, 12.5) == 12.5 and len(same) == 1


def test_training_sessions_and_their_description():
    old = {
        "machine": "CPU A",
        "iterations": 30,
        "wall_time_s": 7200.0,
        "metrics": {},
    }
    assert checkpoints.training_sessions(old) == [
        {
            "machine": "CPU A",
            "from_iteration": 0,
            "to_iteration": 30,
            "wall_time_s": 7200.0,
        }
    ]
    rows = [
        {
            "machine": "CPU A",
            "from_iteration": 0,
            "to_iteration": 10,
            "wall_time_s": 3600.0,
        },
        {
            "machine": "GPU B",
            "from_iteration": 10,
            "to_iteration": 30,
            "wall_time_s": 36.0,
        },
    ]
    new = {**old, "metrics": {"sessions": rows}}
    assert checkpoints.training_sessions(new) == rows
    assert checkpoints.describe_training(new).splitlines() == [
        "iterations 0-10: 1.00 h on CPU A",
        "iterations 10-30: 0.01 h on GPU B",
    ]


@pytest.mark.parametrize(
    "name", ["anil-omniglot-5w1s-background", "maml-omniglot-5w1s-background"]
)
def test_lake_split_recipes_train_on_rotated_background_test_on_evaluation(
    monkeypatch, name
):
    config = maml.CONFIGS[name]
    asked = []

    def pool(split, **kwargs):
        asked.append((split, kwargs.get("rotations")))
        raise RuntimeError("stop before loading images")

    monkeypatch.setattr(data, "omniglot_classes", pool)
    for split in (None, config.test_split):
        with pytest.raises(RuntimeError):
            maml._sampler(config, split)
    assert asked == [("background", True), ("evaluation", None)]
    assert data.shared_characters(config.split, config.test_split) == 0
    # the same recipe as the Finn-split one apart from the split
    base = maml.CONFIGS[name.removesuffix("-background")]
    assert (config.order, config.alpha, config.inner_steps) == (
        base.order,
        base.alpha,
        base.inner_steps,
    )


def test_rotations_must_be_a_flag_or_none():
    with pytest.raises(ValueError, match="rotations must be None, True"):
        maml.MAMLConfig(task="omniglot", rotations="yes")
