"""Fixed points of whole populations: batched Levenberg-Marquardt, certified in float64.

All members x conditions x candidates are solved at once as the batch axis of
``population.step``: ``[P, C*K, S]`` states with the condition inputs ``[P, C*K, I]``.
Each candidate minimises q(h) = 1/2 ||F(h, x) - h||^2 by Levenberg-Marquardt on the
residual F(h) - h with its *own* damping (Nielsen's update), so a candidate far from a
root takes gradient-like steps while one near a root takes Newton steps (quadratic
convergence), and a candidate that has converged stops moving and stops costing compute
(active candidates are compacted every iteration). Everything runs in float64. Built-in
cells give their Jacobians in closed form (``Cell.recur_jacobian``, O(S^2) per state);
other cells through autodiff of their step.

Each candidate ends ``fixed`` (max-norm residual <= ``tol_fixed``), ``slow``
(q <= ``tol_slow``) or ``unconverged``. Kept points are deduplicated per member and
condition (greedy, best residual first, max-norm distance < ``tol_unique``; one pass per
representative, no distance matrix: :func:`deduplicate`), then linearised: Jacobians,
eigen-decomposition, stability index.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from ..population import Population
from .linearise import eigendecompose, float64_params, jacobians, stability_index, state_jacobians
from .recall import continua, pair_seeds
from .result import STATUSES, FixedPoints

log = logging.getLogger(__name__)

FIXED, SLOW, UNCONVERGED = range(3)

@dataclass(frozen=True)
class FixedPointConfig:
    """Settings of :func:`find_fixed_points` (all tolerances in state units, float64).

    Default candidates (when no ``initial_states`` are given): ``n_initial`` states drawn
    from the members' trajectories on ``n_trials`` task trials plus Gaussian noise of
    std ``noise`` (Golub & Sussillo's flip-flop example: 1024 states, sigma 0.5, so that
    saddles are found), all from ``seed``; every member gets the same trial and time
    indices and the same noise, so its candidates depend on its own weights only; plus
    the ends of holds (``hold_fraction``, ``hold_steps`` below).

    * ``tol_fixed = 1e-10``: max-norm residual certifying a fixed point. LM ends in
      Newton steps, whose quadratic convergence takes an isolated root from ~1e-6 to the
      float64 floor (~1e-15) in two steps, so 1e-10 is reached whenever a root is.
    * ``tol_slow = 1e-6``: q below which an uncertified candidate is a slow point
      (fixed-point studies usually keep slow points with q below 1e-8..1e-6).
    * ``tol_unique = 1e-3``: two points are the same if they differ by less than this in
      every coordinate (FixedPointFinder's default); certified roots of one point agree
      to ~1e-12, distinct points of trained networks are O(0.1) apart.
    * ``include_slow``: also keep (and linearise) slow points; ``FixedPoints.fixed``
      tells them apart.
    * A candidate stops after ``max_iters = 200`` LM iterations; when q is stationary,
      ``||A^T r|| <= tol_stationary ||A||_F ||r||`` with A = J - I and ``tol_stationary =
      1e-8`` (r is orthogonal to the range of A: a local minimum of q, i.e. a slow point,
      or a root so degenerate that sigma_min(A) / ||A|| < 1e-8 and residual / sigma_min
      bounds nothing); or when its damping exceeds ``max_damping = 1e12`` times
      ``1 + max diag(A^T A)`` (repeatedly rejected steps); or when q fell by less than
      ``stall_factor = 0.5`` over the last ``stall_window = 20`` iterations (crawling
      towards a nearly singular root or along a slow manifold: measured on the benchmark
      GRU population, this cuts a tenth of the work and loses no point).
    * ``bucket_size = 16``: each iteration, members are sorted by their number of
      still-active candidates and solved in groups of this many (more where the group's
      padded batch stays small, see ``_member_groups``), each padded to its own
      widest member. Results do not depend on it beyond float rounding; bigger groups pad
      more and fall out of cache (measurements: docs/performance.md, "Fixed points").
    * Holds (default candidates at given conditions only): besides the noisy states,
      ``ceil(hold_fraction * n_initial)`` candidates per condition (``hold_fraction =
      1/8``) are the end states of holding the condition's constant input for
      ``hold_steps = 500`` steps, started from visited states spread over the pool by
      farthest-point sampling (each next start the pooled state farthest from those
      picked, so a region the trials visit rarely gets a start as soon as the common ones
      have one). An attractor the network reaches from its trial states is then seeded
      even when it is reached only after a slow passage (a saddle or the ghost of a lost
      fixed point) that outlasts the trials, and noise and LM from the visited states
      end elsewhere (test: ``test_hold_seeds_an_attractor_reached_only_after_the_trials``).
      500 steps are 5-8 trial lengths of the built-in tasks (64-100 steps); the slowest
      passage measured, a ghost in a trained leaky rate network, took ~70 steps. An
      eighth keeps the cost small: hold ends start at or near their attractor, so LM
      certifies them in a few iterations. ``hold_fraction = 0`` turns holds off.
    * ``tol_unstable = 0``: a mode is unstable if |lambda| > 1 + tol_unstable.
    * ``max_rows = 2**20``: one Jacobian pass feeds at most this many rows (members x
      candidates x (S + 1)) to ``population.step`` (memory bound); the other candidates
      wait and enter as earlier ones finish.
    * Gradient phase and restarts: every candidate first takes ``gradient_iters = 50``
      Adam steps on its own q (learning rate ``gradient_lr = 2e-2`` in state units, its own
      moment estimates, so its path depends on nothing else in the batch) and keeps the
      lower-q of its start and end; LM runs from there. Every candidate that LM did not
      certify restarts LM from its raw initial state. LM converges to the root of the
      basin it starts in; descending q first reaches the basins gradient searches reach
      (on the stored reference GRU/ReLU flip-flop networks LM from the raw states missed a
      stable point that 100 Adam steps at 1e-2, or 50 at 2e-2, recover; 50 steps cost half
      as much, which the 20x speed-up needs), and the raw restarts give back the roots
      only raw starts reach (an index-2 saddle of a UGRNN/ReLU network). Measured in
      ``bench/recall_reference.py``. ``gradient_iters = 0``: LM from the raw states only.
      A restart takes at most ``restart_iters = 40`` LM iterations: the restarted are the
      candidates that crawl; on the asv population, 40 iterations certified 1124 of the
      1190 restarts that 200 certify, in 40% of the time (a budget for the 20x speed-up
      over the classic search).
    * Targeted saddle search (a last LM round): the certified stable points of each
      member and condition found by the first round are paired (``max_pairs = 64``
      closest pairs; 28 for the 8 memories of a 3-bit flip-flop) and each pair seeds
      candidates at ``pair_fractions = (0.5, 0.4, 0.6)`` of the segment between them,
      plus noise of ``pair_noise = 0.02`` times the pair's distance (per coordinate,
      /sqrt(S)). Saddles between attractors sit there (a flip-flop's index-k saddles at
      the midpoints of memories differing in k bits); on the stored reference flip-flop
      networks the first round alone missed 14% of the roots a float64 Adam search
      certifies from the same initial states (``bench/recall_reference.py``).
      ``max_pairs = 0`` turns the round off.
    * Continua: a kept point whose smallest singular value of J - I is <= ``tol_neutral
      = 1e-8`` has a neutral direction (on the stored reference networks the saturated
      continua give <= 1.1e-10 and every other point found >= 1e-8, see
      docs/architecture.md; below 1e-8, residual / sigma_min bounds nothing). Neutral
      points joined by a slow segment (q <= tol_slow at 1/4, 1/2, 3/4 of it) are one
      continuum, reported once (its best-residual point) with ``neutral_dim`` (singular
      values <= tol_neutral there; its stability index leaves out that many eigenvalues
      nearest 1, which rounding puts on either side of |lambda| = 1) and ``extent``
      (largest distance between its points).
    """

    n_initial: int = 1024
    noise: float = 0.5
    n_trials: int = 16
    seed: int = 0
    tol_fixed: float = 1e-10
    tol_slow: float = 1e-6
    tol_unique: float = 1e-3
    include_slow: bool = False
    max_iters: int = 200
    max_damping: float = 1e12
    stall_window: int = 20
    stall_factor: float = 0.5
    bucket_size: int = 16
    tol_stationary: float = 1e-8
    tol_unstable: float = 0.0
    max_rows: int = 2**20
    hold_fraction: float = 0.125
    hold_steps: int = 500
    gradient_iters: int = 50
    gradient_lr: float = 2e-2
    restart_iters: int = 40
    max_pairs: int = 64
    pair_fractions: tuple[float, ...] = (0.5, 0.4, 0.6)
    pair_noise: float = 0.02
    tol_neutral: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("n_initial", "n_trials", "max_iters", "max_rows", "stall_window", "bucket_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FixedPointConfig.{name} must be a positive int, got {value!r}")
        if not (math.isfinite(self.hold_fraction) and self.hold_fraction >= 0):
            raise ValueError(f"FixedPointConfig.hold_fraction must be >= 0, got {self.hold_fraction!r}")
        for name in ("max_pairs", "gradient_iters", "restart_iters", "hold_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"FixedPointConfig.{name} must be an int >= 0, got {value!r}")
        if not (math.isfinite(self.gradient_lr) and self.gradient_lr > 0):
            raise ValueError(f"FixedPointConfig.gradient_lr must be a finite number > 0, got {self.gradient_lr!r}")
        if not self.pair_fractions or not all(0 < t < 1 for t in self.pair_fractions):
            raise ValueError(f"FixedPointConfig.pair_fractions must lie in (0, 1), got {self.pair_fractions!r}")
        if not (math.isfinite(self.pair_noise) and self.pair_noise >= 0):
            raise ValueError(f"FixedPointConfig.pair_noise must be >= 0, got {self.pair_noise!r}")
        for name in ("tol_fixed", "tol_slow", "tol_unique", "max_damping", "tol_stationary", "tol_neutral"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"FixedPointConfig.{name} must be a finite number > 0, got {value!r}")
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"FixedPointConfig.noise must be >= 0, got {self.noise!r}")
        if not 0 < self.stall_factor <= 1:
            raise ValueError(f"FixedPointConfig.stall_factor must lie in (0, 1], got {self.stall_factor!r}")
        if not (math.isfinite(self.tol_unstable) and self.tol_unstable >= 0):
            raise ValueError(f"FixedPointConfig.tol_unstable must be >= 0, got {self.tol_unstable!r}")

    def as_dict(self) -> dict[str, object]:
        """The settings, JSON-shaped (tuples as lists, so a saved config compares equal)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


