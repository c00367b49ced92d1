"""Tests for universality.geometry: metric properties, batched vs per-pair, independent CCA."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ortho_group
from sklearn.decomposition import PCA

from universality.geometry import DEFAULT_K, METRICS, Metric, distance, pairwise_distances

ALL = sorted(METRICS)
METRIC_PROPERTIES = settings(max_examples=15, deadline=None)


def _networks(seed: int, widths: list[int], m: int = 60, latent: int = 4) -> list[np.ndarray]:
    """Random networks ``[m, U_n]`` sharing a low-dim latent signal, so distances vary."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((m, latent))
    return [
        z @ rng.standard_normal((latent, u)) * rng.uniform(0, 2) + rng.standard_normal((m, u)) + rng.standard_normal(u)
        for u in widths
    ]


def _reference(x: np.ndarray, y: np.ndarray, metric: str, k: int = DEFAULT_K) -> float:
    """Straightforward per-pair numpy implementation of each metric."""
    x, y = x - x.mean(0), y - y.mean(0)
    if metric in ("svcca", "cca_angular"):

        def pca(a: np.ndarray) -> np.ndarray:
            return a @ np.linalg.svd(a, full_matrices=False)[2][:k].T

        qx, qy = np.linalg.qr(pca(x))[0], np.linalg.qr(pca(y))[0]
        rho = float(np.linalg.svd(qx.T @ qy, compute_uv=False).mean())
        return 1 - rho if metric == "svcca" else float(np.arccos(min(rho, 1.0)))
    if metric == "cka":
        kx, ky = x @ x.T, y @ y.T
        return float(1 - np.sum(kx * ky) / np.sqrt(np.sum(kx * kx) * np.sum(ky * ky)))
    width = max(x.shape[1], y.shape[1])
    x, y = (np.pad(a, ((0, 0), (0, width - a.shape[1]))) / np.linalg.norm(a) for a in (x, y))
    return float(np.arccos(min(float(np.linalg.norm(x.T @ y, "nuc")), 1.0)))


def _params(metric: str, k: int) -> dict[str, Any]:
    return {"k": k} if METRICS[metric].params else {}


def test_registry() -> None:
    assert set(METRICS) == {"svcca", "cca_angular", "cka", "procrustes"}
    assert all(isinstance(m, Metric) and m.name == name for name, m in METRICS.items())


@METRIC_PROPERTIES
@given(
    seed=st.integers(0, 2**32 - 1),
    widths=st.lists(st.integers(5, 12), min_size=1, max_size=7),
    metric=st.sampled_from(ALL),
)
def test_distance_matrix_properties(seed: int, widths: list[int], metric: str) -> None:
    d = pairwise_distances(_networks(seed, widths), metric, **_params(metric, 5))
    assert d.shape == (len(widths), len(widths))
    assert d.dtype == torch.float64
    assert torch.isfinite(d).all()
    assert torch.equal(d, d.T)
    assert torch.all(d.diagonal() == 0)
    assert torch.all(d >= 0)


@METRIC_PROPERTIES
@given(
    seed=st.integers(0, 2**32 - 1),
    widths=st.lists(st.integers(3, 9), min_size=2, max_size=6),
    block_size=st.integers(1, 4),
    metric=st.sampled_from(ALL),
)
def test_batched_equals_per_pair_reference(seed: int, widths: list[int], block_size: int, metric: str) -> None:
    xs = _networks(seed, widths, m=40)
    k = min(widths)
    d = pairwise_distances(xs, metric, block_size=block_size, **_params(metric, k)).numpy()
    for i in range(len(xs)):
        for j in range(i + 1, len(xs)):
            assert d[i, j] == pytest.approx(_reference(xs[i], xs[j], metric, k), abs=1e-6)


@pytest.mark.parametrize("metric", ALL)
def test_invariant_to_orthogonal_maps_scaling_and_shifts(metric: str) -> None:
    xs = _networks(0, [8, 10, 12, 8])
    rng = np.random.default_rng(1)
    moved = list(xs)
    for i in (0, 2):
        u = xs[i].shape[1]
        moved[i] = 3.7 * xs[i] @ ortho_group.rvs(u, random_state=rng) + rng.standard_normal(u)
    before, after = (pairwise_distances(a, metric, **_params(metric, 6)) for a in (xs, moved))
    torch.testing.assert_close(after, before, rtol=0, atol=1e-8)
    assert before[0, 1] > 0.05  # not trivially invariant


@pytest.mark.parametrize("metric", ["svcca", "cca_angular"])
def test_cca_invariant_to_invertible_linear_maps_at_full_rank(metric: str) -> None:
    xs = _networks(2, [6, 6, 8])
    rng = np.random.default_rng(3)
    a = rng.standard_normal((6, 6)) + 3 * np.eye(6)
    moved = [xs[0] @ a, *xs[1:]]
    torch.testing.assert_close(
        pairwise_distances(moved, metric, k=6), pairwise_distances(xs, metric, k=6), rtol=0, atol=1e-8
    )
    # ...whereas the non-whitened metrics see the change.
    for other in ("cka", "procrustes"):
        assert abs(distance(moved[0], xs[1], other) - distance(xs[0], xs[1], other)) > 1e-3


