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
condition (greedy, best residual first, max-norm distance < ``tol_unique``) with batched
distance matrices, then linearised: Jacobians, eigen-decomposition, stability index.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..population import Population
from .linearise import eigendecompose, float64_params, jacobians, stability_index, state_jacobians
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
    indices and the same noise, so its candidates depend on its own weights only.

    * ``tol_fixed = 1e-10``: max-norm residual certifying a fixed point. LM ends in
      Newton steps, whose quadratic convergence takes an isolated root from ~1e-6 to the
      float64 floor (~1e-15) in two steps, so 1e-10 is reached whenever a root is.
    * ``tol_slow = 1e-6``: q below which an uncertified candidate is a slow point
      (PAPER_NOTES section 7 keeps points with q below 1e-8..1e-6).
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
      still-active candidates and solved in groups of this many, each padded to its own
      widest member. Results do not depend on it beyond float rounding. On the benchmark
      population, 64 members in one group computed twice the active candidates and took
      2.3x as long as groups of 16; 512 members in groups of 128 took 2.4x as long as
      groups of 16 (bigger batches fall out of cache).
    * ``tol_unstable = 0``: a mode is unstable if |lambda| > 1 + tol_unstable.
    * ``max_rows = 2**20``: one Jacobian pass feeds at most this many rows (members x
      candidates x (S + 1)) to ``population.step`` (memory bound); the other candidates
      wait and enter as earlier ones finish.
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

    def __post_init__(self) -> None:
        for name in ("n_initial", "n_trials", "max_iters", "max_rows", "stall_window", "bucket_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"FixedPointConfig.{name} must be a positive int, got {value!r}")
        for name in ("tol_fixed", "tol_slow", "tol_unique", "max_damping", "tol_stationary"):
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
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------- public API
def sample_initial_states(
    population: Population, config: FixedPointConfig = FixedPointConfig(), conditions: Tensor | None = None
) -> Tensor:
    """Candidates (float64, K = ``config.n_initial``) drawn from visited states plus
    Gaussian noise (see :class:`FixedPointConfig`).

    Without ``conditions``: ``[P, K, S]`` from the states of task trials. With
    ``conditions [C, I]``: ``[P, C, K, S]``, each condition's candidates drawn from a pool
    of the task-trial states and of the states visited while that condition's constant
    input is held for a trial length, starting from the trials' final states (so a sine
    network's candidates at one frequency lie on that frequency's own oscillation).
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
    return chosen + noise


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
    k_count = init.shape[2]
    cond = cond.to(device=dev, dtype=torch.float64)

    params = float64_params(pop)
    x = cond[None, :, None].expand(p_count, c_count, k_count, i_size).reshape(p_count, -1, i_size)
    with torch.no_grad():
        h = _levenberg_marquardt(pop, params, x, init.reshape(p_count, -1, s), config)
        r = pop.step(x, h, params) - h
    residual = r.abs().amax(-1).nan_to_num(math.inf)
    q = (0.5 * r.square().sum(-1)).nan_to_num(math.inf)
    status = torch.full_like(residual, UNCONVERGED, dtype=torch.long)
    status[q <= config.tol_slow] = SLOW
    status[residual <= config.tol_fixed] = FIXED
    status = status.view(p_count, c_count, k_count)
    status_counts = torch.stack([(status == k).sum(-1) for k in range(len(STATUSES))], dim=-1)
    log.info("fixed-point candidates: %s", dict(zip(STATUSES, status_counts.sum((0, 1)).tolist(), strict=True)))

    keep = status <= (SLOW if config.include_slow else FIXED)
    h = h.view(p_count, c_count, k_count, s)
    rep, size = deduplicate(h, keep, residual.view(p_count, c_count, k_count), config.tol_unique)
    return _linearise(pop, params, h, rep, size, cond, status_counts, config)


def deduplicate(points: Tensor, keep: Tensor, score: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """Greedy clustering within each group: ``points [..., K, S]``, ``keep [..., K]``,
    ``score [..., K]`` (lower is better).

    In order of ``score``, a kept candidate becomes a representative unless a better
    representative lies within max-norm distance ``< tol``; every other kept candidate
    joins its best representative within ``tol``. Returns ``representative [..., K]``
    (bool) and ``cluster_size [..., K]`` (int64; 0 for non-representatives). Batched over
    groups with distance matrices, chunked to bound memory.
    """
    lead, (k, s) = points.shape[:-2], points.shape[-2:]
    pts, kp, sc = points.reshape(-1, k, s), keep.reshape(-1, k), score.reshape(-1, k)
    rep = torch.zeros_like(kp)
    size = torch.zeros(kp.shape, dtype=torch.long, device=kp.device)
    chunk = max(1, 2**24 // max(k * k, 1))
    for g in range(0, len(pts), chunk):
        sl = slice(g, g + chunk)
        rep[sl], size[sl] = _greedy_clusters(pts[sl], kp[sl], sc[sl], tol)
    return rep.view(*lead, k), size.view(*lead, k)


# ---------------------------------------------------------------------- the solver
def _levenberg_marquardt(pop: Population, params: dict[str, Tensor], x: Tensor, h: Tensor,
                         config: FixedPointConfig) -> Tensor:
    """Per-candidate LM on r(h) = F(h) - h of ``pop`` with its float64 ``params``:
    ``x [P, N, I]``, ``h [P, N, S]`` -> ``[P, N, S]``.

    Each iteration compacts every member's active candidates to the front; members are
    sorted by their number of active candidates and split into groups of
    ``config.bucket_size``, each padded only to its own widest member (one batch padded to
    the widest member of all computed about twice the active candidates on the benchmark
    population). A group
    takes at most ``config.max_rows // (members * (S + 1))`` candidates per member per
    iteration; the others wait and enter as earlier ones finish, so the batch stays full
    and no candidate's iteration count depends on when it entered.
    """
    p, n, s = h.shape
    h = h.clone()
    r = pop.step(x, h, params) - h
    q = (0.5 * r.square().sum(-1)).nan_to_num(math.inf)
    mu = torch.full_like(q, math.nan)  # per-candidate damping, set from the first Jacobian
    nu = torch.full_like(q, 2.0)
    q_ref = q.clone()  # q at the last stall check
    active = torch.isfinite(q) & (r.abs().amax(-1) > config.tol_fixed)
    age = torch.zeros_like(q, dtype=torch.long)  # LM iterations each candidate has taken
    state = (h, q, mu, nu, q_ref, active, age)
    sweeps = 0
    while True:
        counts = active.sum(1)
        if int(counts.max()) == 0:
            break
        sweeps += 1
        for rows in counts.argsort(descending=True, stable=True).split(config.bucket_size):
            cap = max(1, config.max_rows // (len(rows) * (s + 1)))
            width = min(int(counts[rows].max()), cap)
            if width == 0:
                break  # members are sorted by count: the remaining buckets are idle too
            sub = {k: v.index_select(0, rows) for k, v in params.items()}
            fields = [t.index_select(0, rows) for t in state]
            _lm_iteration(pop, sub, x.index_select(0, rows), *fields, width=width, config=config)
            for whole, part in zip(state, fields, strict=True):
                whole.index_copy_(0, rows, part)
    log.debug("LM: %d sweeps, %d candidate iterations", sweeps, int(age.sum()))
    return h


def _lm_iteration(pop: Population, params: dict[str, Tensor], x: Tensor, h: Tensor, q: Tensor, mu: Tensor,
                  nu: Tensor, q_ref: Tensor, active: Tensor, age: Tensor, *, width: int,
                  config: FixedPointConfig) -> None:
    """One LM iteration of the first ``width`` active candidates of each member of
    ``params`` (a subset of ``pop``'s members), updating ``h [P, N, S]`` and the
    per-candidate ``q, mu, nu, q_ref, active, age [P, N]`` in place."""
    p, _, s = h.shape
    # Compact: each member's active candidates first, then any padding (inactive rows).
    idx = torch.argsort((~active).to(torch.int8), dim=1, stable=True)[:, :width]
    idx_s = idx.unsqueeze(-1).expand(p, width, s)
    on = active.gather(1, idx)
    ha, xa = h.gather(1, idx_s), x.gather(1, idx.unsqueeze(-1).expand(p, width, x.shape[-1]))
    qa, mua, nua, refa = q.gather(1, idx), mu.gather(1, idx), nu.gather(1, idx), q_ref.gather(1, idx)
    agea = age.gather(1, idx) + on.long()

    fa, a = state_jacobians(pop, params, ha, xa)
    a.diagonal(dim1=-2, dim2=-1).sub_(1)  # A = J - I (in place: the Jacobian is ours)
    ra = fa - ha
    grad = (a.mT @ ra.unsqueeze(-1)).squeeze(-1)
    hess = a.mT @ a
    diag = hess.diagonal(dim1=-2, dim2=-1)
    diag_max = diag.amax(-1)
    # q is stationary where the residual is orthogonal to the range of J - I: a slow point.
    stationary = grad.norm(dim=-1) <= config.tol_stationary * diag.sum(-1).sqrt() * ra.norm(dim=-1)
    mua = torch.where(torch.isnan(mua), 1e-3 * diag_max.clamp_min(1e-12), mua)
    diag.add_(mua.unsqueeze(-1))  # hess + mu I
    chol, info = torch.linalg.cholesky_ex(hess)
    d = torch.linalg.solve_triangular(chol, -grad.unsqueeze(-1), upper=False)
    d = torch.linalg.solve_triangular(chol.mT, d, upper=True).squeeze(-1)
    h_new = ha + d
    r_new = pop.step(xa, h_new, params) - h_new
    q_new = (0.5 * r_new.square().sum(-1)).nan_to_num(math.inf)

    accept = on & (info == 0) & (q_new < qa) & torch.isfinite(d).all(-1)
    predicted = (0.5 * (d * (mua.unsqueeze(-1) * d - grad)).sum(-1)).clamp_min(torch.finfo(h.dtype).tiny)
    rho = (qa - q_new) / predicted
    shrink = (1 - (2 * rho - 1) ** 3).clamp(min=1 / 3).nan_to_num(1 / 3)
    mua = torch.where(accept, mua * shrink, mua * nua)
    nua = torch.where(accept, torch.full_like(nua, 2.0), 2 * nua)
    ha = torch.where(accept.unsqueeze(-1), h_new, ha)
    ra = torch.where(accept.unsqueeze(-1), r_new, ra)
    qa = torch.where(accept, q_new, qa)
    stalled = mua > config.max_damping * (1 + diag_max)
    on = on & (ra.abs().amax(-1) > config.tol_fixed) & ~stalled & ~stationary & (agea < config.max_iters)
    check = agea % config.stall_window == 0  # crawling: q fell by less than stall_factor over the window
    on = on & ~(check & (qa > config.stall_factor * refa))
    q_ref.scatter_(1, idx, torch.where(check, qa, refa))
    age.scatter_(1, idx, agea)

    h.scatter_(1, idx_s, ha)
    q.scatter_(1, idx, qa)
    mu.scatter_(1, idx, mua)
    nu.scatter_(1, idx, nua)
    active.scatter_(1, idx, on)


# ---------------------------------------------------------------------- dedup
def _greedy_clusters(points: Tensor, keep: Tensor, score: Tensor, tol: float) -> tuple[Tensor, Tensor]:
    """:func:`deduplicate` on ``[G, K, S]`` groups (one chunk)."""
    g, k, _ = points.shape
    order = torch.where(keep, score, math.inf).nan_to_num(math.inf).argsort(dim=1, stable=True)
    pts = points.gather(1, order.unsqueeze(-1).expand_as(points))
    kp = keep.gather(1, order)
    near = (torch.cdist(pts, pts, p=math.inf) < tol) & kp.unsqueeze(1) & kp.unsqueeze(2)  # [G, K, K]
    earlier = near & torch.ones(k, k, dtype=torch.bool, device=pts.device).tril(-1)  # [g, j, i]: i < j near
    rep = torch.zeros_like(kp)
    undecided = kp.clone()
    while undecided.any():
        # j is a representative once no earlier neighbour can still be one; it is not once one is.
        blocked = (earlier & (rep | undecided).unsqueeze(1)).any(-1)
        rep |= undecided & ~blocked
        taken = (earlier & rep.unsqueeze(1)).any(-1)
        undecided &= ~rep & ~taken
    # Every kept candidate joins its first (best) representative within tol (itself if one).
    owner = (near & rep.unsqueeze(1)).to(torch.int8).argmax(-1)  # [G, K]
    size_sorted = torch.zeros(g, k, dtype=torch.long, device=pts.device)
    size_sorted.scatter_add_(1, owner, kp.long())
    size_sorted *= rep
    inverse = order.argsort(dim=1)
    return rep.gather(1, inverse), size_sorted.gather(1, inverse)


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
    """Pad the representatives to ``[P, C, N, S]`` (candidate order) and linearise them."""
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
    sigma = torch.linalg.svdvals(jac - eye)[..., -1]
    values, right, left = eigendecompose(jac)
    index = stability_index(values, config.tol_unstable)
    residual = r.abs().amax(-1)
    fields = {
        "points": points, "mask": mask, "fixed": mask & (residual <= config.tol_fixed),
        "residual": residual, "q": 0.5 * r.square().sum(-1), "sigma_min": sigma, "cluster_size": cluster,
        "index": index, "eigenvalues": values, "right": right, "left": left, "jacobian": jac,
        "input_jacobian": jac_x,
    }
    # Stable points first (padded slots last), candidate order within an index.
    order = torch.where(mask, index, s + 1).argsort(dim=-1, stable=True)
    out = {}
    for name, value in fields.items():
        idx = order.view(p, c, n, *([1] * (value.dim() - 3))).expand_as(value)
        value = value.gather(2, idx)
        pad = mask.gather(2, order).view(p, c, n, *([1] * (value.dim() - 3)))
        out[name] = torch.where(pad, value, torch.zeros((), dtype=value.dtype, device=value.device)).cpu()
    return FixedPoints(**out, conditions=cond.cpu(), status_counts=status_counts.cpu(), config=config.as_dict())


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
