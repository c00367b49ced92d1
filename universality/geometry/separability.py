"""Compare networks through a distance matrix: MDS embedding and separability statistics
(every permutation test is ``scipy.stats.permutation_test``).

Every function takes an ``[N, N]`` distance matrix (numpy array or torch tensor; symmetric,
finite, non-negative, zero diagonal) and, where relevant, N labels (e.g. architecture).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sklearn
import torch
from scipy import stats
from sklearn.manifold import MDS
from sklearn.metrics import silhouette_score

__all__ = [
    "Separability",
    "chance_level",
    "mds",
    "nearest_neighbor_accuracy",
    "nearest_neighbor_scores",
    "nearest_neighbours",
    "nn_permutation_p",
    "permutation_test",
    "separability",
    "silhouette",
]

log = logging.getLogger(__name__)

#: (major, minor) of the installed scikit-learn, e.g. (1, 9).
_SKLEARN_VERSION = tuple(int(part) for part in sklearn.__version__.split(".")[:2])

Distances = np.ndarray | torch.Tensor
Labels = np.ndarray | torch.Tensor | Sequence[object]


@dataclass(frozen=True)
class Separability:
    """How well labels separate networks in a distance matrix.

    ``nn_accuracy``: leave-one-out 1-NN accuracy; ``chance``: its expectation under random
    labels (:func:`chance_level`); ``silhouette``: mean silhouette in [-1, 1];
    ``p_value``: permutation test of within- vs between-group distance; ``mean_within`` /
    ``mean_between``: mean distance over pairs with equal / different labels.
    """

    nn_accuracy: float
    chance: float
    silhouette: float
    p_value: float
    mean_within: float
    mean_between: float
    n_permutations: int


def mds(distances: Distances, n_components: int = 2, seed: int = 0) -> np.ndarray:
    """Metric MDS embedding of ``distances [N, N]``: returns ``[N, n_components]``.

    SMACOF initialised with classical MDS (deterministic up to sklearn's random state).
    """
    d = _check_distances(distances)
    if not 1 <= n_components < len(d):
        raise ValueError(f"n_components must be in [1, N-1] = [1, {len(d) - 1}], got {n_components}")
    # sklearn 1.8 renamed dissimilarity= to metric= and added the classical-MDS init.
    if _SKLEARN_VERSION >= (1, 8):
        model = MDS(n_components, metric="precomputed", init="classical_mds", random_state=seed)
    else:  # pragma: no cover - old sklearn
        model = MDS(n_components, dissimilarity="precomputed", random_state=seed, normalized_stress="auto")
    embedding: np.ndarray = model.fit_transform(d)
    log.debug("MDS of %d points: stress %.4g", len(d), model.stress_)
    return embedding


def nearest_neighbor_scores(distances: Distances, labels: Labels) -> np.ndarray:
    """Per network ``[N]``: the fraction of its nearest other networks (all those at the
    minimum distance, within a relative 1e-12) that share its label: 1 or 0 without ties,
    the expected score of a uniformly random tie-break with them."""
    d = _check_distances(distances)
    codes, _ = _check_labels(labels, len(d))
    if len(d) < 2:
        raise ValueError("1-NN accuracy needs at least 2 networks")
    nearest = nearest_neighbours(d)
    same = codes[:, None] == codes[None, :]
    return (nearest & same).sum(1) / nearest.sum(1)


def nearest_neighbor_accuracy(distances: Distances, labels: Labels) -> float:
    """Leave-one-out 1-NN accuracy, ties scored by expectation: the mean of
    :func:`nearest_neighbor_scores`. Equals the accuracy of a classifier that breaks ties
    uniformly at random, in expectation."""
    return float(np.mean(nearest_neighbor_scores(distances, labels)))


def nearest_neighbours(distances: Distances) -> np.ndarray:
    """``[N, N]`` bool: j is among i's nearest other networks (ties within a relative 1e-12)."""
    d = _check_distances(distances)
    masked = d + np.diag(np.full(len(d), np.inf))
    return masked <= masked.min(1, keepdims=True) * (1 + 1e-12) + 1e-300


def nn_permutation_p(distances: Distances, labels: Labels, n_permutations: int = 1000, seed: int = 0) -> float:
    """One-sided permutation p-value of the 1-NN accuracy (:func:`nearest_neighbor_accuracy`,
    ties by expectation): the chance that randomly relabelled networks reach at least the
    observed accuracy (``scipy.stats.permutation_test``, labels permuted over networks)."""
    d = _check_distances(distances)
    codes, n_groups = _check_labels(labels, len(d))
    _check_pairs(codes, n_groups)
    nearest = nearest_neighbours(d)  # label-free
    weight = nearest / nearest.sum(1, keepdims=True)

    def accuracy(c: np.ndarray, axis: int = -1) -> np.ndarray:  # c [..., N] label codes
        same = c[..., :, None] == c[..., None, :]
        return (same * weight).sum((-1, -2)) / len(d)

    result = stats.permutation_test((codes,), accuracy, permutation_type="pairings", vectorized=True,
                                    n_resamples=n_permutations, alternative="greater", batch=64,
                                    rng=np.random.default_rng(seed))
    return float(result.pvalue)


def chance_level(labels: Labels) -> float:
    """Expected leave-one-out 1-NN accuracy when labels are assigned at random.

    Under a uniform random permutation of the labels the nearest neighbour of network i is a
    uniformly random other network, so the accuracy is the probability that two distinct
    networks share a label: ``sum_c n_c (n_c - 1) / (N (N - 1))``. This is the right null
    for :func:`nearest_neighbor_accuracy` (it is lower than the majority-class rate, which
    1-NN with random labels does not reach).
    """
    codes, _ = _check_labels(labels, None)
    n = len(codes)
    if n < 2:
        raise ValueError("chance level needs at least 2 labels")
    counts = np.bincount(codes).astype(np.float64)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


def silhouette(distances: Distances, labels: Labels) -> float:
    """Mean silhouette coefficient in [-1, 1] (sklearn, ``metric='precomputed'``)."""
    d = _check_distances(distances)
    codes, n_groups = _check_labels(labels, len(d))
    if not 2 <= n_groups <= len(d) - 1:
        raise ValueError(f"silhouette needs 2 <= number of groups <= N-1, got {n_groups} groups for N={len(d)}")
    return float(silhouette_score(d, codes, metric="precomputed"))


def permutation_test(
    distances: Distances,
    labels: Labels,
    n_permutations: int = 1000,
    seed: int = 0,
) -> float:
    """One-sided permutation p-value that within-group distances are smaller than between
    (``scipy.stats.permutation_test``, labels permuted over networks).

    Statistic: the sum of within-group distances over pairs i < j. The group sizes, hence
    the numbers of within and between pairs, are fixed under permutation, so a small sum is
    a large mean between-group minus mean within-group distance. It is computed for a batch
    of labellings at once as ``sum(onehot * (D @ onehot)) / 2``. Returns
    ``(1 + #{perm: sum <= observed}) / (1 + n_permutations)`` (ties count as hits).
    """
    d = _check_distances(distances)
    codes, n_groups = _check_labels(labels, len(d))
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int) or n_permutations < 1:
        raise ValueError(f"n_permutations must be a positive int, got {n_permutations!r}")
    _check_pairs(codes, n_groups)

    def within(c: np.ndarray, axis: int = -1) -> np.ndarray:  # c [..., N] label codes
        return _within_sums(d, c.reshape(-1, len(d)), n_groups).reshape(c.shape[:-1])

    result = stats.permutation_test((codes,), within, permutation_type="pairings", vectorized=True,
                                    n_resamples=n_permutations, alternative="less",
                                    batch=max(1, 2**24 // (len(d) * n_groups)),  # bound the [batch, N, G] one-hot
                                    rng=np.random.default_rng(seed))
    return float(result.pvalue)


def separability(
    distances: Distances,
    labels: Labels,
    n_permutations: int = 1000,
    seed: int = 0,
) -> Separability:
    """All separability statistics of ``labels`` in ``distances [N, N]``."""
    d = _check_distances(distances)
    codes, n_groups = _check_labels(labels, len(d))
    _check_pairs(codes, n_groups)
    same = codes[:, None] == codes[None, :]
    upper = np.triu(np.ones_like(same), 1)
    return Separability(
        nn_accuracy=nearest_neighbor_accuracy(d, codes),
        chance=chance_level(codes),
        silhouette=silhouette(d, codes),
        p_value=permutation_test(d, codes, n_permutations, seed),
        mean_within=float(d[same & upper].mean()),
        mean_between=float(d[~same & upper].mean()),
        n_permutations=n_permutations,
    )


# ---------------------------------------------------------------- helpers


def _within_sums(d: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of within-group distances over pairs i < j for each labelling ``codes [P, N]``: ``[P]``."""
    onehot = np.eye(n_groups)[codes]  # [P, N, G]
    return np.einsum("png,png->p", onehot, d @ onehot) / 2


def _check_pairs(codes: np.ndarray, n_groups: int) -> None:
    counts = np.bincount(codes)
    if n_groups < 2 or (counts * (counts - 1)).sum() == 0:
        raise ValueError(
            f"need at least 2 groups and one group with 2 or more members, got group sizes {counts.tolist()}"
        )


def _check_distances(distances: Distances) -> np.ndarray:
    """Validate a distance matrix and return it as float64 ``[N, N]`` with an exact zero diagonal."""
    if isinstance(distances, torch.Tensor):
        distances = distances.detach().cpu().numpy()
    d = np.array(distances, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"distances must be a square [N, N] matrix, got shape {d.shape}")
    if len(d) == 0:
        raise ValueError("distances is empty")
    if not np.isfinite(d).all():
        raise ValueError("distances contains NaN or inf")
    tol = 1e-8 * max(1.0, float(np.abs(d).max()))
    if not np.allclose(d, d.T, rtol=0, atol=tol):
        raise ValueError(f"distances is not symmetric (max |D - D^T| = {np.abs(d - d.T).max():.3g})")
    if (d < -tol).any() or (np.abs(np.diag(d)) > tol).any():
        raise ValueError("distances must be non-negative with a zero diagonal")
    np.fill_diagonal(d, 0)
    return (d + d.T) / 2


def _check_labels(labels: Labels, n: int | None) -> tuple[np.ndarray, int]:
    """Labels (any hashable values) as integer codes ``[N]`` and the number of groups."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {values.shape}")
    if n is not None and len(values) != n:
        raise ValueError(f"got {len(values)} labels for {n} networks")
    _, codes = np.unique(values, return_inverse=True)
    return codes.reshape(-1), int(codes.max()) + 1 if len(codes) else 0
