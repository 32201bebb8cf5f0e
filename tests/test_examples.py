"""MMD-critic (Kim, Khanna & Koyejo 2016): prototypes and criticisms."""

from __future__ import annotations

import math

import pytest
import torch

from mlkit import interpret


def two_clusters(seed: int, outliers: int = 0) -> torch.Tensor:
    """60 points around (0, 0), 30 around (6, 6), then ``outliers`` points
    around (6, -6), far from both."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(60, 2, generator=g) * 0.5
    b = torch.randn(30, 2, generator=g) * 0.5 + torch.tensor([6.0, 6.0])
    o = torch.randn(outliers, 2, generator=g) * 0.5 + torch.tensor(
        [6.0, -6.0])
    return torch.cat([a, b, o])


def test_mmd2_is_the_formula_and_zero_on_the_data_itself():
    z = two_clusters(0)
    gamma = interpret.median_gamma(z)
    d2 = torch.cdist(z.double(), z.double()) ** 2
    k = torch.exp(-gamma * d2)
    s = torch.tensor([0, 5, 70])
    by_hand = k.mean() - 2 * k[:, s].mean() + k[s][:, s].mean()
    assert interpret.mmd2(z, s, gamma=gamma) == pytest.approx(
        float(by_hand), abs=1e-12)
    assert interpret.mmd2(z, s) == pytest.approx(float(by_hand), abs=1e-12)
    assert interpret.mmd2(z, torch.arange(len(z))) == pytest.approx(
        0.0, abs=1e-12)
    i, j = torch.triu_indices(len(z), len(z), 1)
    assert gamma == pytest.approx(1 / float(d2[i, j].median()))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prototypes_come_from_both_clusters_in_proportion(seed):
    r = interpret.mmd_critic(two_clusters(seed), n_prototypes=6,
                             n_criticisms=0)
    # 60 : 30 points, so 4 : 2 prototypes
    assert int((r.prototypes < 60).sum()) == 4
    assert len(set(r.prototypes.tolist())) == 6
    assert r.mmd2 == pytest.approx(
        interpret.mmd2(two_clusters(seed), r.prototypes, gamma=r.gamma))
    assert r.mmd2_path[-1] == pytest.approx(r.mmd2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_prototypes_beat_random_subsets(seed):
    z = two_clusters(seed)
    r = interpret.mmd_critic(z, n_prototypes=6, n_criticisms=0)
    g = torch.Generator().manual_seed(100 + seed)
    random = torch.tensor([
        interpret.mmd2(z, torch.randperm(len(z), generator=g)[:6],
                       gamma=r.gamma) for _ in range(200)])
    # below the mean of random subsets and below 95% of them
    assert r.mmd2 < float(random.mean())
    assert float((random < r.mmd2).float().mean()) <= 0.05


@pytest.mark.parametrize("regularizer", ["logdet", None])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_group_of_outliers_without_a_prototype_holds_the_first_criticism(
        seed, regularizer):
    z = two_clusters(seed, outliers=6)
    r = interpret.mmd_critic(z, n_prototypes=6, n_criticisms=3,
                             regularizer=regularizer)
    assert not bool((r.prototypes >= 90).any())
    assert int(r.criticisms[0]) >= 90
    # the witness there is positive: more data than prototypes
    assert float(r.witness[r.criticisms[0]]) > 0
    assert not set(r.criticisms.tolist()) & set(r.prototypes.tolist())


def test_a_lone_outlier_has_witness_one_over_n():
    """What MMD-critic cannot do: a single far point's witness is
    k(x, x) / n = 1 / n, so in a large set it is not a criticism."""
    z = torch.cat([two_clusters(0), torch.tensor([[30.0, -30.0]])])
    r = interpret.mmd_critic(z, n_prototypes=6, n_criticisms=1)
    assert float(r.witness[-1]) == pytest.approx(1 / len(z), rel=1e-6)
    assert int(r.criticisms[0]) != len(z) - 1


def test_plain_criticisms_are_the_largest_witness_and_logdet_spreads():
    z = two_clusters(0, outliers=6)
    plain = interpret.mmd_critic(z, n_prototypes=6, n_criticisms=5,
                                 regularizer=None)
    reg = interpret.mmd_critic(z, n_prototypes=6, n_criticisms=5)
    free = torch.ones(len(z), dtype=torch.bool)
    free[plain.prototypes] = False
    order = torch.where(free, plain.witness.abs(), -1.0).argsort(
        descending=True)
    assert plain.criticisms.tolist() == order[:5].tolist()
    assert int(reg.criticisms[0]) == int(plain.criticisms[0])
    assert torch.equal(reg.prototypes, plain.prototypes)

    def spread(idx):
        return float(torch.pdist(z[idx].double()).min())

    assert spread(reg.criticisms) > spread(plain.criticisms)


def test_witness_is_the_papers_formula():
    z = two_clusters(1)
    r = interpret.mmd_critic(z, n_prototypes=4, n_criticisms=2, gamma=0.3)
    k = torch.exp(-0.3 * torch.cdist(z.double(), z.double()) ** 2)
    wit = k.mean(1) - k[:, r.prototypes].mean(1)
    assert torch.allclose(r.witness, wit, atol=1e-12)
    assert r.gamma == 0.3 and r.regularizer == "logdet"


@pytest.mark.parametrize("kwargs, says", [
    (dict(n_prototypes=91, n_criticisms=0), "n_prototypes"),
    (dict(n_prototypes=0, n_criticisms=1), "n_prototypes"),
    (dict(n_prototypes=1.5, n_criticisms=1), "n_prototypes"),
    (dict(n_prototypes=80, n_criticisms=20), "n_criticisms"),
    (dict(n_prototypes=3, n_criticisms=-1), "n_criticisms"),
    (dict(n_prototypes=3, n_criticisms=1, gamma=0.0), "gamma"),
    (dict(n_prototypes=3, n_criticisms=1, gamma=math.nan), "gamma"),
    (dict(n_prototypes=3, n_criticisms=1, regularizer="l2"),
     "regularizer"),
])
def test_mmd_critic_refuses_bad_settings(kwargs, says):
    with pytest.raises(ValueError, match=says):
        interpret.mmd_critic(two_clusters(0), **kwargs)


@pytest.mark.parametrize("z", [
    torch.tensor([[0.0, 1.0], [math.nan, 0.0], [1.0, 1.0]]),
    torch.tensor([[0.0, 1.0], [math.inf, 0.0], [1.0, 1.0]]),
    torch.zeros(5),  # not n x d
    torch.zeros(5, 2, 2),
    torch.zeros(4, 0),
    torch.zeros(0, 2),
    torch.ones(4, 2, dtype=torch.long),
    [[0.0, 1.0], [1.0, 0.0]],
])
def test_mmd_critic_refuses_bad_points(z):
    with pytest.raises(ValueError, match="z"):
        interpret.mmd_critic(z, n_prototypes=1, n_criticisms=0)


def test_identical_points_need_an_explicit_gamma():
    z = torch.ones(5, 3)
    with pytest.raises(ValueError, match="gamma"):
        interpret.mmd_critic(z, n_prototypes=2, n_criticisms=1)
    r = interpret.mmd_critic(z, n_prototypes=2, n_criticisms=3, gamma=1.0)
    assert r.mmd2 == pytest.approx(0.0, abs=1e-12)
    assert len(set(r.criticisms.tolist())) == 3


@pytest.mark.parametrize("subset, says", [
    (torch.tensor([0, 200]), "subset"),
    (torch.tensor([-1]), "subset"),
    (torch.tensor([], dtype=torch.long), "subset"),
    (torch.tensor([0.5]), "subset"),
])
def test_mmd2_refuses_bad_subsets(subset, says):
    with pytest.raises(ValueError, match=says):
        interpret.mmd2(two_clusters(0), subset)


def test_rbf_kernel_refuses_mismatched_features():
    with pytest.raises(ValueError, match="features"):
        interpret.rbf_kernel(torch.zeros(3, 2), torch.zeros(3, 4), 1.0)
