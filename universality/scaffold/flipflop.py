"""K-bit flip-flop scaffold: memories, saddles and the labelled transition graph.

At zero input (the task's condition) each member's unique certified fixed points (slow
points, if the :class:`~universality.dynamics.FixedPoints` hold any, are ignored) are
counted per stability index. Stable points (memories) are labelled by the sign pattern of their
readout, ``label = sum_k [y_k > 0] 2^k``, which needs no state-space coordinates. Each
index-1 saddle's two unstable branches ``h* +- eps v`` (v its unstable right eigenvector)
are simulated at zero input, batched over members x saddles x branches, until every
trajectory is within ``tol_arrival`` of a stable point (or ``max_steps`` pass: "none").
A saddle is then an edge between the labels of the memories its branches reach.

The scaffold is ``canonical`` (docs/methods.md, "Flip-flop scaffold") when its memory graph is the
K-cube: 2^K memories with all 2^K patterns, and index-1 saddles covering each of the
K 2^(K - 1) cube edges (joining memories that differ in one bit) and no other edges.
``full_cube`` additionally reports the complete cube (docs/methods.md): C(K, k) 2^(K - k)
points of index k (27 for K = 3); higher-index saddles are the hardest points to find, so
it depends more on the search budget than the memory graph does.

A continuum of fixed points (a neutral direction, e.g. saturated gates far from the
visited states) arrives as one representative point (see
:class:`~universality.dynamics.FixedPoints`). It is no isolated memory or saddle: the
counts, labels and the memory graph are over isolated points, and ``n_continua`` counts
the continua (on the reference networks, saturated UGRNN continua with up to 9 neutral
directions and no unstable mode would otherwise count as extra memories).

The signature ``vector`` is ``[counts per index 0..K and > K (K + 2), upper triangle with
diagonal of the 2^K x 2^K memory-graph adjacency counts, saddles with a "none" end (1),
pattern presence (2^K)]``; the distance is L1 (edit counts), so members with the full
cube are at distance 0 from each other.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.distance import cdist
from torch import Tensor

from ..dynamics import FixedPoints
from ..dynamics.linearise import float64_params
from ..population import Population
from .base import Scaffold, ScaffoldSpec

log = logging.getLogger(__name__)

NONE = -1  # label of a branch that reaches no memory


@dataclass(frozen=True)
class FlipFlopConfig:
    """Settings of the saddle-branch simulation (state units, Euclidean norm).

    * ``eps = 1e-3``: kick along the unit unstable eigenvector (small enough to start on
      the unstable manifold, large enough to leave the saddle in a few dozen steps).
    * Trajectories run in chunks of ``chunk_steps`` until all are within ``tol_arrival``
      of a stable point, for at most ``max_steps`` (slow escapes with |lambda| ~ 1.01
      need ~1000 steps).
    """

    eps: float = 1e-3
    tol_arrival: float = 1e-2
    chunk_steps: int = 200
    max_steps: int = 4000


def compute(
    population: Population, fixed_points: FixedPoints, config: FlipFlopConfig | None = None
) -> list[Scaffold]:
    """One flip-flop :class:`Scaffold` per member from ``fixed_points`` found at zero input."""
    cfg = config or FlipFlopConfig()
    k = population.task.output_size
    c = _zero_condition(fixed_points)
    points, index = fixed_points.points[:, c], fixed_points.index[:, c]  # [P, N, ...]
    certified = fixed_points.mask[:, c] & fixed_points.fixed[:, c]  # certified points only, never slow points
    continuum = certified & (fixed_points.neutral_dim[:, c] > 0)  # counted, but no memory or saddle
    mask = certified & ~continuum
    p, n, _ = points.shape
    stable, saddle = mask & (index == 0), mask & (index == 1)

    readout_params = {name: v.detach().to(torch.float64) for name, v in population.params.items()}
    with torch.no_grad():
        out = population.readout(points.to(population.device), readout_params).cpu()  # [P, N, K]
    weights = 2 ** torch.arange(k)
    labels = torch.where(stable, ((out > 0).long() * weights).sum(-1), NONE)  # [P, N]

    reached = _branch_targets(population, fixed_points.conditions[c], points, fixed_points.right[:, c, :, :, 0],
                              stable, saddle, cfg)  # [P, N, 2] slot of the memory reached, or NONE
    ends = torch.where(reached >= 0, labels.gather(1, reached.clamp_min(0).view(p, -1)).view(p, n, 2), NONE)

    n_nodes = 2**k
    counts = torch.nn.functional.one_hot(index.clamp(max=k + 1), k + 2).mul(mask.unsqueeze(-1)).sum(1)  # [P, K+2]
    slot = torch.where(stable, labels, n_nodes)  # the extra column collects non-memories
    presence = torch.zeros(p, n_nodes + 1, dtype=torch.long).scatter_add_(1, slot, stable.long())[:, :n_nodes]
    lo, hi = ends.min(-1).values, ends.max(-1).values  # [P, N]
    joined = saddle & (lo >= 0)
    flat = torch.where(joined, lo * n_nodes + hi, n_nodes * n_nodes)
    adjacency = torch.zeros(p, n_nodes * n_nodes + 1, dtype=torch.long).scatter_add_(1, flat, joined.long())
    adjacency = adjacency[:, :-1].view(p, n_nodes, n_nodes)  # upper triangle (lo <= hi)
    n_none = (saddle & (lo < 0)).sum(1)

    a, b = torch.triu_indices(n_nodes, n_nodes)
    cube = _popcount(a ^ b) == 1
    on_cube = adjacency[:, a[cube], b[cube]]  # [P, K 2^(K-1)]
    vector = torch.cat([counts, adjacency[:, a, b], n_none[:, None], (presence > 0).long()], 1).double().numpy()

    expected = torch.tensor([math.comb(k, i) * 2 ** (k - i) for i in range(k + 1)] + [0])
    n_edges = k * 2 ** (k - 1)
    scaffolds = []
    for m in range(p):
        numbers: dict[str, object] = {"n_points": int(mask[m].sum()), "n_stable": int(counts[m, 0])}
        numbers |= {f"n_index{i}": int(counts[m, i]) for i in range(1, k + 1)}
        numbers["n_index_above"] = int(counts[m, k + 1])
        numbers["n_patterns"] = int((presence[m] > 0).sum())
        numbers["n_hypercube_edges"] = int((on_cube[m] > 0).sum())
        numbers["n_other_edges"] = int(counts[m, 1] - on_cube[m].sum())
        numbers["n_none_edges"] = int(n_none[m])
        numbers["n_continua"] = int(continuum[m].sum())
        hypercube = (
            numbers["n_stable"] == numbers["n_patterns"] == n_nodes
            and numbers["n_hypercube_edges"] == n_edges
            and numbers["n_other_edges"] == 0
        )
        numbers["hypercube"] = bool(hypercube)
        numbers["full_cube"] = bool(torch.equal(counts[m], expected))
        scaffolds.append(Scaffold("flipflop", bool(hypercube), numbers, vector[m]))
    log.info("flip-flop scaffold: %d of %d members canonical", sum(s.canonical for s in scaffolds), p)
    return scaffolds


def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L1 distance (graph edits plus count differences): ``u [N, D], v [M, D] -> [N, M]``."""
    u, v = np.atleast_2d(np.asarray(u, dtype=np.float64)), np.atleast_2d(np.asarray(v, dtype=np.float64))
    return cdist(u, v, "cityblock")


