"""K-bit flip-flop scaffold: memories, saddles, the labelled transition graph, and memory as it functions.

**Topology.** At zero input (the task's condition) each member's unique certified fixed
points are counted per stability index. Stable points (memories) are labelled by the sign
pattern of their readout, ``label = sum_k [y_k > 0] 2^k``, which needs no state-space
coordinates. Each index-1 saddle's two unstable branches ``h* +- eps v`` (v its unstable
right eigenvector) are simulated at zero input, batched over members x saddles x branches,
until every trajectory is within ``tol_arrival`` of a stable point (or ``max_steps`` pass:
"none"). A saddle is then an edge between the labels of the memories its branches reach.
``full_cube`` additionally reports the complete cube (docs/methods.md): C(K, k) 2^(K - k)
points of index k (27 for K = 3); higher-index saddles are the hardest points to find, so
it depends more on the search budget than the memory graph does.

A continuum of fixed points (a neutral direction, e.g. saturated gates far from the
visited states) arrives as one representative point (see
:class:`~universality.dynamics.FixedPoints`). It is no isolated memory or saddle: the
counts, labels and the memory graph are over isolated points, ``n_continua`` counts the
continua, ``continuum_dims`` lists their neutral dimensions and ``continuum_index`` their
stability indices (the neutral modes left out; 0: marginally stable). Slow points (not
certified fixed) never enter the graph; they are reported as ``slow_point_memories``
(below).

``topology [(K + 2) + 2^K (2^K + 1) / 2 + 1 + 2^K]`` is ``[counts per index 0..K and > K,
upper triangle with diagonal of the 2^K x 2^K memory-graph adjacency counts, saddles with
a "none" end, pattern presence]``; :func:`distance` is L1 (edit counts), so members with
the cube are at distance 0 from each other.

**Functional memory** (:func:`functional_memory`). Each of the 2^K patterns is written
from the zero state by the task's own pulses (every channel pulsed with the pattern's sign
for one step, as at the start of every trial) and then held at zero input for
``HOLD_TRIALS`` trial lengths (``task.n_time`` steps each), in float64. A pattern is held
when the sign of every readout channel equals the pattern at every step of the hold; its
escape time is the number of hold steps before the first step at which it is lost (the
hold length if never).

**Slow-point memories.** The number of sign patterns read out at some slow point (a local
minimum of the speed that is not certified fixed, any stability index) that no memory
carries: patterns the search saw only as a slow region (e.g. the ghost of a memory).
``None`` where the search kept no slow points (``FixedPointConfig.include_slow`` off).

**Dynamics.** ``dynamics [4]`` is ``[median |lambda_1| and median |lambda_2| over the
memories, median unstable |lambda| over the index-1 saddles, median escape time / hold
length]``: eigenvalue moduli (invariant to any change of coordinates) and a readout
timescale. Fills (no such point): ``1.0`` (marginal: no contraction, no escape measured)
for the memories' and saddles' moduli, ``0.0`` for ``|lambda_2|`` of a one-dimensional
state. :func:`dynamics_distance` is L1.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..dynamics import FixedPoints
from ..dynamics.linearise import float64_params
from ..population import Population
from .base import Criterion, Scaffold, ScaffoldSpec, StoredScaffold, l1_distance

log = logging.getLogger(__name__)

NONE = -1  # label of a branch that reaches no memory
#: Trial lengths (``task.n_time``) a written pattern must be held at zero input.
HOLD_TRIALS = 10
#: Fill of a modulus in ``dynamics`` where its points do not exist (marginal: |lambda| = 1).
MARGINAL = 1.0
#: Fill of ``|lambda_2|`` where the state has one dimension (no second mode).
NO_SECOND_MODE = 0.0

CRITERIA = (
    Criterion(
        "hypercube",
        "The memory graph at zero input is the K-cube: exactly 2^K isolated, certified stable fixed points "
        "(memories) whose readout sign patterns are all 2^K patterns; index-1 saddles whose two unstable "
        "branches reach memories covering every one of the K 2^(K-1) cube edges (memories differing in one "
        "bit); and no other index-1 saddle (none joining memories two or more bits apart, none returning to "
        "one memory, none with a branch that reaches no memory within max_steps = 4000 steps).",
        "The paper's Fig. 1e-f (3-bit discrete memory): every trained network, whatever its architecture, "
        "stores the 8 patterns as 8 stable fixed points at the corners of a cube, with index-1 saddles "
        "between memories that differ in one bit, and networks are compared by this graph of fixed points "
        "and the transitions between them. The graph is measured without coordinates: memories are "
        "labelled by what the readout says, and an edge is where the saddle's unstable manifold actually "
        "flows. No threshold is tuned: the cube is the paper's exact structure; extra index-1 saddles "
        "(other edges) are excluded because they are transitions the cube does not have. The complete "
        "cube (higher-index saddles, `full_cube`) is reported, not required: those points are the "
        "hardest to find and depend on the search budget more than on the network.",
    ),
    Criterion(
        "functional_memory",
        f"Each of the 2^K patterns, written from the zero state by one step of the task's pulses (every "
        f"channel pulsed with the pattern's sign, as at the start of every trial), is held at zero input for "
        f"{HOLD_TRIALS} trial lengths ({HOLD_TRIALS} x task.n_time steps): every readout channel's sign "
        f"equals the pattern at every step of the hold (float64).",
        "The paper's claim is that the memories are stored as attractors. A pattern held at zero input for "
        f"{HOLD_TRIALS} trial lengths is a memory on the task's timescale whatever the fixed-point search "
        "finds (a slow point or a continuum holds it as well over that time), so this criterion tells "
        "networks that lack memories apart from networks whose memories the search missed. Ten trial "
        "lengths: a network that passes the task holds a bit for up to one trial length (a channel may get "
        "no pulse after its first); ten times that is a margin that a transient, decaying "
        "memory (a slow drift towards a wrong sign) does not survive unless its timescale is an order of "
        "magnitude beyond the task's, at which point it serves as a memory. Writing from the zero state "
        "is the situation the task trains (every trial starts there with every channel pulsed).",
        headline=False,
    ),
)


@dataclass(frozen=True)
class FlipFlopConfig:
    """Settings of the saddle-branch simulation (state units, Euclidean norm) and the hold.

    * ``eps = 1e-3``: kick along the unit unstable eigenvector (small enough to start on
      the unstable manifold, large enough to leave the saddle in a few dozen steps).
    * Trajectories run in chunks of ``chunk_steps`` until all are within ``tol_arrival``
      of a stable point, for at most ``max_steps`` (slow escapes with |lambda| ~ 1.01
      need ~1000 steps).
    * ``hold_trials``: trial lengths of the functional-memory hold (``HOLD_TRIALS``).
    """

    eps: float = 1e-3
    tol_arrival: float = 1e-2
    chunk_steps: int = 200
    max_steps: int = 4000
    hold_trials: int = HOLD_TRIALS


def compute(
    population: Population, fixed_points: FixedPoints, config: FlipFlopConfig | None = None
) -> list[Scaffold]:
    """One flip-flop :class:`Scaffold` per member from ``fixed_points`` found at zero input."""
    cfg = config or FlipFlopConfig()
    k = population.task.output_size
    c = _zero_condition(fixed_points)
    points, index = fixed_points.points[:, c], fixed_points.index[:, c]  # [P, N, ...]
    certified = fixed_points.mask[:, c] & fixed_points.fixed[:, c]  # certified points only, never slow points
    slow = fixed_points.mask[:, c] & ~fixed_points.fixed[:, c]
    slow_searched = bool(fixed_points.config.get("include_slow", False))
    continuum = certified & (fixed_points.neutral_dim[:, c] > 0)  # counted, but no memory or saddle
    mask = certified & ~continuum
    p, n, _ = points.shape
    stable, saddle = mask & (index == 0), mask & (index == 1)

    readout_params = {name: v.detach().to(torch.float64) for name, v in population.params.items()}
    with torch.no_grad():
        out = population.readout(points.to(population.device), readout_params).cpu()  # [P, N, K]
    n_nodes = 2**k
    pattern = ((out > 0).long() * 2 ** torch.arange(k)).sum(-1)  # [P, N]
    labels = torch.where(stable, pattern, NONE)

    reached = _branch_targets(population, fixed_points.conditions[c], points, fixed_points.right[:, c, :, :, 0],
                              stable, saddle, cfg)  # [P, N, 2] slot of the memory reached, or NONE
    ends = torch.where(reached >= 0, labels.gather(1, reached.clamp_min(0).view(p, -1)).view(p, n, 2), NONE)

    counts = torch.nn.functional.one_hot(index.clamp(max=k + 1), k + 2).mul(mask.unsqueeze(-1)).sum(1)  # [P, K+2]
    presence = _pattern_counts(pattern, stable, n_nodes) > 0  # [P, 2^K]
    slow_patterns = _pattern_counts(pattern, slow, n_nodes) > 0
    lo, hi = ends.min(-1).values, ends.max(-1).values  # [P, N]
    joined = saddle & (lo >= 0)
    flat = torch.where(joined, lo * n_nodes + hi, n_nodes * n_nodes)
    adjacency = torch.zeros(p, n_nodes * n_nodes + 1, dtype=torch.long).scatter_add_(1, flat, joined.long())
    adjacency = adjacency[:, :-1].view(p, n_nodes, n_nodes)  # upper triangle (lo <= hi)
    n_none = (saddle & (lo < 0)).sum(1)

    a, b = torch.triu_indices(n_nodes, n_nodes)
    cube = _popcount(a ^ b) == 1
    on_cube = adjacency[:, a[cube], b[cube]]  # [P, K 2^(K-1)]
    topology = torch.cat([counts, adjacency[:, a, b], n_none[:, None], presence.long()], 1).double().numpy()

    held, escape = functional_memory(population, cfg.hold_trials)  # [P, 2^K]
    hold = cfg.hold_trials * population.task.n_time
    moduli = fixed_points.eigenvalues[:, c].abs()  # [P, N, S], descending
    lambda1 = _masked_median(moduli[..., 0], stable)
    lambda2 = _masked_median(moduli[..., 1], stable) if moduli.shape[-1] > 1 else torch.full((p,), math.nan)
    saddle_lambda = _masked_median(moduli[..., 0], saddle)
    escape_time = escape.double().quantile(0.5, -1)  # the mean of the middle two of 2^K
    dynamics = torch.stack([
        lambda1.nan_to_num(MARGINAL),
        lambda2.nan_to_num(MARGINAL if moduli.shape[-1] > 1 else NO_SECOND_MODE),
        saddle_lambda.nan_to_num(MARGINAL),
        escape_time / hold,
    ], 1).numpy()

    expected = torch.tensor([math.comb(k, i) * 2 ** (k - i) for i in range(k + 1)] + [0])
    n_edges = k * 2 ** (k - 1)
    scaffolds = []
    for m in range(p):
        numbers: dict[str, object] = {"n_points": int(mask[m].sum()), "n_stable": int(counts[m, 0])}
        numbers |= {f"n_index{i}": int(counts[m, i]) for i in range(1, k + 1)}
        numbers["n_index_above"] = int(counts[m, k + 1])
        numbers["n_patterns"] = int(presence[m].sum())
        numbers["n_hypercube_edges"] = int((on_cube[m] > 0).sum())
        numbers["n_other_edges"] = int(counts[m, 1] - on_cube[m].sum())
        numbers["n_none_edges"] = int(n_none[m])
        numbers["n_continua"] = int(continuum[m].sum())
        numbers["continuum_dims"] = fixed_points.neutral_dim[m, c][continuum[m]].tolist()
        numbers["continuum_index"] = index[m][continuum[m]].tolist()
        numbers["n_slow_points"] = int(slow[m].sum())
        numbers["slow_point_memories"] = int((slow_patterns[m] & ~presence[m]).sum()) if slow_searched else None
        numbers["patterns_held"] = int(held[m].sum())
        numbers["escape_time"] = float(escape_time[m])
        numbers["escape_times"] = escape[m].tolist()
        numbers["hold_steps"] = hold
        numbers["memory_lambda1"] = float(lambda1[m])
        numbers["memory_lambda2"] = float(lambda2[m])
        numbers["saddle_lambda"] = float(saddle_lambda[m])
        hypercube = (
            numbers["n_stable"] == numbers["n_patterns"] == n_nodes
            and numbers["n_hypercube_edges"] == n_edges
            and numbers["n_other_edges"] == 0
        )
        numbers["hypercube"] = bool(hypercube)
        numbers["full_cube"] = bool(torch.equal(counts[m], expected))
        canonical, criteria = SPEC.judge({"hypercube": hypercube, "functional_memory": bool(held[m].all())})
        scaffolds.append(Scaffold("flipflop", canonical, criteria, numbers, topology[m], dynamics[m]))
    log.info("flip-flop scaffold: %d of %d members canonical, %d hold every pattern",
             sum(s.canonical for s in scaffolds), p, int(held.all(-1).sum()))
    return scaffolds


def functional_memory(population: Population, hold_trials: int = HOLD_TRIALS) -> tuple[Tensor, Tensor]:
    """Which patterns each member holds, and for how long (module docstring).

    Pattern ``j`` (bit k = ``(j >> k) & 1``) is written from the zero state by one step of
    input ``2 bit - 1`` on every channel, then run at zero input for ``hold_trials *
    task.n_time`` steps in float64. Returns ``held [P, 2^K]`` (bool: the readout's sign
    equals the pattern on every channel at every hold step) and ``escape [P, 2^K]`` (int64:
    hold steps before the first step where it does not; the hold length if never).
    """
    task = population.task
    k, hold = task.output_size, hold_trials * task.n_time
    bits = (torch.arange(2**k)[:, None] >> torch.arange(k)) & 1
    signs = (2 * bits - 1).to(population.device, torch.float64).expand(len(population), -1, -1)  # [P, 2^K, K]
    params = {name: v.detach().to(torch.float64) for name, v in population.params.items()}
    cell_params = float64_params(population)
    h = population.initial_state(2**k, torch.float64)
    escape = torch.full(signs.shape[:2], hold, dtype=torch.long, device=population.device)
    lost = torch.zeros(signs.shape[:2], dtype=torch.bool, device=population.device)
    zero = torch.zeros_like(signs)
    with torch.no_grad():
        h = population.step(signs, h, cell_params)  # the write: the task's pulses, one step
        for t in range(hold):
            h = population.step(zero, h, cell_params)
            wrong = (torch.sign(population.readout(h, params)) != signs).any(-1)
            escape = torch.where(wrong & ~lost, t, escape)
            lost |= wrong
    return ~lost.cpu(), escape.cpu()


def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L1 distance (graph edits plus count differences): ``u [N, D], v [M, D] -> [N, M]``."""
    return l1_distance(u, v)


