"""Tests of mlkit.interpret's representation similarity: the debiased linear
CKA (Song et al. 2012's unbiased HSIC), Kornblith et al.'s biased one, and
the pooled CKA with a bootstrap interval over tasks."""

from __future__ import annotations

import pytest
import torch

from mlkit import interpret
from mlkit.interpret import similarity
from mlkit.nets import ConvNet


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_debiased_cka_of_independent_wide_gaussians_is_near_zero():
    # the case that fooled the biased estimator: few examples, many features
    g = _gen(0)
    a = torch.randn(100, 12544, generator=g)
    b = torch.randn(100, 12544, generator=g)
    assert abs(interpret.linear_cka(a, b)) <= 0.05
    assert interpret.linear_cka(a, b, debiased=False) > 0.9


@pytest.mark.parametrize("debiased", [True, False])
def test_cka_of_identical_inputs_is_one(debiased):
    x = torch.randn(30, 3, 4, 4, generator=_gen(1))
    assert interpret.linear_cka(x, x, debiased=debiased) == pytest.approx(
        1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [True, False])
def test_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(debiased):
    g = _gen(2)
    x = torch.randn(60, 8, generator=g, dtype=torch.float64)
    y = torch.tanh(x @ torch.randn(8, 11, generator=g, dtype=torch.float64))
    base = interpret.linear_cka(x, y, debiased=debiased)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g,
                                       dtype=torch.float64))
    r, _ = torch.linalg.qr(torch.randn(11, 11, generator=g,
                                       dtype=torch.float64))
    assert interpret.linear_cka(x @ q, y @ r, debiased=debiased) == \
        pytest.approx(base, abs=1e-10)
    assert interpret.linear_cka(3.7 * x, 0.02 * y, debiased=debiased) == \
        pytest.approx(base, abs=1e-10)
    assert interpret.linear_cka(x, 5.0 * x @ q, debiased=debiased) == \
        pytest.approx(1.0, abs=1e-10)
    stretch = torch.diag(torch.tensor([50.0] + [1.0] * 7,
                                      dtype=torch.float64))
    assert abs(interpret.linear_cka(x @ stretch, y, debiased=debiased)
               - base) > 1e-3


def test_debiased_cka_matches_the_formula_written_out():
    g = _gen(3)
    x = torch.randn(9, 4, generator=g, dtype=torch.float64)
    y = torch.randn(9, 6, generator=g, dtype=torch.float64)

    def hsic(k, l_):
        n = k.shape[0]
        k = k - torch.diag(torch.diag(k))
        l_ = l_ - torch.diag(torch.diag(l_))
        one = torch.ones(n, dtype=k.dtype)
        return (torch.trace(k @ l_) + (one @ k @ one) * (one @ l_ @ one)
                / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l_ @ one
                ) / (n * (n - 3))

    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l_ = xc @ xc.T, yc @ yc.T
    expected = hsic(k, l_) / torch.sqrt(hsic(k, k) * hsic(l_, l_))
    assert interpret.linear_cka(x, y) == pytest.approx(float(expected),
                                                       abs=1e-12)


def test_weighted_hsic_equals_the_hsic_of_the_resample():
    # counts w stand for a resample with copies; copies never form a pair
    g = _gen(4)
    x = torch.randn(7, 3, generator=g, dtype=torch.float64)
    k = x @ x.T
    k0 = k - torch.diag(torch.diag(k))
    w = torch.tensor([2.0, 0, 1, 3, 1, 0, 1], dtype=torch.float64)
    idx = torch.repeat_interleave(torch.arange(7), w.long())
    kb = k0[idx][:, idx] * (idx[:, None] != idx[None]).to(k.dtype)
    ones = torch.ones(len(idx), dtype=k.dtype)
    assert float(similarity._hsic_terms(k0, k0, w)) == pytest.approx(
        float(similarity._hsic_terms(kb, kb, ones)), rel=1e-12)


@pytest.mark.parametrize("method", ["jackknife", "bootstrap"])
def test_cka_interval_separates_related_from_noise(method):
    g = _gen(5)
    x = torch.randn(240, 20, generator=g)
    groups = torch.arange(240) // 24
    related = interpret.cka_interval(x, torch.tanh(x[:, :10]), groups,
                                     method=method, n_boot=200)
    assert related.low > 0.3 and related.method == method
    noise = interpret.cka_interval(x, torch.randn(240, 20, generator=g),
                                   groups, method=method, n_boot=200)
    assert noise.low < 0.0 < noise.high
    assert (noise.n, noise.n_groups) == (240, 10)


def test_jackknife_interval_is_centred_on_the_estimate():
    g = _gen(7)
    x = torch.randn(120, 6, generator=g)
    y = x[:, :3] + torch.randn(120, 3, generator=g)
    ci = interpret.cka_interval(x, y, torch.arange(120) // 10)
    assert ci.low < ci.estimate < ci.high
    assert ci.estimate - ci.low == pytest.approx(ci.high - ci.estimate)
    assert ci.estimate == pytest.approx(interpret.linear_cka(x, y))


@pytest.mark.parametrize("x,y,word", [
    (torch.randn(3, 5), torch.randn(3, 5), "at least 4"),
    (torch.randn(6, 5), torch.randn(5, 5), "same examples"),
    (torch.full((6, 2), float("nan")), torch.randn(6, 2), "finite"),
    (torch.ones(6, 3), torch.randn(6, 2), "vary"),
])
def test_cka_bad_input(x, y, word):
    with pytest.raises(ValueError, match=word):
        interpret.linear_cka(x, y)


def test_cka_bad_flag_and_biased_minimum():
    with pytest.raises(ValueError, match="debiased"):
        interpret.linear_cka(torch.randn(6, 2), torch.randn(6, 2),
                             debiased=1)
    with pytest.raises(ValueError, match="at least 2"):
        interpret.linear_cka(torch.randn(1, 2), torch.randn(1, 2),
                             debiased=False)


def test_cka_interval_bad_input():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="groups"):
        interpret.cka_interval(x, x, torch.zeros(20, dtype=torch.long))
    with pytest.raises(ValueError, match="groups"):
        interpret.cka_interval(x, x, torch.zeros(19, dtype=torch.long))
    with pytest.raises(ValueError, match="n_boot"):
        interpret.cka_interval(x, x, torch.arange(20) // 5, n_boot=0)
    with pytest.raises(ValueError, match="level"):
        interpret.cka_interval(x, x, torch.arange(20) // 5, level=95)
    with pytest.raises(ValueError, match="method"):
        interpret.cka_interval(x, x, torch.arange(20) // 5, method="bca")
    with pytest.raises(ValueError, match="at least 3 groups"):
        interpret.cka_interval(x, x, torch.arange(20) // 10)


def test_layer_cka_unknown_layer_and_unchanged_weights():
    torch.manual_seed(0)
    net = ConvNet(3)
    x = torch.rand(12, 1, 28, 28, generator=_gen(6))
    same = interpret.layer_cka(net, None, dict(net.named_parameters()), x)
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in same.values())
    with pytest.raises(ValueError, match="unknown module names"):
        interpret.layer_cka(net, None, dict(net.named_parameters()), x,
                            ["body.9"])
