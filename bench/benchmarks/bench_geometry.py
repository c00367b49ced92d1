"""asv benchmarks: all-pairs representational distances, batched vs a per-pair Python loop.

M = 2000 samples x U = 32 units per network, float64 compute. Every benchmark runs with one
torch thread (the ``threads`` parameter; docs/performance.md, "Threads").
"""

from __future__ import annotations

import torch
from torch import Tensor

from universality.geometry import DEFAULT_K, pairwise_distances

from .common import grid

SAMPLES, UNITS, LATENT = 2000, 32, 6


def make_states(n: int, device: str = "cpu", seed: int = 0) -> Tensor:
    """Synthetic states ``[n, SAMPLES, UNITS]`` (float32): a shared latent signal plus noise."""
    gen = torch.Generator().manual_seed(seed)
    latent = torch.randn(SAMPLES, LATENT, generator=gen)
    mixing = torch.randn(n, LATENT, UNITS, generator=gen)
    states = torch.tanh(latent @ mixing) + 0.1 * torch.randn(n, SAMPLES, UNITS, generator=gen)
    return states.to(device)


def naive_svcca(x: Tensor, y: Tensor, k: int = DEFAULT_K) -> float:
    """One pair at a time, as with Google's ``cca_core``: PCA both, then CCA via QR."""

    def reduce(a: Tensor) -> Tensor:
        a = a - a.mean(0)
        return a @ torch.linalg.svd(a, full_matrices=False).Vh[:k].T

    qx, qy = torch.linalg.qr(reduce(x)).Q, torch.linalg.qr(reduce(y)).Q
    return float(1 - torch.linalg.svdvals(qx.T @ qy).mean())


def naive_cka(x: Tensor, y: Tensor) -> float:
    """One pair at a time: 1 - linear CKA from centred feature cross products."""
    x, y = x - x.mean(0), y - y.mean(0)
    similarity = (x.T @ y).square().sum() / (torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y))
    return float(1 - similarity)


NAIVE = {"svcca": naive_svcca, "cka": naive_cka}


def naive_pairwise(states: Tensor, metric: str) -> Tensor:
    """Per-pair Python loop over i < j, recomputing each network's preprocessing per pair."""
    n = len(states)
    out = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = NAIVE[metric](states[i], states[j])
    return out


class AllPairs:
    """Batched all-pairs distances (:func:`pairwise_distances`)."""

    params = (grid([64, 256, 1024], [64]), ["cpu", "cuda"], ["svcca", "cka"], [1])
    param_names = ["n_networks", "device", "metric", "threads"]
    timeout = 900.0
    number = 1
    repeat = (1, 3, 120.0)
    rounds = 1

    def setup(self, n_networks: int, device: str, metric: str, threads: int) -> None:
        if device == "cuda" and not torch.cuda.is_available():
            raise NotImplementedError("CUDA unavailable")
        torch.set_num_threads(threads)
        self.states = make_states(n_networks, device)

    def time_pairwise(self, n_networks: int, device: str, metric: str, threads: int) -> None:
        pairwise_distances(self.states, metric)
        if device == "cuda":
            torch.cuda.synchronize()


class LoopBaseline:
    """Per-pair Python loop (64 and 256 networks only: the loop is quadratic and slow)."""

    params = (grid([64, 256], [16]), ["svcca", "cka"], [1])
    param_names = ["n_networks", "metric", "threads"]
    timeout = 900.0
    number = 1
    repeat = (1, 3, 120.0)
    rounds = 1

    def setup(self, n_networks: int, metric: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.states = make_states(n_networks).double()

    def time_loop(self, n_networks: int, metric: str, threads: int) -> None:
        naive_pairwise(self.states, metric)