# ---------------------------------------------------------------------- public API
def sample_initial_states(
    population: Population, config: FixedPointConfig = FixedPointConfig(), conditions: Tensor | None = None
) -> Tensor:
    """Candidates (float64): ``config.n_initial`` states drawn from visited states plus
    Gaussian noise, and at given conditions the ends of holds (see :class:`FixedPointConfig`).

    Without ``conditions``: ``[P, K, S]`` (K = ``n_initial``) from the states of task
    trials. With ``conditions [C, I]``: ``[P, C, K + H, S]``, each condition's K noisy
    candidates drawn from a pool of the task-trial states and of the states visited while
    that condition's constant input is held for a trial length, starting from the trials'
    final states (so a sine network's candidates at one frequency lie on that frequency's
    own oscillation), then H = ``ceil(hold_fraction * n_initial)`` hold ends (no noise):
    pooled states spread by farthest-point sampling, each held at the condition's input
    for ``hold_steps`` steps (NaN where a hold diverged: no candidate).
    """
    gen = torch.Generator().manual_seed(config.seed)
    trials = population.task.sample(config.n_trials, gen)
    with torch.no_grad():
        states, _ = population.run(trials.inputs.to(population.device))  # [P, B, T, S]
    p, b, t, s = states.shape
    pool = states.flatten(1, 2).to(torch.float64)  # [P, B*T, S]
    if conditions is not None:
        c = len(conditions)
        held = conditions.to(device=population.device, dtype=states.dtype)
        inputs = held[:, None, None, :].expand(c, b, t, held.shape[-1]).reshape(c * b, t, -1)
        with torch.no_grad():
            driven, _ = population.run(inputs, state=states[:, :, -1].repeat(1, c, 1))  # [P, C*B, T, S]
        driven = driven.view(p, c, b * t, s).to(torch.float64)
        pool = torch.cat([pool.unsqueeze(1).expand(p, c, b * t, s), driven], dim=2)  # [P, C, 2*B*T, S]
    pick = torch.randint(pool.shape[-2], (*pool.shape[1:-2], config.n_initial), generator=gen).to(pool.device)
    noise = config.noise * torch.randn(*pick.shape, s, generator=gen, dtype=torch.float64).to(pool.device)
    chosen = pool.gather(-2, pick.unsqueeze(0).unsqueeze(-1).expand(p, *pick.shape, s))
    noisy = chosen + noise
    n_hold = math.ceil(config.hold_fraction * config.n_initial)
    if conditions is None or n_hold == 0:
        return noisy
    return torch.cat([noisy, _hold_ends(population, pool, conditions, n_hold, config.hold_steps)], dim=2)


