"""The numeric tools of add_weighted_adapter, against dense float64 linear algebra."""

from __future__ import annotations

import pytest
import torch

from adapterhub.toolkit.weighted import combine, dense_svd, pad_rank, seeded, sum_svd


def _sources(out=48, inn=40, ranks=(2, 3, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    bs = [torch.randn(out, r, generator=g) for r in ranks]
    as_ = [torch.randn(r, inn, generator=g) for r in ranks]
    return bs, as_


def _dense(bs, as_, coefficients):
    return sum(c * (b.double() @ a.double()) for b, a, c in zip(bs, as_, coefficients, strict=True))


@pytest.mark.parametrize("rank", [9, 12])
def test_sum_svd_is_exact_when_the_rank_covers_every_source(rank):
    bs, as_ = _sources()
    coefficients = [0.7, -0.4, 1.3]
    b, a = sum_svd(bs, as_, coefficients, rank)
    assert b.shape == (48, rank) and a.shape == (rank, 40) and b.dtype == torch.float32
    exact = _dense(bs, as_, coefficients)
    assert (b.double() @ a.double() - exact).abs().max().item() < 1e-5 * exact.abs().max().item()
    if rank > 9:  # the extra components are zero
        assert torch.count_nonzero(b[:, 9:]) == 0 and torch.count_nonzero(a[9:]) == 0


@pytest.mark.parametrize("rank", [1, 4, 8])
def test_sum_svd_truncates_to_the_best_approximation(rank):
    bs, as_ = _sources(seed=1)
    coefficients = [1.0, 0.5, -2.0]
    exact = _dense(bs, as_, coefficients)
    u, s, vh = torch.linalg.svd(exact)
    best = (u[:, :rank] * s[:rank]) @ vh[:rank]
    b, a = sum_svd(bs, as_, coefficients, rank)
    assert (b.double() @ a.double() - best).abs().max().item() < 1e-5 * exact.abs().max().item()
    # A's rows are orthonormal singular vectors, as PEFT's Vh rows
    assert torch.allclose(a.double() @ a.double().T, torch.eye(rank, dtype=torch.float64), atol=1e-5)


def test_sum_svd_and_dense_svd_agree_component_by_component():
    bs, as_ = _sources(seed=2)
    coefficients = [0.3, 0.3, 0.3]
    b1, a1 = sum_svd(bs, as_, coefficients, 5)
    b2, a2 = dense_svd(_dense(bs, as_, coefficients).float(), 5)
    # one sign convention: each component's largest entry of U is positive
    assert torch.allclose(b1, b2, atol=1e-4) and torch.allclose(a1, a2, atol=1e-4)
    top = b1.abs().argmax(dim=0)
    assert (b1[top, torch.arange(5)] > 0).all()


@pytest.mark.parametrize("shape", [(60, 24), (24, 60)])  # the Gram matrix of either side
def test_dense_svd_gives_the_best_rank_k_factors_of_a_dense_matrix(shape):
    g = torch.Generator().manual_seed(4)
    delta = torch.randn(*shape, generator=g) * (torch.rand(*shape, generator=g) > 0.5)  # pruned: full rank
    u, s, vh = torch.linalg.svd(delta.double())
    for rank in (3, 10, 30):
        b, a = dense_svd(delta, rank)
        assert b.shape == (shape[0], rank) and a.shape == (rank, shape[1])
        k = min(rank, *shape)
        best = (u[:, :k] * s[:k]) @ vh[:k]
        assert (b.double() @ a.double() - best).abs().max().item() < 1e-5
        assert torch.allclose(a[:k].double() @ a[:k].double().T, torch.eye(k, dtype=torch.float64), atol=1e-5)
    # the same factors as an SVD in float64 (component signs by our convention)
    b, a = dense_svd(delta, 5)
    b2, a2 = _thin(delta.double(), 5)
    assert torch.allclose(b.double(), b2, atol=1e-5) and torch.allclose(a.double(), a2, atol=1e-5)


def _thin(delta, rank):
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    b, a = u[:, :rank] * s[:rank], vh[:rank]
    top = b.abs().argmax(dim=0)
    signs = torch.sign(b[top, torch.arange(rank)])
    return b * signs, a * signs[:, None]


def test_clamp_bounds_the_factors_at_the_quantile():
    bs, as_ = _sources(seed=3)
    b, a = sum_svd(bs, as_, [1, 1, 1], 6)
    cb, ca = sum_svd(bs, as_, [1, 1, 1], 6, clamp=0.8)
    hi = torch.quantile(torch.cat([b.flatten(), a.flatten()]), 0.8)
    assert torch.allclose(cb, b.clamp(-hi, hi)) and torch.allclose(ca, a.clamp(-hi, hi))
    assert cb.abs().max() <= hi + 1e-7 and (cb != b).any()


def test_pad_rank_keeps_the_product():
    b, a = torch.randn(5, 2), torch.randn(2, 7)
    pb, pa = pad_rank(b, a, 4)
    assert pb.shape == (5, 4) and pa.shape == (4, 7) and torch.equal(pb @ pa, b @ a)
    assert pad_rank(b, a, 2) == (b, a)


def test_combine_linear_is_the_weighted_sum_and_rules_prune():
    ts = [torch.randn(6, 6, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    w = [0.5, -1.0, 2.0]
    assert torch.allclose(combine("linear", ts, w), sum(x * t for x, t in zip(w, ts)))
    pruned = combine("magnitude_prune", ts[:1], [1.0], density=0.25)
    assert torch.count_nonzero(pruned) == 9  # the 9 largest of 36 entries
    kept = ts[0].abs().flatten().topk(9).values.min()
    assert (pruned[pruned != 0].abs() >= kept).all()
    with pytest.raises(ValueError, match="unknown combination rule"):
        combine("bogus", ts, w)


def test_seeded_is_reproducible_and_leaves_the_callers_generator_alone():
    ts = [torch.randn(20, 20) for _ in range(2)]
    state = torch.random.get_rng_state()
    with seeded(7):
        first = combine("dare_linear", ts, [1.0, 1.0], density=0.5)
    assert torch.equal(torch.random.get_rng_state(), state)
    with seeded(7):
        again = combine("dare_linear", ts, [1.0, 1.0], density=0.5)
    with seeded(8):
        other = combine("dare_linear", ts, [1.0, 1.0], density=0.5)
    assert torch.equal(first, again) and not torch.equal(first, other)
