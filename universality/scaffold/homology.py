"""Persistent-homology fingerprints of state clouds (ripser, Vietoris-Rips).

A cloud of states (one member's trajectories) is subsampled (seeded, uniform, optionally
keeping only its densest part), centred and divided by its RMS radius (so every number here is invariant to
the scale of the state space), and its H0 / H1 persistence diagrams are computed. The
*fingerprint* is the top ``n_top`` lifetimes (death - birth) per dimension, sorted
descending and zero-padded: ``[(maxdim + 1) * n_top]``.

What to expect: a flip-flop's state cloud (memories plus the short transitions between
them) has 2^K long-lived H0 components; a sine network's trajectory at one frequency
(a limit cycle) has one dominant H1 loop.

Distance. :func:`diagram_distance` is the L-infinity distance between fingerprints, a
cheap proxy of the bottleneck distance d_B computed per dimension: any bottleneck
matching pairs lifetimes l, l' with ``|l - l'| <= 2 * cost`` (and a point matched to the
diagonal has ``l = 2 * cost``), and the best L-infinity matching of two multisets of
numbers is the sorted one, so ``L_inf / 2 <= d_B``. For H0 (every birth is 0) the
sorted matching is itself a bottleneck matching, so also ``d_B <= L_inf``. Truncation
to the top ``n_top`` lifetimes only drops the shortest, noise-level bars.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from ripser import ripser
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist, pdist
from torch import Tensor

log = logging.getLogger(__name__)

#: Pool drawn (seeded, uniform) per sampled point, for the density estimate.
POOL_FACTOR = 10
#: Neighbours used for the density estimate (distance to the k-th nearest neighbour).
DENSITY_NEIGHBOURS = 10


def subsample(points: np.ndarray, n_points: int, seed: int = 0, keep: float = 1.0) -> np.ndarray:
    """Seeded uniform subsample ``[min(n_points, M'), S]`` of ``points [M, S]``.

    Uniform sampling follows the density of the cloud, so the places a network dwells
    (memories, cycles) dominate. With ``keep < 1`` only the densest ``keep`` fraction of
    a pool of ``POOL_FACTOR * n_points`` points (by distance to the
    ``DENSITY_NEIGHBOURS``-th nearest neighbour) is sampled: the standard de-noising step
    that drops isolated transient states (e.g. the flip-flop's jumps between memories).
    """
    if not 0 < keep <= 1:
        raise ValueError(f"keep (the fraction of densest points sampled) must lie in (0, 1], got {keep!r}")
    rng = np.random.default_rng(seed)
    pool = points[rng.permutation(len(points))[: POOL_FACTOR * n_points]]
    if keep < 1 and len(pool) > DENSITY_NEIGHBOURS:
        spread = cKDTree(pool).query(pool, k=DENSITY_NEIGHBOURS + 1)[0][:, -1]
        pool = pool[spread <= np.quantile(spread, keep)]
    return pool[rng.permutation(len(pool))[:n_points]]


def persistence(
    states: Tensor | np.ndarray, n_points: int = 300, seed: int = 0, maxdim: int = 1, keep: float = 1.0
) -> list[np.ndarray]:
    """Scale-normalised persistence diagrams ``[H0 [n0, 2], ..., H_maxdim]`` of one cloud.

    ``states`` is ``[B, T, S]`` or ``[M, S]`` (one member), subsampled by
    :func:`subsample` (``keep``: densest fraction). The subsample is centred and divided
    by its RMS radius; the infinite H0 bar dies at the subsample's (normalised)
    diameter, where the Rips filtration is complete.
    """
    cloud = _as_cloud(states)
    pts = subsample(cloud, n_points, seed, keep)
    pts = pts - pts.mean(0)
    radius = float(np.sqrt((pts**2).sum(1).mean()))
    if not np.isfinite(radius):
        raise ValueError("states must be finite to compute persistent homology")
    if radius == 0 or len(pts) < 2:
        return [np.zeros((1 if d == 0 else 0, 2)) for d in range(maxdim + 1)]
    pts = pts / radius
    dgms = ripser(pts, maxdim=maxdim)["dgms"]
    diameter = float(pdist(pts).max())
    return [np.where(np.isinf(d), diameter, d) for d in dgms]


def lifetimes(diagram: np.ndarray) -> np.ndarray:
    """Bar lengths ``death - birth`` of ``diagram [n, 2]``, sorted descending: ``[n]``."""
    return np.sort(diagram[:, 1] - diagram[:, 0])[::-1] if len(diagram) else np.zeros(0)


def n_long_lived(diagram: np.ndarray, threshold: float) -> int:
    """Number of bars of ``diagram [n, 2]`` that live longer than ``threshold``."""
    return int((lifetimes(diagram) > threshold).sum())


def fingerprint(
    states: Tensor | np.ndarray,
    n_points: int = 300,
    seed: int = 0,
    maxdim: int = 1,
    n_top: int = 16,
    keep: float = 1.0,
) -> np.ndarray:
    """Top ``n_top`` lifetimes per homology dimension, descending, zero-padded:
    ``[(maxdim + 1) * n_top]`` (dimension-major) for ``states [B, T, S]`` or ``[M, S]``
    (see :func:`persistence` for the other arguments)."""
    out = np.zeros((maxdim + 1, n_top))
    for d, dgm in enumerate(persistence(states, n_points, seed, maxdim, keep)):
        life = lifetimes(dgm)[:n_top]
        out[d, : len(life)] = life
    return out.reshape(-1)


def diagram_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[N, M]`` L-infinity distances between fingerprints ``u [N, D]`` and ``v [M, D]``
    (a proxy of the bottleneck distance; see the module docstring)."""
    u, v = np.atleast_2d(np.asarray(u, dtype=np.float64)), np.atleast_2d(np.asarray(v, dtype=np.float64))
    if u.shape[1] != v.shape[1]:
        raise ValueError(f"fingerprints differ in length ({u.shape[1]} vs {v.shape[1]}); use the same n_top/maxdim")
    return cdist(u, v, "chebyshev")


def _as_cloud(states: Tensor | np.ndarray) -> np.ndarray:
    arr = states.detach().cpu().numpy() if isinstance(states, torch.Tensor) else np.asarray(states)
    if arr.ndim not in (2, 3):
        raise ValueError(f"states must be [B, T, S] or [M, S] (one member), got shape {arr.shape}")
    return arr.reshape(-1, arr.shape[-1]).astype(np.float64)