def _hold_ends(population: Population, pool: Tensor, conditions: Tensor, n_hold: int, steps: int) -> Tensor:
    """Ends of holds: ``n_hold`` states of ``pool [P, C, M, S]`` spread by farthest-point
    sampling, each run ``steps`` steps at its condition's input ``conditions [C, I]`` in
    float64 -> ``[P, C, n_hold, S]`` (non-finite ends as NaN)."""
    p, c, m, s = pool.shape
    starts = _farthest_points(pool, min(n_hold, m))  # [P, C, H, S]
    n = starts.shape[2]
    params = float64_params(population)
    x = _inputs(conditions.to(device=pool.device, dtype=torch.float64), p, n).reshape(p, c * n, -1)
    h = starts.reshape(p, c * n, s)
    with torch.no_grad():
        for _ in range(steps):
            h = population.step(x, h, params)
    h = torch.where(torch.isfinite(h).all(-1, keepdim=True), h, math.nan)
    return h.view(p, c, n, s)


def _farthest_points(pool: Tensor, n: int) -> Tensor:
    """``n`` rows of ``pool [..., M, S]`` by farthest-point sampling (Euclidean; the first is
    row 0, each next one the row farthest from those already picked) -> ``[..., n, S]``."""
    lead, s = pool.shape[:-2], pool.shape[-1]
    finite = torch.isfinite(pool).all(-1)  # [..., M]
    nearest = torch.where(finite, math.inf, -math.inf)  # distance to the picked rows (non-finite: never picked)
    current = finite.to(torch.int8).argmax(-1)  # the first finite row
    picked = []
    for _ in range(n):
        picked.append(current)
        centre = pool.gather(-2, current.view(*lead, 1, 1).expand(*lead, 1, s))  # [..., 1, S]
        nearest = torch.minimum(nearest, (pool - centre).norm(dim=-1).nan_to_num(math.inf))
        current = nearest.argmax(-1)
    idx = torch.stack(picked, dim=-1)  # [..., n]
    return pool.gather(-2, idx.unsqueeze(-1).expand(*lead, n, s))