SPEC = ScaffoldSpec("flipflop", compute, distance)


# ---------------------------------------------------------------------- helpers
def _branch_targets(
    population: Population,
    condition: Tensor,
    points: Tensor,
    unstable: Tensor,
    stable: Tensor,
    saddle: Tensor,
    cfg: FlipFlopConfig,
) -> Tensor:
    """Slot of the stable point each unstable branch of each saddle reaches, ``[P, N, 2]``
    (NONE where none is reached, and for non-saddle slots).

    ``points [P, N, S]``, ``unstable [P, N, S]`` (complex; the top right eigenvector),
    ``stable``/``saddle [P, N]`` masks.
    """
    p, n, s = points.shape
    if n == 0 or not saddle.any():
        return torch.full((p, n, 2), NONE, dtype=torch.long)
    dev = population.device
    params = float64_params(population)
    v = unstable.real / unstable.real.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    h = (points.unsqueeze(2) + cfg.eps * torch.stack([v, -v], dim=2)).reshape(p, 2 * n, s).to(dev)
    x = condition.to(dev, torch.float64).expand(p, 2 * n, -1)
    pts, targets = points.to(dev), stable.to(dev)[:, None, :]
    active = saddle.to(dev).repeat_interleave(2, dim=1)  # [P, 2N]
    steps = 0
    with torch.no_grad():
        while True:
            for _ in range(cfg.chunk_steps):
                h = population.step(x, h, params)
            steps += cfg.chunk_steps
            dist = torch.cdist(h, pts).nan_to_num(math.inf).masked_fill(~targets, math.inf)  # [P, 2N, N]
            nearest, slot = dist.min(-1)
            arrived = nearest < cfg.tol_arrival
            if bool(arrived[active].all()) or steps >= cfg.max_steps:
                break
    if not bool(arrived[active].all()):
        log.info("flip-flop: %d of %d saddle branches reached no memory in %d steps",
                 int((active & ~arrived).sum()), int(active.sum()), steps)
    return torch.where(arrived & active, slot, NONE).view(p, n, 2).cpu()


def _zero_condition(fixed_points: FixedPoints) -> int:
    """Row of ``fixed_points.conditions`` holding the zero input."""
    zero = (fixed_points.conditions == 0).all(-1).nonzero().flatten()
    if len(zero) == 0:
        raise ValueError(
            "the flip-flop scaffold needs fixed points at zero input; call find_fixed_points with the "
            "task's conditions (population.task.conditions())"
        )
    return int(zero[0])


def _popcount(x: Tensor) -> Tensor:
    """Number of set bits of non-negative ints ``x [...]``."""
    count = torch.zeros_like(x)
    while bool((x > 0).any()):
        count += x & 1
        x = x >> 1
    return count
