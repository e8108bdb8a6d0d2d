"""The maths of combining adapters (``add_weighted_adapter``), for the methods that do it.

* :func:`sum_svd`: the truncated SVD of ``Σ cᵢ Bᵢ Aᵢ`` computed through the factors, never the
  dense matrix: ``Σ cᵢ Bᵢ Aᵢ = [B₁ … Bₙ] · [c₁A₁; …; cₙAₙ]``; a QR factorisation of each side
  leaves a small ``Σr × Σr`` core whose SVD gives the singular triplets of the sum. Exact (to
  rounding) when the rank kept is at least ``Σr``.
* :func:`dense_svd`: the truncated SVD of a dense matrix (the pruning rules make the delta dense);
  on the CPU through the eigendecomposition of its smaller Gram matrix in float64.
* :func:`combine`: PEFT's element-wise rules (task arithmetic, TIES, DARE, magnitude pruning), called
  from ``peft.utils.merge_utils`` as PEFT calls them.
* :func:`seeded`: run the random (DARE) rules under a fixed seed without touching the caller's RNG.

Every factor pair ``(B, A)`` is in LoRA's orientation: ``B`` is ``out × r``, ``A`` is ``r × in``
(convolution kernels flattened to ``r × (in·k…)`` by the caller). Results keep that orientation,
padded with zero components up to the rank asked for, so that every module of the new adapter
has the same rank. The SVD results follow one sign convention: each component's largest entry in
``U`` is positive (PEFT keeps whatever signs LAPACK returns, which only matters to ``svd_clamp``).

torch is imported inside the functions: importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

#: The element-wise rules of :func:`combine` (see :attr:`adapterhub.plugin.WeightedRequest.rule`).
RULES = ("linear", "ties", "dare_linear", "dare_ties", "magnitude_prune")


def combine(rule: str, tensors: Sequence[Any], weights: Sequence[float], *, density: float | None = None,
            majority_sign_method: str = "total") -> Any:
    """Combine same-shaped ``tensors`` with ``weights`` by one of PEFT's rules (``peft.utils.merge_utils``).

    The weights become a float32 tensor exactly as PEFT builds it (``torch.tensor(list)``), so the
    numbers match PEFT's bit for bit. DARE draws from torch's global generator: wrap calls in
    :func:`seeded` for a reproducible result.
    """
    import torch
    from peft.utils import merge_utils

    w = torch.tensor([float(x) for x in weights]).to(tensors[0].device)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The density .* no pruning will be performed")
        if rule == "linear":
            return merge_utils.task_arithmetic(list(tensors), w)
        if rule == "ties":
            return merge_utils.ties(list(tensors), w, density, majority_sign_method)
        if rule == "dare_linear":
            return merge_utils.dare_linear(list(tensors), w, density)
        if rule == "dare_ties":
            return merge_utils.dare_ties(list(tensors), w, density, majority_sign_method)
        if rule == "magnitude_prune":
            return merge_utils.magnitude_prune(list(tensors), w, density)
    raise ValueError(f"unknown combination rule {rule!r}; expected one of {RULES}")


@contextlib.contextmanager
def seeded(seed: int | None, device: Any = None) -> Iterator[None]:
    """Inside the block torch's generator (CPU, and ``device``'s when it is a GPU) starts from
    ``seed``; the caller's generator state is restored afterwards. ``seed=None``: no change."""
    if seed is None:
        yield
        return
    import torch

    devices = []
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _orient(u: Any) -> Any:
    """Signs per column such that each column's largest-magnitude entry is positive."""
    import torch

    pick = u.abs().argmax(dim=0, keepdim=True)
    signs = torch.sign(torch.gather(u, 0, pick))
    signs[signs == 0] = 1
    return signs


def _finish(b: Any, a: Any, rank: int, clamp: float | None, dtype: Any) -> tuple[Any, Any]:
    """``B = U·S``, ``A = Vh`` (largest components first) truncated or zero-padded to ``rank``, signs
    fixed, optionally clamped."""
    import torch

    keep = min(rank, a.shape[0])
    b, a = b[:, :keep], a[:keep]
    signs = _orient(b)
    b, a = (b * signs).to(dtype), (a * signs.T).to(dtype)
    if clamp is not None:  # PEFT's quantile clamp of the factors
        hi = torch.quantile(torch.cat([b.flatten(), a.flatten()]).float(), clamp).to(dtype)
        b, a = b.clamp(-hi, hi), a.clamp(-hi, hi)
    return pad_rank(b, a, rank)