def find_fixed_points(
    population: Population,
    conditions: Tensor | None = None,
    initial_states: Tensor | None = None,
    config: FixedPointConfig = FixedPointConfig(),
    device: str | torch.device | None = None,
) -> FixedPoints:
    """Unique fixed points of every member at every constant input, with their linearisation.

    ``conditions [C, I]`` default to ``population.task.conditions()``; ``initial_states``
    are ``[P, C, K, S]`` (per condition) or ``[P, K, S]`` (shared by all conditions),
    default :func:`sample_initial_states`. Computes on ``device`` (default: the
    population's); returns CPU tensors.
    """
    pop = population if device is None else population.to(device)
    dev, p_count, s = pop.device, len(pop), pop.state_size
    cond = _check_conditions(pop, conditions)
    c_count, i_size = cond.shape
    init = sample_initial_states(pop, config, cond) if initial_states is None else initial_states
    init = _check_initial_states(init, p_count, c_count, s).to(device=dev, dtype=torch.float64)
    cond = cond.to(device=dev, dtype=torch.float64)

    params = float64_params(pop)
    with torch.no_grad():
        x = _inputs(cond, p_count, init.shape[2]).reshape(p_count, -1, i_size)
        moved = _gradient_phase(pop, params, x, init.reshape(p_count, -1, s), config).view_as(init)
        h = _solve(pop, params, cond, moved, config)  # [P, C, K, S]
        if config.gradient_iters > 0:  # restarts: LM from the raw start where the descended one failed
            failed = (_residuals(pop, params, cond, h)[0] > config.tol_fixed) & torch.isfinite(init).all(-1)
            restarts = _pick(init, failed)  # [P, C, K', S]
            short = dataclasses.replace(config, max_iters=min(config.max_iters, config.restart_iters))
            h = torch.cat([h, _solve(pop, params, cond, restarts, short)], dim=2)
            init = torch.cat([init, restarts], dim=2)
        if config.max_pairs > 0:  # targeted saddle search: a round from between stable points
            seeds = _seeds_between_stable_points(pop, params, h, cond, config)  # [P, C, K2, S]
            h = torch.cat([h, _solve(pop, params, cond, seeds, config)], dim=2)
            init = torch.cat([init, seeds], dim=2)
        x = _inputs(cond, p_count, h.shape[2])
        residual, q = _residuals(pop, params, cond, h)
    candidate = torch.isfinite(init).all(-1)  # [P, C, K'] (padding rows are NaN and not candidates)
    status = _classify(residual, q, config)
    status_counts = torch.stack([((status == k) & candidate).sum(-1) for k in range(len(STATUSES))], dim=-1)
    log.info("fixed-point candidates: %s", dict(zip(STATUSES, status_counts.sum((0, 1)).tolist(), strict=True)))

    keep = candidate & (status <= (SLOW if config.include_slow else FIXED))
    rep, size = deduplicate(h, keep, residual, config.tol_unique)
    return _linearise(pop, params, h, rep, size, cond, status_counts, config)