def dynamics_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L1 distance between dynamics signatures: ``u [N, 4], v [M, 4] -> [N, M]``."""
    return l1_distance(u, v)


@dataclass(frozen=True)
class FlipFlopNumbers:
    """The flip-flop numbers that claims, figures and :meth:`FlipFlopScaffold.classify`
    read: ``patterns_held`` (of 2^K), ``escape_times [2^K]`` (hold steps per pattern),
    ``hold_steps``; the isolated memories ``n_stable`` and the patterns they carry
    ``n_patterns``; the memory graph's ``n_hypercube_edges`` (of K 2^(K-1)) and
    ``n_other_edges`` (index-1 saddles that are no cube edge); the continua
    ``n_continua``, ``continuum_dims [n_continua]`` (neutral dimensions) and
    ``continuum_index [n_continua]``; ``slow_point_memories`` (None when no slow points
    were searched)."""

    patterns_held: int
    escape_times: list[int]
    hold_steps: int
    n_stable: int
    n_patterns: int
    n_hypercube_edges: int
    n_other_edges: int
    n_continua: int
    continuum_dims: list[int]
    continuum_index: list[int]
    slow_point_memories: int | None


#: Kinds of flip-flop scaffold (:meth:`FlipFlopScaffold.classify`), the first that applies.
KINDS = (
    ("hypercube", "canonical: the hypercube criterion"),
    ("continuum", "a continuum of fixed points (n_continua > 0) and fewer than 2^K patterns on isolated memories"),
    ("slow_points", "patterns read out only at slow points (slow_point_memories > 0) and fewer than 2^K on memories"),
    ("no_attractor", "no isolated stable fixed point (n_stable = 0)"),
    ("fewer_attractors", "fewer than 2^K patterns on isolated memories"),
    ("extra_attractors", "every pattern on a memory, more than 2^K memories"),
    ("other_saddles", "the 2^K memories, but the index-1 saddles are not exactly the cube's edges"),
)


class FlipFlopScaffold(ScaffoldSpec):
    """The flip-flop's scaffold strategy (module docstring)."""

    task = "flipflop"
    criteria = CRITERIA
    numbers = FlipFlopNumbers
    claim = "flipflop_scaffold"
    slow_points = True
    universal_kind = "hypercube"
    compute = staticmethod(compute)
    distance = staticmethod(distance)
    dynamics_distance = staticmethod(dynamics_distance)

    def classify(self, scaffold: StoredScaffold) -> tuple[str, str]:
        """``(kind, phrase)``: the first of :data:`KINDS` that applies, read from the
        counts of the memory graph, the continua, the slow-point memories and the hold
        (no threshold: every rule compares counts with the cube's)."""
        n: FlipFlopNumbers = scaffold.numbers
        n_nodes = len(n.escape_times)
        k = n_nodes.bit_length() - 1
        n_edges = k * 2 ** (k - 1)
        held = f"{n.patterns_held} of {n_nodes} patterns held for {n.hold_steps} steps"
        if scaffold.canonical:
            return "hypercube", (f"hypercube: {n_nodes} isolated stable fixed points joined by index-1 saddles "
                                 f"along the {n_edges} cube edges")
        isolated = f" ({n.n_stable} isolated)" if n.n_stable else ""
        if n.n_continua and n.n_patterns < n_nodes:
            stable = [d for d, i in zip(n.continuum_dims, n.continuum_index, strict=True) if i == 0]
            dim = max(stable or n.continuum_dims)
            states = ("marginally stable states" if stable else
                      f"saddle states (index {min(n.continuum_index)})")
            what = (f"memories held on a {dim}-dimensional continuum" if n.patterns_held == n_nodes
                    else f"a {dim}-dimensional continuum")
            tail = "" if n.patterns_held == n_nodes else f"; {held}"
            return "continuum", (f"{what} of {states} (neutral dimension {dim}), not {n_nodes} isolated "
                                 f"attractors{isolated}{tail}")
        if n.slow_point_memories and n.n_patterns < n_nodes:
            return "slow_points", (f"memories on slow points rather than fixed points: {n.slow_point_memories} of "
                                   f"{n_nodes} patterns read out only at slow points, {n.n_patterns} on isolated "
                                   f"stable fixed points; {held}")
        if n.n_stable == 0:
            what = "patterns not held" if n.patterns_held < n_nodes else "patterns held by a slow transient"
            return "no_attractor", f"{what}: no stable fixed point at zero input; {held}"
        if n.n_patterns < n_nodes:
            return "fewer_attractors", (f"fewer isolated attractors than {n_nodes}: {n.n_stable} stable fixed "
                                        f"points carrying {n.n_patterns} of {n_nodes} patterns; {held}")
        if n.n_stable > n_nodes:
            return "extra_attractors", (f"{n.n_stable} isolated stable fixed points for the {n_nodes} patterns "
                                        f"(extra attractors beside the cube's corners)")
        return "other_saddles", (f"{n_nodes} isolated attractors, but their index-1 saddles are not the cube's "
                                 f"edges: {n.n_hypercube_edges} of {n_edges} edges, {n.n_other_edges} other "
                                 "saddles")


SPEC = FlipFlopScaffold()



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


def _pattern_counts(pattern: Tensor, where: Tensor, n_nodes: int) -> Tensor:
    """How many points of each pattern lie in ``where``: ``pattern, where [P, N] -> [P, 2^K]``."""
    slot = torch.where(where, pattern, n_nodes)  # the extra column collects the others
    counts = torch.zeros(pattern.shape[0], n_nodes + 1, dtype=torch.long)
    return counts.scatter_add_(1, slot, where.long())[:, :n_nodes]


def _masked_median(values: Tensor, where: Tensor) -> Tensor:
    """Median of ``values [P, N]`` over ``where [P, N]`` per row (mean of the middle two for
    an even count), NaN where empty: ``[P]``."""
    return torch.tensor([float(np.median(v[w].numpy())) if bool(w.any()) else math.nan
                         for v, w in zip(values.double(), where, strict=True)], dtype=torch.float64)
