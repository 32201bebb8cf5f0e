"""Tests of mlkit.protonet: prototypes, logits, loss, resumable training,
the CLI recipes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlkit import checkpoints
from mlkit import protonet
from mlkit.nets import InductiveConvEmbedding


def test_prototypes_hand_computed():
    z = torch.tensor([[0.0, 0.0], [2.0, 2.0], [4.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([0, 0, 1, 2])
    protos = protonet.prototypes(z, y, 3)
    assert torch.allclose(
        protos, torch.tensor([[1.0, 1.0], [4.0, 0.0], [1.0, 1.0]])
    )


def test_logits_are_minus_squared_distance():
    q = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    protos = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert torch.allclose(
        protonet.prototype_logits(q, protos),
        torch.tensor([[0.0, -9.0], [-25.0, -16.0]]),
    )


def test_loss_matches_manual_cross_entropy_and_accuracy():
    torch.manual_seed(0)
    f = InductiveConvEmbedding(hidden=8).eval()
    sx, qx = torch.rand(6, 1, 28, 28), torch.rand(9, 1, 28, 28)
    sy, qy = torch.tensor([0, 0, 1, 1, 2, 2]), torch.tensor([0, 1, 2] * 3)
    loss, acc = protonet.protonet_loss(f, sx, sy, qx, qy, 3)
    zs, zq = f(sx), f(qx)
    protos = torch.stack([zs[sy == c].mean(0) for c in range(3)])
    logits = -torch.cdist(zq, protos).pow(2)
    assert loss.item() == pytest.approx(
        F.cross_entropy(logits, qy).item(), rel=1e-4
    )
    assert acc.item() == pytest.approx(
        (logits.argmax(1) == qy).float().mean().item()
    )


def test_bad_inputs():
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="support_y"):
        protonet.prototypes(z, torch.tensor([0, 1, 2, 3]), 3)
    with pytest.raises(ValueError, match="support_y"):
        protonet.prototypes(
            z, torch.tensor([0, 0, 2, 2]), 3
        )  # class 1 has no support
    with pytest.raises(ValueError, match="n_way"):
        protonet.prototypes(z, torch.tensor([0, 0, 0, 0]), 0)
    with pytest.raises(ValueError, match="support"):
        protonet.prototypes(z, torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="query"):
        protonet.prototype_logits(torch.zeros(3, 2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="iterations"):
        protonet.train_protonet(0)


def test_training_is_resumable_and_learns(monkeypatch, tmp_path):
    from mlkit.data import omniglot_dir

    if not (omniglot_dir() / "images_background.npz").exists():
        pytest.skip("no Omniglot copy: set MLKIT_DATA")
    monkeypatch.setattr(checkpoints, "RUN_DIR", tmp_path)
    torch.set_num_threads(1)
    cfg = {
        "hidden": 8,
        "train_way": 5,
        "q_queries": 2,
        "eval_every": 0,
        "rotations": False,
        "lr_halvings": 0,
    }
    straight, h = protonet.train_protonet(4, config=cfg, progress=False)
    protonet.train_protonet(2, config=cfg, progress=False, run_name="p")
    resumed, h2 = protonet.train_protonet(
        4, config=cfg, progress=False, run_name="p", resume=True
    )
    for a, b in zip(
        straight.state_dict().values(), resumed.state_dict().values()
    ):
        assert torch.equal(a, b)
    assert h2["loss"] == h["loss"] and np.isfinite(h["loss"]).all()


def test_recipes_are_registered():
    from mlkit.__main__ import recipes

    names = recipes()
    assert {"siamese-omniglot", "protonet-omniglot"} <= set(names)


def test_committed_checkpoint_reproduces_its_lake_runs_number():
    """The checkpoint in the repository evaluates to the number its manifest
    records."""
    from mlkit.data import load_lake_runs, omniglot_dir
    from mlkit.siamese import lake_runs_accuracy

    if not (omniglot_dir() / "all_runs.zip").exists():
        pytest.skip("no Omniglot copy: set MLKIT_DATA")
    torch.set_num_threads(1)
    net, entry = protonet.load_protonet("protonet-omniglot")
    acc, _ = lake_runs_accuracy(net, load_lake_runs())
    assert round(float(acc.mean()), 2) == entry["metrics"]["lake_runs"][0]
