"""Tests of Meta-SGD (Li et al. 2017) in mlkit.maml: per-parameter inner
rates, learned beside the initialisation, saved with the checkpoint; its
recipe on the command line.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit import checkpoints
from mlkit import data
from mlkit import maml
from mlkit.__main__ import main, recipes
from mlkit.nets import ConvNet, SinusoidMLP

ROOT = Path(__file__).resolve().parents[1]
NAME = "metasgd-omniglot-5w1s"


def _tiny_batch(n_tasks=2, n_way=3, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    sx = torch.rand(
        n_tasks, n_way, 1, size, size, generator=g, dtype=torch.float64
    )
    qx = torch.rand(
        n_tasks, 2 * n_way, 1, size, size, generator=g, dtype=torch.float64
    )
    sy = torch.arange(n_way).repeat(n_tasks, 1)
    qy = torch.arange(n_way).repeat_interleave(2).repeat(n_tasks, 1)
    return data.Episode(sx, sy, qx, qy, np.zeros((n_tasks, n_way), int))


def _tiny_net(alpha=0.3, seed=0, rates=True):
    torch.manual_seed(seed)
    model = ConvNet(3, hidden=4).double()
    return maml.attach_inner_rates(model, alpha) if rates else model


def _plain_params(model):
    return {
        n: p
        for n, p in model.named_parameters()
        if not n.startswith(maml.RATE_PREFIX)
    }


def test_rates_are_one_tensor_per_parameter_of_its_shape():
    model = _tiny_net(alpha=0.25)
    rates = maml.inner_rates(model)
    plain = _plain_params(model)
    assert list(rates) == list(plain)
    for n, r in rates.items():
        assert r.shape == plain[n].shape and r.dtype == plain[n].dtype
        assert torch.all(r == 0.25) and r.requires_grad
    # they are the model's parameters: the optimiser and the state dict carry
    # them
    ids = {id(p) for p in model.parameters()}
    assert all(id(r) in ids for r in rates.values())
    assert "inner_rates.body-0-0-weight" in model.state_dict()


@pytest.mark.parametrize("steps", [1, 2])
def test_equal_rates_give_maml_inner_step_and_meta_gradient(steps):
    model, batch = _tiny_net(alpha=0.3), _tiny_batch()
    plain = _tiny_net(rates=False)
    kw = dict(loss_fn=maml.cross_entropy, inner_steps=steps)
    sx, sy = batch.support_x[0], batch.support_y[0]
    ours = maml.adapt(model, sx, sy, alpha=maml.inner_rates(model), **kw)
    plain_fast = maml.adapt(plain, sx, sy, alpha=0.3, **kw)
    for n in plain_fast:
        torch.testing.assert_close(ours[n], plain_fast[n], rtol=0, atol=1e-14)
    fast = maml.adapt_tasks(
        model,
        batch.support_x,
        batch.support_y,
        alpha=maml.inner_rates(model),
        **kw,
    )
    for n in plain_fast:
        torch.testing.assert_close(
            fast[n][0], plain_fast[n], rtol=0, atol=1e-14
        )
    # the meta-gradient with respect to the initialisation is MAML's too
    g = maml.meta_gradient(model, batch, alpha=maml.inner_rates(model), **kw)
    g_maml = maml.meta_gradient(plain, batch, alpha=0.3, **kw)
    for n in g_maml:
        torch.testing.assert_close(g[n], g_maml[n], rtol=1e-10, atol=1e-13)
    assert all(
        g[maml.RATE_PREFIX + n.replace(".", "-")].abs().sum() > 0
        for n in g_maml
    )


def test_step_is_elementwise_and_rate_gradient_is_minus_g_support_g_query():
    model, batch = _tiny_net(), _tiny_batch(n_tasks=1)
    sx, sy, qx, qy = (
        batch.support_x[0],
        batch.support_y[0],
        batch.query_x[0],
        batch.query_y[0],
    )
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for r in maml.inner_rates(model).values():
            r.copy_(torch.rand(r.shape, generator=g, dtype=r.dtype) - 0.2)
    rates = maml.inner_rates(model)
    theta = _plain_params(model)
    grads = dict(
        zip(
            theta,
            torch.autograd.grad(
                maml.cross_entropy(maml.predict(model, theta, sx), sy),
                list(theta.values()),
            ),
        )
    )
    fast = maml.adapt(model, sx, sy, loss_fn=maml.cross_entropy, alpha=rates)
    for n in theta:
        torch.testing.assert_close(fast[n], theta[n] - rates[n] * grads[n])
    # d L_query(theta - alpha * g_s) / d alpha = -g_s * g_q(theta'),
    # elementwise
    loss = maml.cross_entropy(maml.predict(model, fast, qx), qy)
    d_rates = torch.autograd.grad(
        loss, [rates[n] for n in theta], retain_graph=True
    )
    g_query = torch.autograd.grad(loss, [fast[n] for n in theta])
    for n, dr, gq in zip(theta, d_rates, g_query):
        torch.testing.assert_close(dr, -grads[n] * gq)


def test_one_meta_step_changes_the_rates():
    model = _tiny_net(alpha=0.3)
    before = {
        n: r.detach().clone() for n, r in maml.inner_rates(model).items()
    }
    maml.meta_train(
        model,
        lambda rng: _tiny_batch(seed=int(rng.integers(100))),
        loss_fn=maml.cross_entropy,
        iterations=1,
        alpha=maml.inner_rates(model),
        meta_lr=1e-2,
        progress=False,
    )
    after = maml.inner_rates(model)
    change = {
        n: float((after[n] - before[n]).detach().abs().max()) for n in before
    }
    # A convolution's bias is cancelled by the BatchNorm after it: no gradient
    # reaches it or its rates. Every other tensor's rates move by about Adam's
    # step, 1e-2.
    conv_bias = [
        n for n in before if n.startswith("body.") and n.endswith(".0.bias")
    ]
    assert len(conv_bias) == 4
    for n, c in change.items():
        assert (c < 1e-6) if n in conv_bias else (c > 1e-3), (n, c)


def test_threads_give_the_one_pass_gradient_of_the_rates():
    model, batch = _tiny_net(), _tiny_batch(n_tasks=4)
    kw = dict(
        loss_fn=maml.cross_entropy,
        inner_steps=1,
        alpha=maml.inner_rates(model),
    )
    one = maml.meta_gradient(model, batch, **kw)
    grads, _, _ = maml.concurrent_meta_gradient(model, batch, workers=2, **kw)
    for n in one:
        torch.testing.assert_close(grads[n], one[n], rtol=1e-10, atol=1e-12)


def test_rates_round_trip_through_a_checkpoint(tmp_path):
    config = maml.MAMLConfig(task="sinusoid", alpha=0.01, order="metasgd")
    torch.manual_seed(0)
    model = maml.build_model(config)
    with torch.no_grad():
        for r in maml.inner_rates(model).values():
            r.mul_(torch.rand_like(r))
    checkpoints.save_checkpoint(
        "toy-metasgd",
        model.state_dict(),
        config=vars(config),
        command="test",
        seed=0,
        iterations=0,
        wall_time_s=0.0,
        directory=tmp_path,
    )
    state, entry = checkpoints.load_checkpoint("toy-metasgd", tmp_path)
    again = maml.build_model(maml.MAMLConfig(**entry["config"]))
    again.load_state_dict(state)
    for n, r in maml.inner_rates(model).items():
        torch.testing.assert_close(
            maml.inner_rates(again)[n], r, rtol=0, atol=0
        )


def test_the_summary_names_the_books_layers():
    model = _tiny_net(alpha=0.4)
    rows = maml.learned_rate_summary(model, alpha0=0.4)
    assert [r["parameter"] for r in rows] == list(_plain_params(model))
    assert [r["layer"] for r in rows][::2] == ["body.0"] * 2 + [
        "body.1"
    ] * 2 + ["body.2"] * 2 + ["body.3"] * 2 + ["head"]
    assert rows[0]["kind"] == "convolution weight"
    assert rows[1]["kind"] == "convolution bias"
    assert rows[2]["kind"] == "BatchNorm weight"
    assert rows[-1]["kind"] == "linear bias"
    for r in rows:
        assert r["mean_abs"] == pytest.approx(0.4) and r[
            "ratio"
        ] == pytest.approx(1.0)
        assert r["negative_share"] == 0.0 and r["q25_abs"] <= r["q75_abs"]
    with torch.no_grad():
        maml.inner_rates(model)["head.bias"].copy_(
            torch.tensor([-1.0, 0.5, 0.0])
        )
    last = maml.learned_rate_summary(model)[-1]
    assert (
        last["mean_abs"] == pytest.approx(0.5)
        and last["mean"] == pytest.approx(-1 / 6)
        and last["negative_share"] == pytest.approx(1 / 3)
    )
    assert "ratio" not in last
    mlp = maml.attach_inner_rates(SinusoidMLP(), 0.01)
    assert [r["layer"] for r in maml.learned_rate_summary(mlp)] == [
        "body.0",
        "body.0",
        "body.2",
        "body.2",
        "head",
        "head",
    ]


def _bad_rates(model):
    rates = {n: r.detach().clone() for n, r in maml.inner_rates(model).items()}
    first = next(iter(rates))
    nan = dict(rates)
    nan[first] = rates[first].clone().fill_(math.nan)
    return [
        ({}, "alpha must be a positive number or a non-empty mapping"),
        ({n: r for n, r in rates.items() if n != "head.bias"}, "missing"),
        (
            {**rates, "head.bias": rates["head.bias"][:2]},
            r"alpha\['head.bias'\]",
        ),
        ({**rates, "head.bias": [0.1, 0.1, 0.1]}, r"alpha\['head.bias'\]"),
        (
            {**rates, "head.bias": torch.ones(3, dtype=torch.long)},
            r"alpha\['head.bias'\]",
        ),
        (nan, "finite"),
        ({**rates, "nope": rates[first]}, "alpha holds names"),
        (
            {**rates, "inner_rates.head-bias": rates["head.bias"]},
            "alpha holds names",
        ),
    ]


def test_bad_rates_raise_value_errors_naming_alpha():
    model, batch = _tiny_net(), _tiny_batch()
    for bad, says in _bad_rates(model):
        with pytest.raises(ValueError, match=says):
            maml.adapt(
                model,
                batch.support_x[0],
                batch.support_y[0],
                loss_fn=maml.cross_entropy,
                alpha=bad,
            )
        with pytest.raises(ValueError, match=says):
            maml.adapt_tasks(
                model,
                batch.support_x,
                batch.support_y,
                loss_fn=maml.cross_entropy,
                alpha=bad,
            )
        with pytest.raises(ValueError, match=says):
            maml.adaptation_curve(
                model,
                batch,
                loss_fn=maml.cross_entropy,
                alpha=bad,
                max_steps=1,
            )


def test_other_bad_input_raises_value_errors_naming_the_argument():
    plain = _tiny_net(rates=False)
    with pytest.raises(ValueError, match="no learned inner rates"):
        maml.inner_rates(plain)
    with pytest.raises(ValueError, match="no learned inner rates"):
        maml.learned_rate_summary(plain)
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        maml.inner_rates("net")
    for bad in (0.0, -0.1, math.nan, math.inf, True, "0.4"):
        with pytest.raises(ValueError, match="alpha must be positive"):
            maml.attach_inner_rates(_tiny_net(rates=False), bad)
    model = _tiny_net()
    with pytest.raises(ValueError, match="already has inner rates"):
        maml.attach_inner_rates(model, 0.4)
    with pytest.raises(ValueError, match="alpha0"):
        maml.learned_rate_summary(model, alpha0=-1.0)
    batch = _tiny_batch()
    with pytest.raises(ValueError, match="adapt_names"):
        maml.adapt(
            model,
            batch.support_x[0],
            batch.support_y[0],
            loss_fn=maml.cross_entropy,
            alpha=0.4,
            adapt_names=["inner_rates.head-bias"],
        )
    with pytest.raises(ValueError, match="order"):
        maml.MAMLConfig(task="omniglot", order="meta-sgd")
    with pytest.raises(ValueError, match="init_from"):
        maml.MAMLConfig(task="omniglot", init_from="../maml")


def test_the_recipe_exists_and_starts_from_maml():
    config = maml.CONFIGS[NAME]
    assert (
        config.order == "metasgd" and config.init_from == "maml-omniglot-5w1s"
    )
    maml_config = maml.CONFIGS["maml-omniglot-5w1s"]
    for key in (
        "n_way",
        "k_shot",
        "q_queries",
        "split",
        "test_split",
        "inner_steps",
        "alpha",
        "meta_batch",
        "inner_loss",
    ):
        assert getattr(config, key) == getattr(maml_config, key), key
    recipe = recipes()[NAME]
    assert (
        recipe.trained_on == "finn-train" and recipe.test_split == "finn-test"
    )
    assert "alpha" not in recipe.evaluate_flags
    assert {
        "protocol",
        "steps",
        "split",
        "allow_seen",
    } <= recipe.evaluate_flags
    model = maml.build_model(config)
    assert isinstance(model, ConvNet) and len(maml.inner_rates(model)) == 18


BAD = [
    (["evaluate", NAME, "--alpha", "0.1"], "--alpha is not used"),
    (["evaluate", NAME, "--lake-runs"], "--lake-runs is not used"),
    (["evaluate", NAME, "--ways", "0"], "--ways"),
    (["evaluate", NAME, "--tasks", "0"], "--tasks"),
    (["evaluate", NAME, "--steps", "-1"], "--steps"),
    (["evaluate", NAME, "--protocol", "other"], "--protocol"),
    (["evaluate", NAME, "--split", "evaluation"], "training characters"),
    (["train", NAME, "--promote", "--iterations", "3"], "--promote"),
]


@pytest.mark.parametrize("argv, says", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_the_command_line_refuses_what_the_recipe_does_not_use(
    argv, says, refuses
):
    refuses(argv, says)


def _have_omniglot() -> bool:
    return all(row["present"] for row in data.check_data()[:2])


@pytest.mark.skipif(
    not _have_omniglot(), reason="no Omniglot copy: set MLKIT_DATA"
)
def test_training_starts_from_maml_records_it_and_promotes(
    monkeypatch, tmp_path, capsys
):
    ck = tmp_path / "ck"
    ck.mkdir()
    for f in ("MANIFEST.json", "maml-omniglot-5w1s.pt"):
        shutil.copy(ROOT / "checkpoints" / f, ck / f)
    monkeypatch.setattr(checkpoints, "CHECKPOINT_DIR", ck)
    monkeypatch.setattr(checkpoints, "RUN_DIR", tmp_path / "runs")
    torch.set_num_threads(1)
    assert main(["train", NAME, "--iterations", "1"]) == 0
    assert "starting from the weights of checkpoint maml-omniglot-5w1s" in (
        capsys.readouterr().out
    )
    assert main(["train", NAME, "--promote"]) == 0
    entry = json.loads((ck / "MANIFEST.json").read_text())[NAME]
    maml_entry = checkpoints.checkpoint_entry("maml-omniglot-5w1s", ck)
    origin = entry["metrics"]["init_from"]
    assert origin["checkpoint"] == "maml-omniglot-5w1s"
    assert origin["sha256"] == maml_entry["sha256"]
    assert origin["wall_time_s"] == maml_entry["wall_time_s"]
    assert entry["config"]["order"] == "metasgd" and entry["iterations"] == 1
    model, config, _ = maml.load_model(NAME)
    weights, _ = checkpoints.load_checkpoint("maml-omniglot-5w1s", ck)
    # one step of Adam (rate 1e-3) from MAML's weights and rates of 0.4
    for n, r in maml.inner_rates(model).items():
        r = r.detach()
        assert (r - 0.4).abs().max() <= 1.01e-3
        # a convolution's bias (cancelled by BatchNorm) gets no gradient
        conv_bias = n.startswith("body.") and n.endswith(".0.bias")
        assert torch.equal(r, torch.full_like(r, 0.4)) == conv_bias, n
        step = (model.get_parameter(n).detach() - weights[n]).abs().max()
        assert step <= 1.01e-3


def test_the_rates_figure_has_one_bar_per_tensor_and_refuses_bad_rows():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mlkit import viz

    rows = maml.learned_rate_summary(_tiny_net(alpha=0.4))
    fig = viz.plot_learned_rates(rows, alpha0=0.4, title="rates")
    ax = fig.axes[0]
    assert len(ax.patches) == len(rows)
    assert ax.get_xlabel() and ax.get_ylabel()
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        r["parameter"] for r in rows
    ]
    plt.close(fig)
    for bad, name in (
        ([], "rows"),
        ("x", "rows"),
        ([{"layer": "x"}], "rows"),
        (None, "rows"),
    ):
        with pytest.raises(ValueError, match=name):
            viz.plot_learned_rates(bad)
    for bad in (0.0, -1.0, math.nan, True):
        with pytest.raises(ValueError, match="alpha0"):
            viz.plot_learned_rates(rows, alpha0=bad)
