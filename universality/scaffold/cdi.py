"""The context-dependent-integration scaffold: one line attractor per context (Fig. 3).

The paper's networks integrate the context's relevant stream along an approximate line
attractor, a one-dimensional set of slow points at zero sensory input, read out by the
output and selected by the context (Fig. 3a-d); their linear dynamics (the spectrum and
the number of modes the response runs through, Fig. 3e/f) differ by architecture.

**Finding the line** (per context c, at the task's conditions: zero sensory input, context
c on). Seeds: ``n_levels`` pulses on c's relevant channel ``SENSORY[c]`` (constant
amplitudes ``m * linspace(-1, 1, n_levels)`` for one trial length from the zero state, m
the task's largest stream mean, so the integrated targets reach across ``[-R, R]``; both
signs, 0 included), then a hold at zero sensory input for ``hold`` steps (default one
trial); the states at ``n_hold_samples`` evenly spaced times of the hold, the last at its
end, are the seeds. The fast modes relax during the hold, so the seeds sit on the slow
manifold where the network keeps what it integrated. A fixed-point search with slow
points (:func:`~universality.dynamics.find_fixed_points`) runs from them. Minimising q
along an approximate line collapses it onto its few true roots, so the line's points are
the search's points *and* the seeds, admitted by two rules:

* **timescale rule**: a point is kept when its drift over one trial moves the output by
  less than ``drift_fraction = 10 %`` of the output range,
  ``|W_out (F(h) - h)| * T < 0.1 R`` (T = the task's trial length; R = :func:`output_range`,
  ``|scale| * T * m``, the largest integrated target magnitude). A point that moves the
  output by less than a tenth of its range within one trial acts as memory on the task's
  timescale;
* **visited region**: points farther from the seeds' centroid than ``outlier`` (2) times
  the farthest seed are dropped (e.g. GRU slow points at |h| ~ 14 where every gate
  saturates, which no trial visits).

**On the kept points** of each context (numbers per context ``_ctx{c}``):

* ``curve_r2``: one-dimensionality. Each state coordinate is fitted by a polynomial of
  degree ``CURVE_DEGREE`` (3) in the readout value ``y = W_out h`` (its first output,
  rescaled to [-1, 1] over the points); ``curve_r2 = 1 - sum |h - h_fit(y)|^2 / sum |h -
  mean h|^2``. A straight, curved or bent line parametrised by what it stores fits; points
  spread in 2-D do not. 0 with fewer than ``MIN_DISTINCT`` distinct readout values
  (values closer than 1e-3 R are one), where a cubic could pass through any points;
* ``readout_span``: ``(max y - min y) / R`` over the points;
* ``line_pc1``: the old straightness test, variance share of the first principal
  component (0 with fewer than 3 points), reported, no longer decisive;
* ``slow_share``: the fitted curve's tangent ``t = d h_fit / dy`` at each point against the
  *slow subspace* there, the span of the Jacobian's eigenmodes with time constant
  ``tau = 1 / |ln|lambda|| >= T / 2`` (growing modes included: a slightly unstable line
  drifts as slowly): ``|P_s t| / (|P_s t| + |P_f t|)`` with ``P_s = sum_slow r_k l_k^H``
  the spectral projector (right/left eigenvectors) and ``P_f = I - P_s``; 1 when the
  tangent lies in the slow subspace, 0 when it lies in the fast one; median over points
  (a point whose Jacobian is defective, with no left eigenvectors, has none and is skipped);
* ``top_eig`` / ``second_eig``: median |lambda_1| / |lambda_2|; ``n_slow``: median number
  of slow modes;
* selection (Mante et al. 2013), from the slow subspace: the readout gain per unit input
  that the slow modes integrate, ``|W_out P_s B e| / |scale|`` (B = dF/dx; 1 = the
  task's integration gain) for the relevant and the irrelevant channel e (medians), their
  ratio, and its sign (+1 relevant larger, -1 irrelevant larger, 0 equal);
* ``modes_90`` (Fig. 3f): the linearised readout response to a constant unit relevant
  input summed over T steps, ``W_out sum_k r_k l_k^T B e g_k`` with ``g_k = sum_{t<T}
  lambda_k^t``. Keeping modes in order of |lambda|, ``modes_90`` is the smallest number
  whose response is within 10 % of the full one, where a complex-conjugate pair counts
  as its two modes and is kept or dropped whole (a cut inside a pair would leave a
  complex, unphysical response); median over the points. ``response_curve`` (Fig. 3f):
  the response accuracy keeping m = 1, 2, ... modes (m inside a pair: the whole pair);
  ``spectrum`` (Fig. 3e): the mean sorted |lambda|.

Invariance: eigenvalues, time constants, the selection gains and ratio and ``modes_90``
are invariant to any invertible change of state coordinates (``W_out P_s B`` and the
eigenvalues are); the timescale rule and ``readout_span`` read the output only;
``curve_r2``, ``line_pc1``, ``slow_share`` and the visited-region rule use Euclidean
norms, invariant to orthogonal changes of coordinates and permutations of units.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .. import verdicts
from ..dynamics import FixedPointConfig, FixedPoints, eigendecompose, find_fixed_points, jacobians
from ..population import READOUT_WEIGHT, Population
from .base import Criterion, FigureContext, Scaffold, ScaffoldSpec, l1_distance

log = logging.getLogger(__name__)

#: Thresholds of the criteria (reasons in :data:`CRITERIA` and the module docstring).
THRESHOLDS: dict[str, float] = {
    "drift_fraction": 0.1,  # timescale rule: output drift over one trial < 0.1 R
    "span_fraction": 0.5,  # the kept points' readout span >= 0.5 R
    "curve_r2": 0.9,  # variance explained by the curve y -> h_fit(y)
    "slow_timescale": 0.5,  # slow modes: tau >= 0.5 T
    "slow_share": 0.9,  # tangent's share in the slow subspace
    "top_eig_tol": 0.02,  # | |lambda_1| - 1 | <= 0.02
    "line_pc1": 0.9,  # the old straightness test (reported only)
    "response_fraction": 0.9,  # modes_90: modes reproducing 90 % of the response
}
#: Sensory input channels (then the context channels, see ``tasks/cdi.py``); context k selects channel k.
SENSORY = (0, 1)
#: Degree of the polynomial curve h_fit(y) of the one-dimensionality test.
CURVE_DEGREE = 3
#: Fewest distinct readout values a line needs: twice the cubic's 4 coefficients, so the
#: fit leaves as many residual degrees of freedom as it uses.
MIN_DISTINCT = 2 * (CURVE_DEGREE + 1)
#: ``modes_90`` enters the dynamics signature capped at this many modes, divided by it.
MODES_CAP = 10
#: The number of slow modes enters the dynamics signature capped at this, divided by it.
SLOW_CAP = 4
_FLOOR = 1e-12  # |1 - lambda| below which g = T; smallest denominators

CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "line_attractor",
        "In both contexts, the slow points kept by the timescale rule (output drift over one trial "
        "< 0.1 R) form a line: >= 8 distinct readout values spanning >= 0.5 R, a cubic curve in the "
        "readout value explains >= 90 % of their variance, the curve's tangent has >= 90 % of its "
        "norm in the slow subspace (modes with time constant >= half a trial), the median top "
        "|lambda| is within 0.02 of 1, and the slow modes carry more of the relevant than of the "
        "irrelevant input to the readout.",
        "Fig. 3a-d: each context integrates its relevant stream along an approximate line attractor "
        "of slow points and ignores the other stream. The line is searched where the paper looks, at "
        "zero sensory input with the context on, seeded where the network keeps pulses it integrated. "
        "Timescale rule: a point that moves the output by < 10 % of its range within a trial acts as "
        "memory on the task's timescale. One-dimensional: 90 % of the variance, as the old PC1 test, "
        "but along a curve parametrised by the stored value, so curved and bent (relu) lines pass and "
        "2-D spreads fail. Span 0.5 R: a line holding memories must reach across the outputs; half the "
        "target values a trial asks to hold (|y| = |mu| R t / T, mu and t / T uniform) lie within "
        "0.19 R, about 60 % within 0.25 R, so a span of 0.5 R covers most of them, while a leaky "
        "cluster of slow points around one value spans far less. Tangent in the slow subspace: the line "
        "is a slow direction of the dynamics, not a sideways drift through fast modes; tau >= T/2 is "
        "the time constant on which a memory survives a trial, 90 % as for the curve. |lambda_1| "
        "within 0.02 of 1: time constant >= 50 steps (half the reference trial of 100 steps; "
        "1 - exp(-2/100) = 0.0198). Selection is read from all slow modes (the projector), not from "
        "r_1 alone, which is ill-conditioned when lambda_2 is near lambda_1.",
    ),
    Criterion(
        "pc1_line",
        "In both contexts, the first principal component of the kept points explains >= 90 % of their "
        "variance (at least 3 points).",
        "The old straightness test, on the same points, reported beside the line criterion so the "
        "change is visible: it fails curved and piecewise-linear lines that are one-dimensional.",
        headline=False,
    ),
)


@dataclass(frozen=True)
class CdiConfig:
    """Settings of :func:`compute` (module docstring).

    ``n_levels`` (odd, so 0 is one) pulse amplitudes ``m * linspace(-1, 1, n_levels)`` (m
    the task's ``mean_max``, its ``noise`` if that is 0) held for a trial length, then a
    hold of ``hold`` steps (default: the trial length) sampled at ``n_hold_samples``
    times; ``outlier``: the visited-region rule; ``n_spectrum``: leading sorted |lambda|
    reported; ``chunk``: members linearised at once (memory); ``fixed_points``: the
    search settings (slow points included).
    """

    n_levels: int = 13
    n_hold_samples: int = 3
    hold: int | None = None
    outlier: float = 2.0
    n_spectrum: int = 10
    chunk: int = 8
    fixed_points: FixedPointConfig = field(default_factory=lambda: FixedPointConfig(include_slow=True))

    def __post_init__(self) -> None:
        if self.n_levels < 1 or self.n_levels % 2 == 0:
            raise ValueError(f"CdiConfig.n_levels must be a positive odd number (0 is a level), got {self.n_levels}")
        for name in ("n_hold_samples", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"CdiConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hold is not None and self.hold < self.n_hold_samples:
            raise ValueError(f"CdiConfig.hold must be >= n_hold_samples, got {self.hold}")


def output_range(task: Any) -> float:
    """R, the largest integrated target magnitude: ``|scale| * n_time * m`` (m the largest
    stream mean, the noise std when that is 0)."""
    return abs(float(task.scale)) * int(task.n_time) * _amplitude(task)


def _amplitude(task: Any) -> float:
    return float(getattr(task, "mean_max", 0.0)) or float(getattr(task, "noise", 1.0))


# ---------------------------------------------------------------------- compute
def compute(population: Population, fixed_points: FixedPoints, config: CdiConfig | None = None) -> list[Scaffold]:
    """One :class:`Scaffold` per member (module docstring).

    ``fixed_points`` are those at the task's conditions ``[C=2, I]`` (each context, zero
    sensory input): their conditions are where the lines are searched afresh, from pulse
    seeds (the generic search samples a line sparsely).
    """
    cfg = CdiConfig() if config is None else config
    cond = fixed_points.conditions.to(torch.float64)
    if cond.shape != (2, population.task.input_size) or cond[:, list(SENSORY)].abs().amax() > 0:
        raise ValueError(
            "cdi scaffold: fixed_points must be found at the task's conditions (each context with zero "
            f"sensory input, [2, {population.task.input_size}]); got conditions {cond.tolist()}"
        )
    seeds = pulse_seeds(population, cond, cfg)  # [P, C, K, S]
    fp = find_fixed_points(population, conditions=cond, initial_states=seeds, config=cfg.fixed_points)
    points = torch.cat([fp.points, seeds.cpu()], 2)  # [P, C, N + K, S]
    centre = seeds.cpu().mean(2, keepdim=True)
    radius = (seeds.cpu() - centre).norm(dim=-1).amax(-1, keepdim=True)  # [P, C, 1]
    inside = (points - centre).norm(dim=-1) <= cfg.outlier * radius
    mask = torch.cat([fp.mask, torch.ones(seeds.shape[:3], dtype=torch.bool)], 2) & inside
    task = population.task
    readout = _readout_matrix(population)
    chunks = []
    for start in range(0, len(population), cfg.chunk):
        part = slice(start, start + cfg.chunk)
        sub = population.select_view(part)
        p, c, n, s = points[part].shape
        inputs = cond[None, :, None, :].expand(p, c, n, cond.shape[1])
        f, jac, jac_x = jacobians(sub, points[part].reshape(p, c * n, s).to(sub.device),
                                  inputs.reshape(p, c * n, -1).to(sub.device))
        chunks.append(line_statistics(
            points[part], mask[part], (f.cpu() - points[part].reshape(p, c * n, s)).view(p, c, n, s),
            jac.cpu().view(p, c, n, s, s), jac_x.cpu().view(p, c, n, s, -1), readout[part],
            task.n_time, output_range(task), float(getattr(task, "scale", 1.0)), cfg.n_spectrum,
        ))
    stats = {k: torch.cat([ch[k] for ch in chunks]) for k in chunks[0]}
    stats["n_found"] = fp.mask.sum(-1)
    scaffolds = [_scaffold(stats, i) for i in range(len(population))]
    log.info("cdi scaffold: %d of %d members canonical", sum(s.canonical for s in scaffolds), len(scaffolds))
    return scaffolds


def pulse_seeds(population: Population, contexts: Tensor, config: CdiConfig) -> Tensor:
    """Seeds ``[P, C, L * K, S]`` (float64): for each context row of ``contexts [C, I]``,
    the states after a pulse of each of the ``L = n_levels`` amplitudes on the context's
    relevant channel (one trial length) at ``K = n_hold_samples`` times of the hold at
    zero sensory input that follows (evenly spaced, the last at its end)."""
    task = population.task
    n_time = int(task.n_time)
    hold = config.hold if config.hold is not None else n_time
    levels = _amplitude(task) * torch.linspace(-1, 1, config.n_levels, dtype=torch.float64)
    c, i = contexts.shape
    inputs = contexts.to(torch.float64)[:, None, None, :].repeat(1, config.n_levels, n_time + hold, 1)
    for ctx in range(c):
        inputs[ctx, :, :n_time, SENSORY[ctx]] = levels[:, None]
    with torch.no_grad():
        states, _ = population.run(inputs.reshape(c * config.n_levels, n_time + hold, i))  # [P, C*L, T+H, S]
    times = [n_time + (hold * k) // config.n_hold_samples - 1 for k in range(1, config.n_hold_samples + 1)]
    picked = states[:, :, times].to(torch.float64)  # [P, C*L, K, S]
    return picked.reshape(len(population), c, -1, picked.shape[-1])


def line_statistics(
    points: Tensor,
    mask: Tensor,
    drift: Tensor,
    jacobian: Tensor,
    input_jacobian: Tensor,
    readout: Tensor,
    n_time: int,
    out_range: float,
    scale: float = 1.0,
    n_spectrum: int = 10,
) -> dict[str, Tensor]:
    """Per-member, per-context statistics of the candidate ``points [P, C, N, S]``
    (``mask [P, C, N]``; context c's relevant channel ``SENSORY[c]``) with their drift
    ``F(h) - h [P, C, N, S]``, ``jacobian`` dF/dh ``[P, C, N, S, S]`` and
    ``input_jacobian`` dF/dx ``[P, C, N, S, I]``, under ``readout [P, O, S]``, for trials
    of ``n_time`` steps, output range ``out_range`` (R) and integration gain ``scale``.

    Returns ``[P, C]`` tensors ``n_candidates``, ``n_points`` (kept), ``n_distinct``,
    ``readout_span`` (in units of R), ``curve_r2``, ``line_pc1``, ``slow_share``,
    ``top_eig``, ``second_eig``, ``n_slow``, ``selection_relevant``,
    ``selection_irrelevant``, ``selection_ratio``, ``modes_90`` (NaN where a context keeps
    no point), ``spectrum [P, C, n_spectrum']`` and ``response_curve [P, C, n_spectrum']``.
    """
    t = THRESHOLDS
    p, c, n, s = points.shape
    w = readout.to(torch.float64)
    y = torch.einsum("pos,pcns->pcno", w, points)[..., 0]
    out_drift = torch.einsum("pos,pcns->pcno", w, drift).norm(dim=-1) * n_time
    keep = mask & (out_drift < t["drift_fraction"] * out_range)
    curve = curve_fit(points, y, keep, distinct_tol=1e-3 * out_range)
    pc1 = first_component(points, keep)

    eigenvalues, right, left = eigendecompose(jacobian)
    absval = eigenvalues.abs()
    slow = absval.log().abs() <= 1 / (t["slow_timescale"] * n_time)  # [P, C, N, S]: tau >= T / 2
    tangent = curve["tangent"].to(right.dtype).unsqueeze(-1)
    on_slow = right @ (slow.unsqueeze(-1) * (left @ tangent))  # P_s t
    ps, pf = on_slow.norm(dim=(-2, -1)), (tangent - on_slow).norm(dim=(-2, -1))
    # 0 for a zero tangent; NaN (skipped by the medians) where the point has no left eigenvectors
    share = torch.where(ps + pf == 0, 0.0, ps / (ps + pf))

    wr = torch.einsum("pos,pcnsk->pcnok", w.to(right.dtype), right)  # readout of each mode
    lb = left @ input_jacobian.to(left.dtype)  # [P, C, N, S(modes), I]: each mode's input drive
    relevant = torch.tensor(SENSORY[:c]).view(1, c, 1, 1, 1).expand(p, c, n, s, 1)
    lb_rel, lb_irr = lb.gather(-1, relevant)[..., 0], lb.gather(-1, relevant.flip(1))[..., 0]
    sel_rel = (wr * (slow * lb_rel).unsqueeze(-2)).sum(-1).norm(dim=-1) / abs(scale)
    sel_irr = (wr * (slow * lb_irr).unsqueeze(-2)).sum(-1).norm(dim=-1) / abs(scale)
    k = min(n_spectrum, s)
    modes, accuracy, finite = response_modes(eigenvalues, wr, lb_rel, n_time, k)

    def med(x: Tensor) -> Tensor:
        return torch.where(keep, x.to(torch.float64), math.nan).nanmedian(-1).values

    n_points = keep.sum(-1)
    count = n_points.clamp_min(1).unsqueeze(-1)
    rel, irr = med(sel_rel), med(sel_irr)
    return {
        "n_candidates": mask.sum(-1),
        "n_points": n_points,
        "n_distinct": curve["n_distinct"],
        "readout_span": curve["span"] / out_range,
        "curve_r2": curve["r2"],
        "line_pc1": pc1,
        "slow_share": med(share),
        "top_eig": med(absval[..., 0]),
        "second_eig": med(absval[..., 1] if s > 1 else torch.zeros_like(absval[..., 0])),
        "n_slow": med(slow.sum(-1)),
        "selection_relevant": rel,
        "selection_irrelevant": irr,
        "selection_ratio": torch.where((rel == 0) & (irr == 0), 1.0, rel / irr.clamp_min(_FLOOR)),
        "modes_90": med(modes),
        "spectrum": torch.where(keep.unsqueeze(-1), absval[..., :k], 0.0).sum(2) / count,
        "response_curve": torch.where((keep & finite).unsqueeze(-1), accuracy, 0.0).sum(2) / count,
    }


def curve_fit(points: Tensor, y: Tensor, keep: Tensor, degree: int = CURVE_DEGREE,
              distinct_tol: float = 0.0) -> dict[str, Tensor]:
    """The one-dimensionality test: each coordinate of ``points [P, C, N, S]`` (those
    ``keep [P, C, N]`` marks) fitted by a polynomial of ``degree`` in ``y [P, C, N]``
    (rescaled to [-1, 1] over the kept points), by least squares.

    Returns ``r2 [P, C]`` (``1 - residual / total`` sum of squares; 0 with fewer than
    :data:`MIN_DISTINCT` distinct ``y`` values, values within ``distinct_tol`` being one,
    or no spread), ``span [P, C]`` (max - min of the kept ``y``), ``n_distinct [P, C]`` and
    ``tangent [P, C, N, S]`` (d h_fit / dy at each point's ``y``).
    """
    wgt = keep.to(points.dtype)
    any_kept = keep.any(-1)
    top = torch.where(keep, y, -math.inf).amax(-1)
    bottom = torch.where(keep, y, math.inf).amin(-1)
    span = torch.where(any_kept, top - bottom, 0.0)
    mid, half = torch.where(any_kept, (top + bottom) / 2, 0.0), (span / 2).clamp_min(1e-300)
    u = torch.where(keep, (y - mid[..., None]) / half[..., None], 0.0)
    powers = torch.arange(degree + 1, dtype=points.dtype)
    basis = u.unsqueeze(-1) ** powers * wgt.unsqueeze(-1)  # [P, C, N, d + 1], zero rows where not kept
    target = points * wgt.unsqueeze(-1)
    coef = torch.linalg.pinv(basis) @ target  # [P, C, d + 1, S]
    residual = ((target - basis @ coef) ** 2).sum((-2, -1))
    mean = target.sum(2, keepdim=True) / wgt.sum(-1).clamp_min(1)[..., None, None]
    total = (((points - mean) ** 2).sum(-1) * wgt).sum(-1)
    ordered = torch.where(keep, y, math.inf).sort(-1).values
    gaps = (ordered.diff(dim=-1) > distinct_tol) & torch.isfinite(ordered[..., 1:])
    n_distinct = any_kept.to(torch.int64) + gaps.sum(-1)
    enough = (n_distinct >= MIN_DISTINCT) & (total > 0)
    r2 = torch.where(enough, 1 - residual / total.clamp_min(1e-300), 0.0)
    slope = torch.where(powers > 0, powers * u.unsqueeze(-1) ** (powers - 1).clamp_min(0), 0.0)
    tangent = (slope @ coef) / half[..., None, None]
    return {"r2": r2, "span": span, "n_distinct": n_distinct, "tangent": tangent}


def first_component(points: Tensor, keep: Tensor) -> Tensor:
    """Explained-variance share ``[P, C]`` of the first principal component of the kept
    ``points [P, C, N, S]`` (0 with fewer than 3 points or no spread)."""
    w = keep.to(points.dtype).unsqueeze(-1)
    count = w.sum(2).clamp_min(1)
    centred = (points - (w * points).sum(2, keepdim=True) / count.unsqueeze(2)) * w
    values = torch.linalg.eigvalsh(centred.transpose(-1, -2) @ centred)
    total = values.sum(-1)
    return torch.where((keep.sum(-1) >= 3) & (total > 0), values[..., -1] / total.clamp_min(1e-300), 0.0)


def conjugate_cuts(eigenvalues: Tensor) -> Tensor:
    """``[..., S]`` bool: True at index m when keeping modes ``0..m`` splits no
    complex-conjugate pair (as many kept eigenvalues above the real axis as below)."""
    im = eigenvalues.imag
    tol = 1e-12 * eigenvalues.abs().clamp_min(1)
    return ((im > tol).to(torch.int64) - (im < -tol).to(torch.int64)).cumsum(-1) == 0


def response_modes(eigenvalues: Tensor, wr: Tensor, lb_rel: Tensor, horizon: int,
                   k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The linearised readout response to a constant unit relevant input over ``horizon``
    steps, mode by mode (``eigenvalues [..., S]`` by |lambda| descending, each mode's
    readout ``wr [..., O, S]`` and input drive ``lb_rel [..., S]``; gain ``(1 - lambda^T) /
    (1 - lambda)``, T where lambda ~ 1). Returns ``modes [...]`` (float64: the fewest modes,
    conjugate pairs whole, whose response is within ``1 - response_fraction`` of the full
    one), ``accuracy [..., k]`` (``1 - |partial - full| / |full|`` keeping m = 1..k modes,
    a split pair kept whole) and ``finite [...]``."""
    s = eigenvalues.shape[-1]
    lam = eigenvalues
    near_one = (1 - lam).abs() < _FLOOR
    gain = torch.where(near_one, torch.full_like(lam, horizon), (1 - lam**horizon) / torch.where(near_one, 1, 1 - lam))
    partial = (wr * (lb_rel * gain).unsqueeze(-2)).cumsum(-1).real  # [..., O, S]: top-m modes kept
    full = partial[..., -1].norm(dim=-1, keepdim=True)
    err = (partial - partial[..., -1:]).norm(dim=-2)  # [..., S]
    cuts = conjugate_cuts(eigenvalues)
    ok = cuts & (err <= (1 - THRESHOLDS["response_fraction"]) * full)
    finite = torch.isfinite(partial).all(-1).all(-1)
    modes = torch.where(finite, 1 + ok.to(torch.uint8).argmax(-1), s).to(torch.float64)
    index = torch.arange(s).expand_as(cuts)
    nearest_cut = torch.where(cuts, index, s - 1).flip(-1).cummin(-1).values.flip(-1)  # next cut at or after m
    accuracy = (1 - err.gather(-1, nearest_cut) / full.clamp_min(_FLOOR)).clamp(0, 1)[..., :k]
    return modes, accuracy, finite


def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L1 distance between topology signatures: ``u [N, D], v [M, D] -> [N, M]``."""
    return l1_distance(u, v)


# ---------------------------------------------------------------------- helpers
def _readout_matrix(population: Population) -> Tensor:
    """``W_out`` over the whole state, ``[P, O, S]`` (zeros past the first H entries)."""
    w = population.params[READOUT_WEIGHT].detach().to("cpu", torch.float64)
    return torch.nn.functional.pad(w, (0, population.state_size - population.hidden_size))


def context_flags(per: Mapping[str, Sequence[float]], c: int) -> dict[str, bool | int]:
    """Context ``c``'s discrete verdicts from its numbers (lists per context):
    ``present`` (>= MIN_DISTINCT distinct readout values spanning >= span_fraction R),
    ``one_dimensional``, ``slow_tangent``, ``integrates`` (|lambda_1| near 1),
    ``selection_sign`` (+1 / 0 / -1), ``pc1``, ``line``."""
    t = THRESHOLDS

    def at(key: str) -> float:
        value = float(per[key][c])
        return value if math.isfinite(value) else math.nan

    present = at("n_distinct") >= MIN_DISTINCT and at("readout_span") >= t["span_fraction"]
    rel, irr = at("selection_relevant"), at("selection_irrelevant")
    sign = 0 if not (rel == rel and irr == irr) or rel == irr else (1 if rel > irr else -1)
    flags: dict[str, bool | int] = {
        "present": present,
        "one_dimensional": present and at("curve_r2") >= t["curve_r2"],
        "slow_tangent": present and at("slow_share") >= t["slow_share"],
        "integrates": abs(at("top_eig") - 1) <= t["top_eig_tol"],
        "selection_sign": sign,
        "pc1": at("line_pc1") >= t["line_pc1"],
    }
    flags["line"] = bool(flags["one_dimensional"] and flags["slow_tangent"] and flags["integrates"] and sign > 0)
    return flags


def _scaffold(stats: Mapping[str, Tensor], i: int) -> Scaffold:
    """Member ``i``'s :class:`Scaffold` from :func:`line_statistics`' tensors."""
    per = {k: v[i].tolist() for k, v in stats.items()}  # per context
    ctx = range(len(per["curve_r2"]))
    numbers: dict[str, Any] = {f"{k}_ctx{c}": per[k][c] for k in per for c in ctx}
    flags = [context_flags(per, c) for c in ctx]
    numbers.update({f"{name}_ctx{c}": flags[c][name] for name in flags[0] for c in ctx})
    deviation = [abs(1 - t) if t == t else math.inf for t in per["top_eig"]]
    worst = int(np.argmax(deviation))

    def least(key: str) -> float:
        return float(np.nanmin(per[key])) if not np.all(np.isnan(per[key])) else math.nan

    def most(key: str) -> float:
        return float(np.nanmax(per[key])) if not np.all(np.isnan(per[key])) else math.nan

    numbers.update({
        "curve_r2": least("curve_r2"),
        "readout_span": least("readout_span"),
        "line_pc1": least("line_pc1"),
        "slow_share": least("slow_share"),
        "top_eig": per["top_eig"][worst],
        "second_eig": most("second_eig"),
        "selection_relevant": least("selection_relevant"),
        "selection_irrelevant": most("selection_irrelevant"),
        "selection_ratio": least("selection_ratio"),
        "modes_90": most("modes_90"),
        "spectrum": np.mean(per["spectrum"], axis=0).tolist(),
        "response_curve": np.mean(per["response_curve"], axis=0).tolist(),
    })
    canonical, criteria = SPEC.judge({
        "line_attractor": all(f["line"] for f in flags),
        "pc1_line": all(f["pc1"] for f in flags),
    })

    def capped(value: float, cap: int) -> float:
        return min(value, cap) / cap if value == value else 0.0

    topology = np.array([
        value
        for c in ctx
        for value in (float(flags[c]["present"]), float(flags[c]["one_dimensional"]),
                      float(flags[c]["slow_tangent"]), float(flags[c]["selection_sign"]))
    ])
    ratio = np.asarray(per["selection_ratio"], dtype=np.float64)
    log_ratio = np.clip(np.log10(np.maximum(ratio, 1e-300)), -2, 2) / 4
    # the number of slow modes is a count of eigenvalues near 1: linear dynamics (the paper's
    # Fig. 3e/f difference between architectures), so it belongs here, not in the topology
    dynamics = np.array([
        value
        for c in ctx
        for value in (per["top_eig"][c], per["second_eig"][c], log_ratio[c], capped(per["modes_90"][c], MODES_CAP),
                      capped(per["n_slow"][c], SLOW_CAP))
    ])
    # a context without kept points has no linearisation: its entries are 0 (documented fill)
    return Scaffold("cdi", canonical, criteria, numbers, topology, np.nan_to_num(dynamics, nan=0.0))


# ---------------------------------------------------------------------- claims
#: Architectures pooled as "gated" in the ``cdi_modes`` claim.
GATED = ("gru", "lstm", "ugrnn")


def extra_claims(rows: Sequence[Any], scaffolds: Mapping[int, Mapping[str, Any]]) -> list[verdicts.Claim]:
    """``cdi_modes`` (Fig. 3f: vanilla networks integrate through fewer modes than gated
    ones): ``modes_90`` of the passed vanilla members against the passed gated members
    (gru, lstm, ugrnn pooled), one-sided Mann-Whitney U (:func:`universality.verdicts.rank_p`).
    ``pass`` when p < ``ALPHA``; ``fail`` when the vanilla median is >= the gated median;
    ``inconclusive`` otherwise or when either side has fewer than ``MIN_MEMBERS``."""
    modes: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        value = scaffolds.get(r.member, {}).get("modes_90") if r.task == "cdi" and r.passed else None
        if value is not None and math.isfinite(value):
            side = "vanilla" if r.arch == "vanilla" else "gated" if r.arch in GATED else None
            if side:
                modes[side].append(float(value))
    if not any(r.task == "cdi" for r in rows):
        return []
    vanilla, gated = modes["vanilla"], modes["gated"]
    condition = f"one-sided Mann-Whitney U p < {verdicts.ALPHA} (vanilla fewer modes than gated)"
    detail: dict[str, Any] = {"vanilla": vanilla, "gated": gated,
                              "median_vanilla": float(np.median(vanilla)) if vanilla else math.nan,
                              "median_gated": float(np.median(gated)) if gated else math.nan}
    n = len(vanilla) + len(gated)
    if min(len(vanilla), len(gated)) < verdicts.MIN_MEMBERS:
        return [verdicts.Claim("cdi_modes", "vanilla vs gated", math.nan, condition, "inconclusive", n,
                               detail={**detail, "note": f"fewer than {verdicts.MIN_MEMBERS} networks on a side"})]
    p = verdicts.rank_p(vanilla, gated)
    verdict: verdicts.Verdict = ("pass" if p < verdicts.ALPHA
                                 else "fail" if detail["median_vanilla"] >= detail["median_gated"]
                                 else "inconclusive")
    return [verdicts.Claim("cdi_modes", "vanilla vs gated", p, condition, verdict, n, detail=detail)]


# ---------------------------------------------------------------------- figures
def figures(ctx: FigureContext) -> list[str]:
    """Sorted spectra (Fig. 3e), response vs modes retained (Fig. 3f), the modes table, and
    each network's one-dimensionality (curve R^2) against the old PC1 share."""
    from .. import plots  # matplotlib only here

    passed = [r for r in ctx.passed if getattr(r, "task", "cdi") == "cdi"]
    lines: list[str] = []
    for key, draw, name, caption in (("spectrum", plots.spectra, "cdi_spectra", "sorted eigenvalue spectra"),
                                     ("response_curve", plots.mode_curves, "cdi_mode_curves",
                                      "linearised response vs modes retained")):
        by_arch = _curves_by_arch(passed, ctx.scaffolds, key)
        if by_arch:
            draw(by_arch, ctx.folder / f"{name}.png")
            lines += [f"![{caption}](figures/{name}.png)", ""]
    modes: dict[str, list[float]] = defaultdict(list)
    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in passed:
        numbers = ctx.scaffolds.get(r.member, {})
        value = numbers.get("modes_90")
        if value is not None and np.isfinite(value):
            modes[r.arch].append(value)
        pc1, r2 = numbers.get("line_pc1"), numbers.get("curve_r2")
        if pc1 is not None and r2 is not None and np.isfinite(pc1) and np.isfinite(r2):
            scores[f"{r.arch}/{r.activation}"].append((pc1, r2))
    if scores:
        plots.cdi_line_scores({k: np.array(v) for k, v in scores.items()}, THRESHOLDS["line_pc1"],
                              THRESHOLDS["curve_r2"], ctx.folder / "cdi_line_scores.png")
        lines += ["![one-dimensionality: curve R^2 vs PC1 share](figures/cdi_line_scores.png)", ""]
    if modes:
        lines += ["| architecture | modes for 90% of the linearised response (median) | networks |", "|---|---|---|"]
        lines += [f"| {a} | {np.median(v):g} | {len(v)} |" for a, v in sorted(modes.items())]
        lines += [""]
    return lines


def _curves_by_arch(passed: Sequence[Any], scaffolds: Mapping[int, Mapping[str, Any]], key: str,
                    width: int = 10) -> dict[str, np.ndarray]:
    """Per architecture, the ``[N_nets, K]`` stack of each passed member's scaffold list
    ``key`` (first ``width`` values, cut to the shortest)."""
    lists: dict[str, list[list[float]]] = defaultdict(list)
    for r in passed:
        values = scaffolds.get(r.member, {}).get(key)
        if values:
            lists[r.arch].append(list(values)[:width])
    if not lists:
        return {}
    k = min(len(v) for vs in lists.values() for v in vs)
    return {a: np.array([v[:k] for v in vs]) for a, vs in lists.items()}


SPEC = ScaffoldSpec("cdi", compute, distance, CRITERIA, extra_claims=extra_claims, figures=figures,
                    claim="cdi_line_attractor")