@pytest.mark.parametrize("metric", ["cca_angular", "procrustes"])
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_triangle_inequality(metric: str, seed: int) -> None:
    widths = list(np.random.default_rng(seed).integers(4, 9, size=8))
    d = pairwise_distances(_networks(seed, widths, latent=3), metric, **_params(metric, 4))
    detour = d[:, :, None] + d[None, :, :]  # [i, l, j] = d(i, l) + d(l, j)
    assert torch.all(d[:, None, :] <= detour + 1e-9)


def test_svcca_matches_independent_scipy_cca() -> None:
    """PCA (sklearn) then classical covariance CCA (Cholesky whitening, scipy)."""
    k = 5
    for seed in range(4):
        x, y = _networks(seed, [9, 14], m=200)
        rx, ry = (PCA(n_components=k).fit_transform(a) for a in (x, y))
        cov = np.cov(np.hstack([rx, ry]).T)
        lx, ly = np.linalg.cholesky(cov[:k, :k]), np.linalg.cholesky(cov[k:, k:])
        whitened = scipy.linalg.solve_triangular(
            lx, scipy.linalg.solve_triangular(ly, cov[k:, :k], lower=True).T, lower=True
        )
        rho = scipy.linalg.svdvals(whitened)
        assert np.all((rho >= 0) & (rho <= 1 + 1e-12))
        assert distance(x, y, "svcca", k=k) == pytest.approx(1 - rho.mean(), abs=1e-8)
        assert distance(x, y, "cca_angular", k=k) == pytest.approx(np.arccos(rho.mean()), abs=1e-8)


@pytest.mark.parametrize("metric", ALL)
def test_identical_networks_are_at_distance_zero(metric: str) -> None:
    x = _networks(4, [12])[0]
    assert distance(x, x, metric) == pytest.approx(0, abs=1e-6)
    d = pairwise_distances([x, x.copy(), -2 * x], metric)
    assert torch.all(d < 1e-6)


def test_input_forms_and_block_sizes_agree() -> None:
    stacked = torch.as_tensor(np.stack(_networks(5, [11] * 7)))
    expected = pairwise_distances(stacked, "svcca", block_size=64)
    for reps in (list(stacked), stacked.numpy(), [a.numpy() for a in stacked]):
        torch.testing.assert_close(pairwise_distances(reps, "svcca", block_size=3), expected, rtol=0, atol=1e-12)
    in_float32 = pairwise_distances(stacked.float(), "svcca", device="cpu")
    torch.testing.assert_close(in_float32, expected, rtol=0, atol=1e-5)
    low = pairwise_distances(stacked, "svcca", dtype=torch.float32)
    assert low.dtype == torch.float32
    assert float(distance(stacked[0], stacked[1])) == pytest.approx(float(expected[0, 1]), abs=1e-12)


def test_svcca_detects_a_shared_subspace() -> None:
    rng = np.random.default_rng(6)
    a = rng.standard_normal((300, 17))
    q = np.linalg.qr(a - a.mean(0))[0]  # centred orthonormal columns: shared | x-only | y-only
    shared = q[:, :3] * [30, 20, 10]
    x = np.hstack([shared, q[:, 3:8]]) @ ortho_group.rvs(8, random_state=rng)
    y = np.hstack([shared @ rng.standard_normal((3, 3)) * 5, q[:, 8:17]])
    z = rng.standard_normal((300, 12))
    assert distance(x, y, "svcca", k=3) < 1e-9
    assert distance(x, z, "svcca", k=3) > 0.8
    assert distance(x, y, "svcca", k=6) > 0.4  # beyond the shared subspace nothing matches


BAD_INPUTS = [
    ({"representations": [np.ones((5, 3))], "metric": "euclid"}, "unknown metric"),
    ({"representations": [np.zeros((5, 3)) + np.arange(3), np.eye(6, 3)]}, "samples"),
    ({"representations": np.ones((5, 3))}, r"\[N, M, U\]"),
    ({"representations": [np.ones(5)]}, r"\[M, U\]"),
    ({"representations": []}, "at least one"),
    ({"representations": [np.ones((1, 3))]}, "at least 2 samples"),
    ({"representations": [np.full((20, 4), np.nan)]}, "NaN"),
    ({"representations": [np.eye(20, 4), np.full((20, 4), np.inf)]}, "representation 1 contains NaN or inf"),
    ({"representations": [np.eye(20, 12), np.full((20, 12), 0.1)], "metric": "cka"}, r"networks \[1\].*constant"),
    ({"representations": [np.eye(30, 12), np.eye(30, 4)], "k": 10}, r"networks \[1\].*rank \[4\] < k=10"),
    ({"representations": [np.eye(30, 12)], "k": 30}, "more than k samples"),
    ({"representations": [np.eye(30, 12)], "k": 0}, "positive int"),
    ({"representations": [np.eye(30, 12)], "k": 2.5}, "positive int"),
    ({"representations": [np.eye(30, 12)], "metric": "cka", "k": 3}, r"unknown parameters \['k'\]"),
    ({"representations": [np.eye(30, 12)], "block_size": 0}, "block_size"),
]


@pytest.mark.parametrize(("kwargs", "message"), BAD_INPUTS)
def test_bad_input_raises_clear_value_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pairwise_distances(**kwargs)  # type: ignore[arg-type]
