"""Tests for universality.geometry.separability: MDS and separability statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from universality.geometry import pairwise_distances
from universality.geometry.separability import (
    Separability,
    chance_level,
    mds,
    nearest_neighbor_accuracy,
    permutation_test,
    separability,
    silhouette,
)


def _clusters(seed: int, sizes: list[int], spread: float = 0.3, dim: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distances ``[N, N]`` between points drawn around one centre per group, and labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.standard_normal((len(sizes), dim)) * 3
    points = centres[labels] + spread * rng.standard_normal((len(labels), dim))
    return cdist(points, points), labels


def test_mds_recovers_planar_configuration() -> None:
    points = np.random.default_rng(0).standard_normal((30, 2))
    d = cdist(points, points)
    embedding = mds(d, seed=1)
    assert embedding.shape == (30, 2)
    np.testing.assert_allclose(cdist(embedding, embedding), d, atol=1e-3)
    np.testing.assert_array_equal(mds(torch.as_tensor(d), seed=1), embedding)


def test_nearest_neighbor_accuracy_hand_example() -> None:
    # 0-1 close, 2-3 close, but 1's nearest other is 2 (distance 0.5).
    d = np.array([[0, 1, 3, 4], [1, 0, 0.5, 3], [3, 0.5, 0, 1], [4, 3, 1, 0]], dtype=float)
    assert nearest_neighbor_accuracy(d, ["a", "a", "b", "b"]) == pytest.approx(0.5)
    assert nearest_neighbor_accuracy(d, ["a", "b", "b", "a"]) == pytest.approx(0.5)
    assert nearest_neighbor_accuracy(d, ["a", "b", "b", "b"]) == pytest.approx(0.75)


def test_nearest_neighbor_accuracy_scores_ties_by_expectation() -> None:
    # every network at the same distance from every other: all N - 1 are tied nearest
    # neighbours, so each network scores (n_c - 1) / (N - 1), which averages to chance.
    labels = ["a", "a", "a", "b", "b", "c"]
    d = 1.0 - np.eye(6)
    expected = np.mean([2 / 5, 2 / 5, 2 / 5, 1 / 5, 1 / 5, 0 / 5])
    assert nearest_neighbor_accuracy(d, labels) == pytest.approx(expected, abs=1e-15)
    assert nearest_neighbor_accuracy(d, labels) == pytest.approx(chance_level(labels), abs=1e-15)
    # network 0 ties between 1 (same label) and 2 (other): scores 1/2, whatever the order
    d = np.array([[0, 1, 1, 5], [1, 0, 3, 5], [1, 3, 0, 5], [5, 5, 5, 0]], dtype=float)
    for order in ([0, 1, 2, 3], [0, 2, 1, 3]):
        perm = np.ix_(order, order)
        labels4 = np.array(["a", "a", "b", "b"])[order]
        # 0: 1/2; 1: nearest 0 (a) -> 1; 2: nearest 0 (a) -> 0; 3: nearest 0, 1, 2 tied at 5 -> 1/3
        assert nearest_neighbor_accuracy(d[perm], labels4) == pytest.approx((0.5 + 1 + 0 + 1 / 3) / 4)


def test_chance_level_formula_and_empirical_null() -> None:
    assert chance_level([0, 0, 1, 1]) == pytest.approx(1 / 3)
    assert chance_level(["x"] * 5) == 1.0
    labels = np.repeat([0, 1, 2], [10, 5, 5])
    d, _ = _clusters(1, [20])  # one structureless cloud
    rng = np.random.default_rng(2)
    accuracies = [nearest_neighbor_accuracy(d, rng.permutation(labels)) for _ in range(2000)]
    assert np.mean(accuracies) == pytest.approx(chance_level(labels), abs=0.01)


def _silhouette_by_definition(d: np.ndarray, labels: np.ndarray) -> float:
    """Rousseeuw (1987), one network at a time: a = mean distance to the others of its own
    group, b = smallest mean distance to another group, s = (b - a) / max(a, b); s = 0 for a
    network alone in its group."""
    scores = []
    for i, own in enumerate(labels):
        mates = [j for j in range(len(d)) if labels[j] == own and j != i]
        if not mates:
            scores.append(0.0)
            continue
        a = sum(d[i, j] for j in mates) / len(mates)
        b = min(sum(d[i, j] for j in range(len(d)) if labels[j] == g) / sum(labels == g)
                for g in set(labels.tolist()) if g != own)
        scores.append((b - a) / max(a, b))
    return sum(scores) / len(scores)


@pytest.mark.parametrize(("seed", "sizes", "spread"), [(3, [6, 7, 8], 0.3), (5, [1, 4, 9], 2.0), (6, [5, 5], 8.0)])
def test_silhouette_matches_its_definition(seed: int, sizes: list[int], spread: float) -> None:
    d, labels = _clusters(seed, sizes, spread)
    assert silhouette(d, labels) == pytest.approx(_silhouette_by_definition(d, labels), rel=1e-12)


def test_silhouette_of_a_hand_computed_example() -> None:
    # points 0, 1 on a line (group 0) and 10, 12 (group 1): a, b per point by hand
    x = np.array([0.0, 1.0, 10.0, 12.0])
    d = np.abs(x[:, None] - x[None, :])
    expected = np.mean([(11 - 1) / 11, (10 - 1) / 10, (9.5 - 2) / 9.5, (11.5 - 2) / 11.5])
    assert silhouette(d, [0, 0, 1, 1]) == pytest.approx(expected, rel=1e-12)
    assert silhouette(_clusters(3, [6, 7, 8])[0], _clusters(3, [6, 7, 8])[1]) > 0.5


def test_permutation_test_counts_ties_as_hits() -> None:
    # all distances equal: every relabelling ties with the observed statistic, so p = 1
    d = 1.0 - np.eye(12)
    assert permutation_test(d, np.repeat([0, 1, 2], 4), n_permutations=99) == 1.0


def test_permutation_test_matches_naive_loop() -> None:
    d, labels = _clusters(4, [8, 8], spread=6.0)  # weak structure: p is neither 0 nor 1
    rng = np.random.default_rng(0)
    upper = np.triu_indices(len(d), 1)

    def statistic(lab: np.ndarray) -> float:
        same = (lab[:, None] == lab[None, :])[upper]
        return d[upper][~same].mean() - d[upper][same].mean()

    observed = statistic(labels)
    null = np.array([statistic(rng.permutation(labels)) for _ in range(2000)])
    naive = (1 + np.sum(null >= observed)) / 2001
    p = permutation_test(d, labels, n_permutations=2000, seed=5)
    assert 0.02 < naive < 0.9
    assert p == pytest.approx(naive, abs=0.03)


def test_permutation_test_is_calibrated_under_the_null() -> None:
    rng = np.random.default_rng(6)
    labels = np.repeat([0, 1, 2], 6)
    p_values = [permutation_test(_clusters(s, [18])[0], rng.permutation(labels), 199, seed=s) for s in range(150)]
    assert 0.03 < np.mean(np.array(p_values) <= 0.1) < 0.2
    assert min(p_values) >= 1 / 200


def test_separability_of_true_clusters() -> None:
    d, labels = _clusters(7, [10, 12, 8])
    result = separability(d, labels, n_permutations=500)
    assert isinstance(result, Separability)
    assert result.nn_accuracy == 1.0
    assert result.p_value == pytest.approx(1 / 501)
    assert result.silhouette > 0.5
    assert result.mean_within < result.mean_between
    assert result.chance == pytest.approx(chance_level(labels))
    assert result.n_permutations == 500


def test_separability_of_shuffled_labels_is_near_chance() -> None:
    d, labels = _clusters(8, [30, 30, 30])
    shuffled = np.random.default_rng(9).permutation(labels)
    result = separability(d, shuffled, n_permutations=500)
    assert abs(result.nn_accuracy - result.chance) < 0.15
    assert result.p_value > 0.05
    assert abs(result.silhouette) < 0.1


def test_networks_cluster_by_family_through_svcca() -> None:
    """End to end: two 'architectures' with different latent geometry separate under SVCCA."""
    rng = np.random.default_rng(10)
    m, latent = 200, 4
    families = [rng.standard_normal((m, latent)) for _ in range(2)]
    labels = np.repeat([0, 1], 8)
    reps = [
        np.tanh(families[f] @ rng.standard_normal((latent, u))) + 0.3 * rng.standard_normal((m, u))
        for f, u in zip(labels, rng.integers(8, 16, size=len(labels)), strict=True)
    ]
    d = pairwise_distances(reps, "svcca", k=4)
    result = separability(d, labels, n_permutations=200)
    assert result.nn_accuracy == 1.0
    assert result.p_value < 0.01


BAD = [
    (lambda: mds(np.ones((3, 4))), "square"),
    (lambda: mds(np.array([[0, 1], [2, 0]])), "not symmetric"),
    (lambda: mds(np.array([[0, np.nan], [np.nan, 0]])), "NaN"),
    (lambda: mds(np.array([[1.0, 1], [1, 1]])), "zero diagonal"),
    (lambda: mds(np.array([[0, -1.0], [-1, 0]])), "non-negative"),
    (lambda: mds(np.zeros((3, 3)), n_components=3), "n_components"),
    (lambda: nearest_neighbor_accuracy(np.zeros((3, 3)), [0, 1]), "2 labels for 3"),
    (lambda: nearest_neighbor_accuracy(np.zeros((2, 2)), [[0], [1]]), "1-D"),
    (lambda: silhouette(np.zeros((3, 3)), [0, 0, 0]), "groups"),
    (lambda: permutation_test(np.zeros((3, 3)), [0, 1, 2]), "group sizes"),
    (lambda: permutation_test(np.zeros((3, 3)), [0, 0, 1], n_permutations=0), "n_permutations"),
    (lambda: chance_level([1]), "at least 2"),
]


@pytest.mark.parametrize(("call", "message"), BAD)
def test_bad_input_raises_clear_value_error(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
