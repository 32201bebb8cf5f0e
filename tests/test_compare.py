"""The head-to-head comparison (mlkit.compare) and the fine-tuning baseline
(mlkit.baselines), on tiny synthetic inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mlkit import baselines, compare
from mlkit.data import ClassPool, split_char_ids
from mlkit.nets import ConvNet

ROOT = Path(__file__).resolve().parent.parent


def _pool(char_ids: np.ndarray, size: int = 8, seed: int = 0) -> ClassPool:
    rng = np.random.default_rng(seed)
    images = rng.random((len(char_ids), 20, size, size)).astype(np.float32)
    return ClassPool(
        "toy",
        images,
        np.asarray(char_ids, np.int64),
        np.arange(len(char_ids)),
        np.zeros(len(char_ids), np.int64),
    )


def _separable(
    n_way: int = 5, n: int = 20, size: int = 16, seed: int = 0
) -> ClassPool:
    """Class c: a bright 4x4 square at its own place, plus a little noise."""
    rng = np.random.default_rng(seed)
    images = 0.1 * rng.random((n_way, n, size, size)).astype(np.float32)
    for c in range(n_way):
        r, q = divmod(3 * c, size - 4)
        images[c, :, r * 4 : r * 4 + 4, q : q + 4] += 1.0
    return ClassPool(
        "separable",
        images,
        np.arange(1, n_way + 1),
        np.arange(n_way),
        np.zeros(n_way, np.int64),
    )


def _spy(name: str, seen: list, trained_on=("background",)) -> compare.Learner:
    def predict(sx, sy, qx, n_way):
        seen.append((sx.clone(), sy.clone(), qx.clone()))
        return torch.zeros(qx.shape[:2], dtype=torch.long)

    return compare.Learner(name, name, tuple(trained_on), "none", predict)


# ---------------------------------------------------------------- test classes


def test_unseen_pool_keeps_only_characters_no_learner_trained_on() -> None:
    evaluation = split_char_ids("evaluation")
    pool = compare.unseen_pool(pool=_pool(evaluation, size=4))
    expected = np.setdiff1d(evaluation, split_char_ids("finn-train"))
    assert len(pool) == len(expected) == 173
    np.testing.assert_array_equal(pool.char_ids, expected)
    assert not np.isin(pool.char_ids, split_char_ids("background")).any()
    assert (pool.rotation == 0).all()


def test_check_unseen_refuses_a_learner_that_saw_test_classes() -> None:
    evaluation = split_char_ids("evaluation")
    pool = compare.unseen_pool(pool=_pool(evaluation, size=4))
    clean = [
        _spy("siamese", [], ("background",)),
        _spy("finetune", [], ("background-train", "validation")),
        _spy("maml", [], ("finn-train",)),
    ]
    compare.check_unseen(pool, clean)  # no error
    with pytest.raises(
        ValueError,
        match="learners: cheat trained on " "evaluation, which holds 173",
    ):
        compare.check_unseen(
            pool, clean + [_spy("cheat", [], ("evaluation",))]
        )
    # the whole evaluation split (not filtered) shares 486 with finn-train
    with pytest.raises(
        ValueError, match="maml trained on finn-train, " "which holds 486"
    ):
        compare.check_unseen(_pool(evaluation, size=4), clean)


# ------------------------------------------------------------------ episodes


def test_every_learner_sees_the_same_episodes() -> None:
    pool = _pool(np.arange(1000, 1012))
    episodes = compare.sample_episodes(pool, (1, 3), 7, q_queries=4, seed=3)
    seen_a, seen_b = [], []
    out = compare.run_comparison(
        [_spy("a", seen_a), _spy("b", seen_b)], episodes, batch_size=3
    )
    assert len(seen_a) == len(seen_b) == 2 * 3  # 7 tasks in chunks of 3
    for (xa, ya, qa), (xb, yb, qb) in zip(seen_a, seen_b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert torch.equal(qa, qb)
    # a rerun draws the same episodes; another seed others
    again = compare.sample_episodes(pool, (1, 3), 7, q_queries=4, seed=3)
    other = compare.sample_episodes(pool, (1, 3), 7, q_queries=4, seed=4)
    for k in (1, 3):
        assert (
            compare.episode_sha256(episodes[k])
            == compare.episode_sha256(again[k])
            != compare.episode_sha256(other[k])
        )
    # shapes: 5-way, K shots, 4 queries per class, 7 tasks
    assert tuple(episodes[3].support_x.shape) == (7, 15, 1, 8, 8)
    assert tuple(episodes[3].query_y.shape) == (7, 20)
    # label 0 for every query: 1 in 5 right; per K, 7 tasks
    assert out["a"]["accuracy"]["3"]["mean"] == pytest.approx(20.0)
    assert out["a"]["accuracy"]["1"]["tasks"] == 7
    assert len(out["b"]["accuracy"]["1"]["per_task"]) == 7


def test_learners_never_receive_query_labels() -> None:
    pool = _pool(np.arange(1000, 1010))
    episodes = compare.sample_episodes(pool, (2,), 3, q_queries=3)
    calls = []

    def predict(*args):
        calls.append(len(args))
        return torch.zeros(args[2].shape[:2], dtype=torch.long)

    compare.run_comparison(
        [compare.Learner("x", "x", (), "none", predict)], episodes
    )
    assert calls == [4]  # support_x, support_y, query_x, n_way


def test_embedding_learners_on_a_separable_toy() -> None:
    pool = _separable()
    episodes = compare.sample_episodes(pool, (1, 5), 6, q_queries=5)
    pixels = compare.pixel_learner()
    proto = compare.embedding_learner(
        "p", "p", lambda x: x.flatten(1), (), "prototype"
    )
    out = compare.run_comparison([pixels, proto], episodes)
    for name in ("pixels", "p"):
        for k in ("1", "5"):
            assert out[name]["accuracy"][k]["mean"] == 100.0


# ------------------------------------------------------------------ baseline


def test_finetune_baseline_beats_chance_on_a_separable_toy() -> None:
    torch.manual_seed(0)
    net = ConvNet(10)  # random features: the toy needs no pretraining
    pool = _separable()
    ep = compare.sample_episodes(pool, (2,), 4, q_queries=5, seed=0)[2]
    for mode, steps in (("head", 100), ("all", 20)):
        logits = baselines.finetune_predict(
            net,
            ep.support_x,
            ep.support_y,
            ep.query_x,
            5,
            mode=mode,
            steps=steps,
            lr=0.01,
        )
        assert tuple(logits.shape) == (4, 25, 5)
        acc = (logits.argmax(-1) == ep.query_y).float().mean().item()
        assert acc > 0.6, (mode, acc)  # chance is 0.2
    learner = compare.finetune_learner(net, ("background-train",))
    out = compare.run_comparison([learner], {2: ep})
    assert out["finetune"]["accuracy"]["2"]["mean"] > 60.0


def test_fit_linear_head_separates_separable_features() -> None:
    z = torch.eye(3).repeat(2, 2, 1) * 5.0  # (2 tasks, 6, 3)
    y = torch.tensor([0, 1, 2, 0, 1, 2]).repeat(2, 1)
    w, b = baselines.fit_linear_head(z, y, 3, steps=50, lr=0.1)
    assert tuple(w.shape) == (2, 3, 3) and tuple(b.shape) == (2, 3)
    assert torch.equal((torch.bmm(z, w) + b[:, None]).argmax(-1), y)


def test_pretrain_and_reload(tmp_path: Path) -> None:
    pool = _separable(n_way=6, size=8)
    net, history = baselines.pretrain(
        30,
        config={"batch": 8, "split": "background-train"},
        pool=pool,
        progress=False,
    )
    assert net.head.out_features == 6
    assert history["iterations"] == 30 and len(history["loss"]) == 30
    baselines.save_pretrained(
        net, history, command="test", name="toy-pre", directory=tmp_path
    )
    again, entry = baselines.load_pretrained("toy-pre", directory=tmp_path)
    assert entry["config"]["n_classes"] == 6
    assert entry["config"]["split"] == "background-train"
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(net(x), again(x))


@pytest.mark.parametrize(
    "call, name",
    [
        (
            lambda: baselines.fit_linear_head(
                torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), 1
            ),
            "n_way",
        ),
        (
            lambda: baselines.fit_linear_head(
                torch.zeros(1, 2, 3), torch.zeros(1, 3, dtype=torch.long), 2
            ),
            "support_y",
        ),
        (
            lambda: baselines.fit_linear_head(
                torch.zeros(1, 2, 3),
                torch.zeros(1, 2, dtype=torch.long),
                2,
                steps=0,
            ),
            "steps",
        ),
        (
            lambda: baselines.fit_linear_head(
                torch.zeros(1, 2, 3),
                torch.zeros(1, 2, dtype=torch.long),
                2,
                lr=-1.0,
            ),
            "lr",
        ),
        (
            lambda: baselines.finetune_predict(
                ConvNet(2),
                torch.zeros(1, 2, 1, 8, 8),
                torch.zeros(1, 2, dtype=torch.long),
                torch.zeros(1, 2, 1, 8, 8),
                2,
                mode="some",
            ),
            "mode",
        ),
        (
            lambda: baselines.finetune_predict(
                torch.nn.Linear(2, 2),
                torch.zeros(1, 2, 1, 8, 8),
                torch.zeros(1, 2, dtype=torch.long),
                torch.zeros(1, 2, 1, 8, 8),
                2,
            ),
            "net",
        ),
        (
            lambda: baselines.finetune_predict(
                ConvNet(2),
                torch.zeros(2, 1, 8, 8),
                torch.zeros(1, 2, dtype=torch.long),
                torch.zeros(1, 2, 1, 8, 8),
                2,
            ),
            "support_x",
        ),
        (lambda: baselines.pretrain(0), "iterations"),
        (lambda: baselines.pretrain(5, config={"lr": 0}), "lr"),
        (lambda: baselines.pretrain(5, config={"epochs": 3}), "config"),
        (
            lambda: compare.sample_episodes(
                _pool(np.arange(1, 9)), (1, 15), 2
            ),
            "shots",
        ),
        (
            lambda: compare.sample_episodes(_pool(np.arange(1, 9)), (), 2),
            "shots",
        ),
        (
            lambda: compare.sample_episodes(_pool(np.arange(1, 9)), (1,), 0),
            "n_tasks",
        ),
        (
            lambda: compare.unseen_pool(
                ("nowhere",), pool=_pool(np.arange(1, 9))
            ),
            "trained_on",
        ),
        (lambda: compare.unseen_pool(test_split="test"), "test_split"),
        (lambda: compare.run_comparison([], {}), "learners"),
        (
            lambda: compare.embedding_learner(
                "e", "e", lambda x: x, (), "far"
            ),
            "method",
        ),
        (
            lambda: compare.Learner("x", "x", ("nowhere",), "", lambda *a: a),
            "trained_on",
        ),
    ],
)
def test_bad_input_is_a_value_error_naming_the_argument(call, name) -> None:
    with pytest.raises(ValueError, match=name):
        call()


# -------------------------------------------------------------- figure, result


def _fake_result() -> dict:
    acc = {
        str(k): {"mean": m, "ci95": 1.0}
        for k, m in zip((1, 2, 5, 10), (95.0, 97.0, 98.5, 99.0))
    }
    low = {
        str(k): {"mean": m, "ci95": 2.0}
        for k, m in zip((1, 2, 5, 10), (40.0, 50.0, 65.0, 73.0))
    }
    return {
        "n_way": 5,
        "learners": {
            "maml": {"label": "MAML", "accuracy": acc},
            "pixels": {"label": "pixels", "accuracy": low},
        },
    }


def test_plot_head_to_head_labels_its_axes_in_words() -> None:
    from mlkit import viz

    fig = viz.plot_head_to_head(_fake_result())
    left, right = fig.axes[:2]
    assert left.get_xlabel() == "shots per class (K)"
    assert left.get_ylabel() == "query accuracy (%)"
    assert len(left.lines) > len(right.lines)  # the zoom leaves pixels out
    with pytest.raises(ValueError, match="learners"):
        viz.plot_head_to_head(_fake_result(), learners=["nobody"])
    with pytest.raises(ValueError, match="result"):
        viz.plot_head_to_head({})


def test_stored_result_states_its_protocol() -> None:
    path = ROOT / "checkpoints" / "head_to_head.json"
    if not path.exists():
        pytest.skip("no stored head-to-head result yet")
    result = json.loads(path.read_text())
    assert result["command"].startswith("python -m mlkit.compare")
    assert result["test_pool"]["classes"] == 173
    assert result["queries_per_class"] == 10 and result["n_way"] == 5
    assert "unseen" in result["protocol"]
    names = set(result["learners"])
    assert {
        "maml-omniglot-5w1s",
        "fomaml-omniglot-5w1s",
        "anil-omniglot-5w1s",
        "siamese",
        "protonet",
        "finetune",
    } <= names
    for entry in result["learners"].values():
        assert sorted(entry["accuracy"], key=int) == ["1", "2", "5", "10"]
        for row in entry["accuracy"].values():
            assert row["tasks"] == result["tasks_per_shot"]
            assert len(row["per_task"]) == row["tasks"]
        assert not set(entry["trained_on"]) & {"evaluation", "finn-test"}


def test_summary_table_fits_the_page() -> None:
    fake = _fake_result()
    fake["learners"]["maml"]["label"] = "x" * 60  # cut to fit
    text = compare.summary_table(fake)
    lines = text.splitlines()
    assert len(lines) == 3 and lines[0].startswith("learner")
    assert "K = 10" in lines[0] and "95.0 ± 1.0" in lines[1]
    assert max(map(len, lines)) <= 79
    with pytest.raises(ValueError, match="result"):
        compare.summary_table({"learners": {}})


def test_load_result_says_how_to_make_a_missing_one(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m mlkit.compare"):
        compare.load_result(tmp_path / "none.json")


def test_paired_difference_uses_the_shared_episodes() -> None:
    fake = {
        "learners": {
            "a": {"accuracy": {"1": {"per_task": [90.0, 80.0, 100.0]}}},
            "b": {"accuracy": {"1": {"per_task": [85.0, 75.0, 95.0]}}},
        }
    }
    mean, ci = compare.paired_difference(fake, "a", "b", 1)
    assert mean == pytest.approx(5.0) and ci == pytest.approx(0.0)
    with pytest.raises(ValueError, match="second"):
        compare.paired_difference(fake, "a", "c", 1)
    with pytest.raises(ValueError, match="shots"):
        compare.paired_difference(fake, "a", "b", 2)