def deduplicate(points: Tensor, keep: Tensor, score: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """Greedy clustering within each group: ``points [..., K, S]``, ``keep [..., K]``,
    ``score [..., K]`` (lower is better).

    In order of ``score``, a kept candidate becomes a representative unless a better
    representative lies within max-norm distance ``< tol``; every other kept candidate
    joins its best representative within ``tol``. Returns ``representative [..., K]``
    (bool) and ``cluster_size [..., K]`` (int64; 0 for non-representatives).

    One pass per representative, all groups at once: each group's best undecided candidate
    becomes a representative and takes every undecided candidate within ``tol`` (they are
    worse, and it is their best representative within ``tol``: better ones took them
    already). O(reps x K x S) work and O(K x S) memory per group, against O(K^2 S) for a
    distance matrix (which took 0.5 s of a 5.6 s search on the asv population).
    """
    lead, (k, s) = points.shape[:-2], points.shape[-2:]
    pts, kp, sc = points.reshape(-1, k, s), keep.reshape(-1, k), score.reshape(-1, k)
    g = pts.shape[0]
    order = torch.where(kp, sc, math.inf).nan_to_num(math.inf).argsort(dim=1, stable=True)  # kept first, best first
    width = int(kp.sum(1).max()) if kp.numel() else 0
    order = order[:, :width]
    pts = pts.gather(1, order.unsqueeze(-1).expand(g, width, s))  # [G, W, S] in score order
    undecided = kp.gather(1, order)  # [G, W]
    rep_sorted = torch.zeros_like(undecided)
    size_sorted = torch.zeros(g, width, dtype=torch.long, device=pts.device)
    live = undecided.any(1).nonzero().squeeze(1)  # groups with undecided candidates
    while len(live):
        open_ = undecided[live]  # [L, W]
        first = open_.to(torch.int8).argmax(1)  # best undecided (rows sorted by score)
        centre = pts[live, first]  # [L, S]
        taken = open_ & ((pts[live] - centre.unsqueeze(1)).abs().amax(-1) < tol)
        taken[torch.arange(len(live), device=taken.device), first] = True  # itself (even if not finite)
        rep_sorted[live, first] = True
        size_sorted[live, first] = taken.sum(1)
        undecided[live] = open_ & ~taken
        live = live[undecided[live].any(1)]
    rep = torch.zeros_like(kp)
    size = torch.zeros(kp.shape, dtype=torch.long, device=kp.device)
    rep.scatter_(1, order, rep_sorted)
    size.scatter_(1, order, size_sorted)
    return rep.view(*lead, k), size.view(*lead, k)


def _inputs(cond: Tensor, p: int, k: int) -> Tensor:
    """The condition inputs of ``k`` candidates per member and condition, ``[P, C, K, I]``."""
    return cond[None, :, None].expand(p, cond.shape[0], k, cond.shape[1])


def _solve(pop: Population, params: dict[str, Tensor], cond: Tensor, start: Tensor,
           config: FixedPointConfig) -> Tensor:
    """LM from ``start [P, C, K, S]`` (NaN rows: no candidate) at the conditions ``cond [C, I]``."""
    p, c, k, s = start.shape
    if k == 0:
        return start
    x = _inputs(cond, p, k).reshape(p, c * k, -1)
    return _levenberg_marquardt(pop, params, x, start.reshape(p, c * k, s), config).view(p, c, k, s)


def _pick(points: Tensor, chosen: Tensor) -> Tensor:
    """The ``chosen [P, C, K]`` rows of ``points [P, C, K, S]``, first, padded with NaN to
    the largest count: ``[P, C, K', S]``."""
    width = int(chosen.sum(-1).max()) if chosen.numel() else 0
    slot = torch.argsort((~chosen).to(torch.int8), dim=-1, stable=True)[..., :width]
    rows = points.gather(2, slot.unsqueeze(-1).expand(*slot.shape, points.shape[-1]))
    return torch.where(chosen.gather(2, slot).unsqueeze(-1), rows, math.nan)


def _residuals(pop: Population, params: dict[str, Tensor], cond: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Max-norm residual and q of ``h [P, C, K, S]`` at the conditions ``cond [C, I]`` (inf where not finite)."""
    p, c, k, s = h.shape
    x = _inputs(cond, p, k).reshape(p, c * k, -1)
    r = (pop.step(x, h.reshape(p, c * k, s), params) - h.reshape(p, c * k, s)).view(p, c, k, s)
    return r.abs().amax(-1).nan_to_num(math.inf), (0.5 * r.square().sum(-1)).nan_to_num(math.inf)


def _classify(residual: Tensor, q: Tensor, config: FixedPointConfig) -> Tensor:
    """FIXED / SLOW / UNCONVERGED per candidate (``[...]`` int64)."""
    status = torch.full_like(residual, UNCONVERGED, dtype=torch.long)
    status[q <= config.tol_slow] = SLOW
    status[residual <= config.tol_fixed] = FIXED
    return status


def _gradient_phase(pop: Population, params: dict[str, Tensor], x: Tensor, h: Tensor,
                    config: FixedPointConfig) -> Tensor:
    """``config.gradient_iters`` Adam steps on each candidate's own q: ``x [P, N, I]``,
    ``h [P, N, S]`` -> ``[P, N, S]``, the lower-q of each candidate's start and end.

    The loss is the sum of the candidates' q, so every coordinate's gradient and Adam
    moments are its own candidate's (the path of a candidate depends on nothing else in
    the batch). A candidate whose q becomes non-finite keeps its start.
    """
    if config.gradient_iters == 0 or h.numel() == 0:
        return h
    start = h.detach()
    with torch.no_grad():
        q0 = (0.5 * (pop.step(x, start, params) - start).square().sum(-1)).nan_to_num(math.inf)
    moving = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([moving], lr=config.gradient_lr)
    with torch.enable_grad():
        for _ in range(config.gradient_iters):
            q = 0.5 * (pop.step(x, moving, params) - moving).square().sum(-1)
            opt.zero_grad(set_to_none=True)
            torch.where(torch.isfinite(q), q, 0.0).sum().backward()
            opt.step()
    end = moving.detach()
    with torch.no_grad():
        q1 = (0.5 * (pop.step(x, end, params) - end).square().sum(-1)).nan_to_num(math.inf)
    return torch.where((q1 < q0).unsqueeze(-1) & torch.isfinite(end).all(-1, keepdim=True), end, start)


def _seeds_between_stable_points(pop: Population, params: dict[str, Tensor], h: Tensor, cond: Tensor,
                                 config: FixedPointConfig) -> Tensor:
    """Second-round candidates ``[P, C, K2, S]`` (NaN rows: none) between the unique
    certified stable points of each member and condition among the first round's ``h [P, C, K, S]``."""
    p, c, k, s = h.shape
    residual, _ = _residuals(pop, params, cond, h)
    rep, _ = deduplicate(h, residual <= config.tol_fixed, residual, config.tol_unique)
    n = max(int(rep.sum(-1).max()), 1)
    slot = torch.argsort((~rep).to(torch.int8), dim=-1, stable=True)[..., :n]  # [P, C, N]
    mask = rep.gather(-1, slot)
    points = torch.where(mask.unsqueeze(-1), h.gather(2, slot.unsqueeze(-1).expand(p, c, n, s)), 0.0)
    inputs = cond[None, :, None].expand(p, c, n, cond.shape[-1]).reshape(p, c * n, -1)
    _, jac = state_jacobians(pop, params, points.reshape(p, c * n, s), inputs)
    stable = mask & (stability_index(torch.linalg.eigvals(jac), config.tol_unstable).view(p, c, n) == 0)
    seeds = pair_seeds(points.reshape(p * c, n, s), stable.reshape(p * c, n), config.pair_fractions,
                       config.pair_noise, config.max_pairs, config.seed + 1)
    return seeds.view(p, c, -1, s)


# ---------------------------------------------------------------------- the solver
@dataclass
class _Candidates:
    """Per-candidate LM state of P members x N candidates: ``h [P, N, S]`` and ``[P, N]``
    fields ``q`` (1/2 |r|^2), ``mu`` (damping; NaN until set from the first Jacobian),
    ``nu`` (damping growth after a rejected step), ``q_ref`` (q at the last stall check),
    ``active`` and ``age`` (LM iterations taken)."""

    h: Tensor
    q: Tensor
    mu: Tensor
    nu: Tensor
    q_ref: Tensor
    active: Tensor
    age: Tensor

    @classmethod
    def start(cls, h: Tensor, r: Tensor, tol_fixed: float) -> _Candidates:
        """Fresh state at ``h`` with residual ``r`` (a non-finite or certified start is inactive)."""
        q = (0.5 * r.square().sum(-1)).nan_to_num(math.inf)
        active = torch.isfinite(q) & (r.abs().amax(-1) > tol_fixed)
        return cls(h, q, torch.full_like(q, math.nan), torch.full_like(q, 2.0), q.clone(), active,
                   torch.zeros_like(q, dtype=torch.long))

    def _fields(self) -> list[Tensor]:
        return [getattr(self, f.name) for f in dataclasses.fields(self)]

    def members(self, rows: Tensor) -> _Candidates:
        """The state of members ``rows`` (a copy)."""
        return _Candidates(*(t.index_select(0, rows) for t in self._fields()))

    def put_members(self, rows: Tensor, part: _Candidates) -> None:
        """Write ``part`` (from :meth:`members`) back at ``rows``."""
        for whole, value in zip(self._fields(), part._fields(), strict=True):
            whole.index_copy_(0, rows, value)

    def slots(self, idx: Tensor) -> _Candidates:
        """Candidates ``idx [P, W]`` of every member (a copy)."""
        return _Candidates(*(_take(t, idx) for t in self._fields()))

    def put_slots(self, idx: Tensor, part: _Candidates) -> None:
        """Write ``part`` (from :meth:`slots`) back at ``idx``."""
        for whole, value in zip(self._fields(), part._fields(), strict=True):
            whole.scatter_(1, idx.view(*idx.shape, *([1] * (whole.dim() - 2))).expand_as(value), value)


class _StepOutcome(NamedTuple):
    """What the stop rules need from one LM step, each ``[P, W]``: the max-norm residual
    after it, whether q was stationary (the residual orthogonal to the range of J - I: a
    slow point) and the largest diagonal of A^T A (the damping's scale)."""

    residual_max: Tensor
    stationary: Tensor
    diag_max: Tensor


def _take(t: Tensor, idx: Tensor) -> Tensor:
    """``t [P, N, ...]`` at candidates ``idx [P, W]`` -> ``[P, W, ...]``."""
    return t.gather(1, idx.view(*idx.shape, *([1] * (t.dim() - 2))).expand(*idx.shape, *t.shape[2:]))


def _levenberg_marquardt(pop: Population, params: dict[str, Tensor], x: Tensor, h: Tensor,
                         config: FixedPointConfig) -> Tensor:
    """Per-candidate LM on r(h) = F(h) - h of ``pop`` with its float64 ``params``:
    ``x [P, N, I]``, ``h [P, N, S]`` -> ``[P, N, S]``.

    Each iteration compacts every member's active candidates to the front; members are
    sorted by their number of active candidates and split into groups
    (:func:`_member_groups`), each padded only to its own widest member (one batch padded to
    the widest member of all computed about twice the active candidates on the benchmark
    population). A group
    takes at most ``config.max_rows // (members * (S + 1))`` candidates per member per
    iteration; the others wait and enter as earlier ones finish, so the batch stays full
    and no candidate's iteration count depends on when it entered.
    """
    p, n, s = h.shape
    h = h.clone()
    state = _Candidates.start(h, pop.step(x, h, params) - h, config.tol_fixed)
    sweeps = 0
    while True:
        counts = state.active.sum(1)
        if int(counts.max()) == 0:
            break
        sweeps += 1
        for rows in _member_groups(counts, config.bucket_size):
            cap = max(1, config.max_rows // (len(rows) * (s + 1)))
            width = min(int(counts[rows].max()), cap)
            sub = {k: v.index_select(0, rows) for k, v in params.items()}
            group = state.members(rows)
            _lm_iteration(pop, sub, x.index_select(0, rows), group, width=width, config=config)
            state.put_members(rows, group)
    log.debug("LM: %d sweeps, %d candidate iterations", sweeps, int(state.age.sum()))
    return state.h


#: A group of members whose padded batch holds at most this many candidates costs about its
#: fixed per-iteration overhead (~1 ms of small ops, against ~7 us per candidate iteration
#: on the asv population), so :func:`_member_groups` lets such a group take more members.
_SMALL_BATCH = 512


def _member_groups(counts: Tensor, bucket_size: int) -> list[Tensor]:
    """Members with active candidates (``counts [P]``), sorted by count (descending), in
    groups: ``bucket_size`` members, and beyond that as many more as keep the group's padded
    batch (members x its widest count) within ``_SMALL_BATCH`` candidates. Late sweeps,
    where a few candidates per member still crawl, then take one group, not P / bucket_size."""
    order = counts.argsort(descending=True, stable=True)
    ranked = counts[order].tolist()
    groups, start = [], 0
    while start < len(ranked) and ranked[start] > 0:
        end = min(start + bucket_size, len(ranked))
        while end < len(ranked) and ranked[end] > 0 and (end - start + 1) * ranked[start] <= _SMALL_BATCH:
            end += 1
        groups.append(order[start:end])
        start = end
    return groups


def _lm_iteration(pop: Population, params: dict[str, Tensor], x: Tensor, state: _Candidates, *, width: int,
                  config: FixedPointConfig) -> None:
    """One LM iteration of the first ``width`` active candidates of each member of
    ``params`` (a subset of ``pop``'s members; ``x [P, N, I]``), updating ``state`` in place."""
    # Compact: each member's active candidates first, then any padding (inactive rows).
    idx = torch.argsort((~state.active).to(torch.int8), dim=1, stable=True)[:, :width]
    part = state.slots(idx)
    part.age += part.active.long()
    outcome = _lm_step(pop, params, _take(x, idx), part, config.tol_stationary)
    _apply_stop_rules(part, outcome, config)
    state.put_slots(idx, part)


def _lm_step(pop: Population, params: dict[str, Tensor], x: Tensor, part: _Candidates,
             tol_stationary: float) -> _StepOutcome:
    """Propose the damped Gauss-Newton step of every active candidate of ``part`` (at
    ``x [P, W, I]``) and accept it where q falls (Nielsen's damping update), in place."""
    fa, a = state_jacobians(pop, params, part.h, x)
    a.diagonal(dim1=-2, dim2=-1).sub_(1)  # A = J - I (in place: the Jacobian is ours)
    ra = fa - part.h
    grad = (a * ra.unsqueeze(-1)).sum(-2)  # A^T r (a third of a [N, 16, 16] x [N, 16, 1] bmm's time)
    hess = a.mT @ a
    diag = hess.diagonal(dim1=-2, dim2=-1)
    diag_max = diag.amax(-1)
    stationary = grad.norm(dim=-1) <= tol_stationary * diag.sum(-1).sqrt() * ra.norm(dim=-1)
    mu = torch.where(torch.isnan(part.mu), 1e-3 * diag_max.clamp_min(1e-12), part.mu)
    diag.add_(mu.unsqueeze(-1))  # hess + mu I
    # hess = U^T U (the upper factor: LAPACK's column-major lower one, no transposed copy),
    # then two triangular solves: together ~2x faster than the lower factor and cholesky_solve
    # on [N, 16, 16] batches (docs/performance.md)
    chol, info = torch.linalg.cholesky_ex(hess, upper=True)
    half = torch.linalg.solve_triangular(chol.mT, -grad.unsqueeze(-1), upper=False)
    d = torch.linalg.solve_triangular(chol, half, upper=True).squeeze(-1)
    h_new = part.h + d
    r_new = pop.step(x, h_new, params) - h_new
    q_new = (0.5 * r_new.square().sum(-1)).nan_to_num(math.inf)

    accept = part.active & (info == 0) & (q_new < part.q) & torch.isfinite(d).all(-1)
    predicted = (0.5 * (d * (mu.unsqueeze(-1) * d - grad)).sum(-1)).clamp_min(torch.finfo(d.dtype).tiny)
    rho = (part.q - q_new) / predicted
    shrink = (1 - (2 * rho - 1) ** 3).clamp(min=1 / 3).nan_to_num(1 / 3)
    part.mu = torch.where(accept, mu * shrink, mu * part.nu)
    part.nu = torch.where(accept, torch.full_like(part.nu, 2.0), 2 * part.nu)
    part.h = torch.where(accept.unsqueeze(-1), h_new, part.h)
    part.q = torch.where(accept, q_new, part.q)
    return _StepOutcome(torch.where(accept, r_new.abs().amax(-1), ra.abs().amax(-1)), stationary, diag_max)


def _apply_stop_rules(part: _Candidates, outcome: _StepOutcome, config: FixedPointConfig) -> None:
    """Deactivate candidates of ``part`` that are certified, stationary, over-damped, out of
    iterations, or crawling (q fell by less than ``stall_factor`` over the last window)."""
    stalled = part.mu > config.max_damping * (1 + outcome.diag_max)
    part.active = (part.active & (outcome.residual_max > config.tol_fixed) & ~stalled & ~outcome.stationary
                   & (part.age < config.max_iters))
    check = part.age % config.stall_window == 0
    part.active = part.active & ~(check & (part.q > config.stall_factor * part.q_ref))
    part.q_ref = torch.where(check, part.q, part.q_ref)


# ---------------------------------------------------------------------- linearise
def _linearise(
    pop: Population,
    params: dict[str, Tensor],
    h: Tensor,
    rep: Tensor,
    size: Tensor,
    cond: Tensor,
    status_counts: Tensor,
    config: FixedPointConfig,
) -> FixedPoints:
    """Pad the representatives to ``[P, C, N, S]`` (candidate order), merge continua
    (:func:`~universality.dynamics.recall.continua`) and linearise them."""
    p, c, k, s = h.shape
    n = int(rep.sum(-1).max()) if rep.numel() else 0
    slot = torch.argsort((~rep).to(torch.int8), dim=-1, stable=True)[..., :n]  # [P, C, N]
    mask = rep.gather(-1, slot)
    points = torch.where(mask.unsqueeze(-1), h.gather(2, slot.unsqueeze(-1).expand(p, c, n, s)), 0.0)
    cluster = size.gather(-1, slot) * mask
    i = cond.shape[-1]
    x = cond[None, :, None].expand(p, c, n, i)

    f, jac, jac_x = jacobians(pop, points.reshape(p, c * n, s), x.reshape(p, c * n, i), params)
    r = (f - points.reshape(p, c * n, s)).view(p, c, n, s)
    jac, jac_x = jac.view(p, c, n, s, s), jac_x.view(p, c, n, s, i)
    eye = torch.eye(s, dtype=jac.dtype, device=jac.device)
    singular = torch.linalg.svdvals(jac - eye)  # [P, C, N, S] descending
    neutral_dim = (singular <= config.tol_neutral).sum(-1) * mask
    # Continua: one representative each (its best residual), summed cluster sizes, extent.
    residual = r.abs().amax(-1)
    label = continua(pop, params, points, cond[None].expand(p, c, i), mask & (neutral_dim > 0), config.tol_slow)
    same = (label.unsqueeze(-1) == label.unsqueeze(-2)) & mask.unsqueeze(-1) & mask.unsqueeze(-2)  # [P, C, N, N]
    if n > 0:
        best = torch.where(same, residual.unsqueeze(-2), math.inf).argmin(-1)  # best slot of each point's continuum
        mask = mask & (best == torch.arange(n, device=best.device))
    cluster = torch.where(same, cluster.unsqueeze(-2), 0).sum(-1) * mask
    extent = torch.zeros_like(residual)  # [P, C, N]: the diameter of each continuum's points
    if n > 0:
        farthest = torch.where(same, torch.cdist(points, points), 0.0).amax(-1)  # within its continuum
        extent = torch.where(same, farthest.unsqueeze(-2), 0.0).amax(-1) * mask
    values, right, left = eigendecompose(jac)
    index = stability_index(values, config.tol_unstable) - _neutral_counted_unstable(values, neutral_dim, config)
    fields = {
        "points": points, "mask": mask, "fixed": mask & (residual <= config.tol_fixed),
        "residual": residual, "q": 0.5 * r.square().sum(-1), "sigma_min": singular[..., -1], "cluster_size": cluster,
        "neutral_dim": neutral_dim, "extent": extent, "index": index, "eigenvalues": values, "right": right,
        "left": left, "jacobian": jac, "input_jacobian": jac_x,
    }
    # Stable points first (padded slots last), candidate order within an index.
    order = torch.where(mask, index, s + 1).argsort(dim=-1, stable=True)
    n_kept = int(mask.sum(-1).max()) if mask.numel() else 0
    order = order[..., :n_kept]
    kept = mask.gather(2, order)
    out = {}
    for name, value in fields.items():
        idx = order.view(p, c, n_kept, *([1] * (value.dim() - 3))).expand(p, c, n_kept, *value.shape[3:])
        value = value.gather(2, idx)
        pad = kept.view(p, c, n_kept, *([1] * (value.dim() - 3)))
        out[name] = torch.where(pad, value, torch.zeros((), dtype=value.dtype, device=value.device)).cpu()
    return FixedPoints(**out, conditions=cond.cpu(), status_counts=status_counts.cpu(), config=config.as_dict())


def _neutral_counted_unstable(values: Tensor, neutral_dim: Tensor, config: FixedPointConfig) -> Tensor:
    """How many of a point's ``neutral_dim`` neutral modes (the eigenvalues nearest 1 in
    ``values [..., S]``, exactly 1 up to rounding) count as unstable, ``[...]``: the
    stability index of a continuum leaves them out, so it does not depend on rounding."""
    rank = (values - 1).abs().argsort(dim=-1, stable=True).argsort(dim=-1)  # 0 = nearest 1
    neutral = rank < neutral_dim.unsqueeze(-1)
    return (neutral & (values.abs() > 1 + config.tol_unstable)).sum(-1)


def _check_conditions(pop: Population, conditions: Tensor | None) -> Tensor:
    cond = pop.task.conditions() if conditions is None else torch.as_tensor(conditions)
    if cond.dim() == 1:
        cond = cond.unsqueeze(0)
    if cond.dim() != 2 or cond.shape[1] != pop.task.input_size:
        raise ValueError(
            f"conditions must be [C, I] constant inputs with I = {pop.task.input_size}; got {tuple(cond.shape)}"
        )
    return cond


def _check_initial_states(init: Tensor, p: int, c: int, s: int) -> Tensor:
    init = torch.as_tensor(init)
    if init.dim() == 3 and init.shape[0] == p and init.shape[2] == s:
        init = init.unsqueeze(1).expand(p, c, *init.shape[1:])
    if init.dim() != 4 or init.shape[:2] != (p, c) or init.shape[3] != s or init.shape[2] < 1:
        raise ValueError(
            f"initial_states must be [P, K, S] or [P, C, K, S] with P={p}, C={c}, S={s}; got {tuple(init.shape)}"
        )
    return init