def sum_svd(bs: Sequence[Any], as_: Sequence[Any], coefficients: Sequence[float], rank: int, *,
            clamp: float | None = None, dtype: Any = None) -> tuple[Any, Any]:
    """``(B, A)`` with ``B @ A`` the best rank-``rank`` approximation of ``Σ cᵢ Bᵢ Aᵢ``.

    ``bs[i]``: ``out × rᵢ``; ``as_[i]``: ``rᵢ × in``. Works in float64 on the factors: two thin QR
    factorisations (``out × Σr`` and ``in × Σr``) and the SVD of a ``Σr × Σr`` core, so the cost
    grows with ``(out + in)·(Σr)²`` instead of ``out·in·min(out, in)``. ``dtype``: of the result
    (default: the first factor's).
    """
    import torch

    dtype = dtype or as_[0].dtype
    b = torch.cat([x.to(torch.float64) for x in bs], dim=1)
    a = torch.cat([x.to(torch.float64) * float(c) for x, c in zip(as_, coefficients, strict=True)], dim=0)
    qb, rb = torch.linalg.qr(b)  # out × k, k × Σr
    qa, ra = torch.linalg.qr(a.T)  # in × k', k' × Σr
    uc, s, vhc = torch.linalg.svd(rb @ ra.T, full_matrices=False)
    return _finish((qb @ uc) * s, vhc @ qa.T, rank, clamp, dtype)


def dense_svd(delta: Any, rank: int, *, clamp: float | None = None, driver: str | None = None,
              dtype: Any = None) -> tuple[Any, Any]:
    """``(B, A)`` with ``B @ A`` the best rank-``rank`` approximation of the dense ``delta`` (``out × in``).

    The top singular vectors come from the symmetric eigendecomposition of the smaller Gram matrix
    (``ΔᵀΔ`` or ``ΔΔᵀ``) in float64: the same triplets as an SVD, to better than float32 precision,
    in less time (the ``*_svd`` rows of ``benchmarks/bench_merge.py``). With an explicit cuSOLVER
    ``driver`` (PEFT's ``svd_driver``) for a GPU tensor, the thin SVD by that driver.
    """
    import torch

    dtype = dtype or delta.dtype
    if driver is not None and delta.device.type == "cuda":
        u, s, vh = torch.linalg.svd(delta, full_matrices=False, driver=driver)
        return _finish(u * s, vh, rank, clamp, dtype)
    d = delta.to(torch.float64)
    keep = min(rank, *d.shape)
    if d.shape[1] <= d.shape[0]:  # right singular vectors: eigenvectors of ΔᵀΔ
        _, v = torch.linalg.eigh(d.T @ d)
        v = v[:, d.shape[1] - keep:].flip(1)  # largest eigenvalues first
        return _finish(d @ v, v.T, rank, clamp, dtype)
    lam, u = torch.linalg.eigh(d @ d.T)  # left singular vectors: eigenvectors of ΔΔᵀ
    u = u[:, d.shape[0] - keep:].flip(1)
    s = lam[d.shape[0] - keep:].flip(0).clamp_min(0).sqrt()
    inverse = torch.where(s > 0, 1 / s, torch.zeros_like(s))
    return _finish(u * s, (u.T @ d) * inverse[:, None], rank, clamp, dtype)


def pad_rank(b: Any, a: Any, rank: int) -> tuple[Any, Any]:
    """``(B, A)`` with zero components appended up to ``rank`` (``B @ A`` unchanged)."""
    import torch

    extra = rank - a.shape[0]
    if extra <= 0:
        return b, a
    return (torch.cat([b, b.new_zeros(b.shape[0], extra)], dim=1),
            torch.cat([a, a.new_zeros(extra, a.shape[1])], dim=0))
