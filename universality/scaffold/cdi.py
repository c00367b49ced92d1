"""The context-dependent-integration scaffold: one line attractor per context (Fig. 3).

The paper's networks integrate the context's relevant stream along an approximate line
attractor, a one-dimensional set of slow points at zero sensory input, read out by the
output and selected by the context (Fig. 3a-d); their linear dynamics (the spectrum and
the number of modes the response runs through, Fig. 3e/f) differ by architecture. What a
line attractor *does* is hold what it integrated; this module tests that first and then
looks for the line.

**One time scale** (:class:`Timescales`). T is the task's trial length, R its output range
(``task.output_range``, the largest integrated mean). Every time-scale threshold derives
from ``tau* = T / ln(1 / KEPT) = T / ln 1.25`` (4.48 T), the time constant of a leaky
integrator that keeps exactly ``KEPT = 0.8`` of its value over one trial (the task's pass
threshold is the error of that integrator):

* hold test: the kept fraction after a hold of H steps lies in ``[exp(-H / tau*),
  exp(H / tau*)]``, ``[0.8, 1.25]`` for the default hold H = T;
* drift rule: a point is slow when its readout drifts per step by at most ``|y - y0| /
  tau*`` (y0 the readout where nothing is stored), the drift of the leakiest (or fastest
  growing) linear line the hold test passes, at that stored value;
* ``integrates``: ``|ln |lambda_1|| <= 1 / tau*``, the same bound on the top linear mode;
* slow modes: ``|ln |lambda|| <= 1 / tau_slow`` with ``tau_slow = T / ln(1 / (1 -
  exp(-T / tau*))) = T / ln 5`` (0.62 T): a faster mode keeps at most ``1 - 0.8 = 0.2``
  of what it holds after one trial, less than the hold test's tolerance, so it cannot
  carry a held value; the slow modes (time constant above 0.62 T, 7 times below tau*)
  can. The cutoff sits well below tau*, so the top mode of a line that passes the hold is
  far inside the slow subspace (no flipping in and out at the ``integrates`` boundary);
* irrelevant stream: it may move the output by at most ``1 - exp(-T / tau*) = 0.2`` of
  the pulsed value, the most the hold test lets a held value of that size move.

For a linear line of time constant tau the hold test, the drift rule and ``integrates``
change verdict together at tau = tau*.

**Hold test** (:func:`hold_probes`, :func:`hold_test`; the headline, like the flip-flop's
functional memory). Per context c, from the zero state, the task's noise-free probe
trials (``task.hold_inputs``): a constant pulse of ``D = min(max_stimulus, T)`` steps
whose integral is ``v``, for ``v in R * linspace(-1, 1, n_levels)`` (the longest stimulus
the task trains, so the largest value R is reached at the largest stream mean), then
``H`` steps (default T) at zero sensory input; once on the relevant stream (``stream =
c``), once on the irrelevant one (``stream = 1 - c``); float64; y is the network's
output (first channel). Per level: ``kept = y(end of hold) / y(end of stimulus)``
(relevant probe) and ``moved = max_t |y(t) - y_0(t)| / |v|`` over every step of the
irrelevant probe, where ``y_0`` is the output of the probe of value 0 (nothing pulsed):
the network's resting output (an offset, or the transient from the zero state as the
context switches on) is not something the irrelevant stream moved. Context c holds when
every level with ``|v| >= HOLD_FLOOR R`` (0.15 R) has ``kept`` within the bounds and
``moved <= 0.2``. The floor: the task's pass threshold allows an RMS output error of
``sqrt(0.002 var(target)) = 0.0144 R`` (default task), an error (an offset of the output,
say) that alone can move the kept fraction of a value
below ``0.0144 R / 0.2 = 0.072 R`` out of the bounds; the floor is twice that, so a
network with the tolerated error spends at most half the hold's tolerance on it. Every
judged level counts, both signs: a line attractor holds every value it integrates.

**Finding the line** (per context c, at the task's conditions: zero sensory input, context
c on). Seeds: the relevant probes' states at ``n_hold_samples`` evenly spaced times of the
hold (the last at its end); the fast modes relax during the hold, so the seeds sit where
the network keeps what it integrated. A fixed-point search with slow points
(:func:`~universality.dynamics.find_fixed_points`) runs from them; the line's candidate
points are the search's points and the seeds, minus those farther from the seeds'
centroid than ``outlier`` (2) times the farthest seed (e.g. GRU slow points at |h| ~ 14
where every gate saturates, which no trial visits). The **drift rule** above keeps the
slow ones; y = W_out h (first output), y0 that of the zero-value probe's state at the end
of its hold; values within ``DISTINCT R`` (1e-3 R) of y0 count as y0.

**On the kept points** of each context (numbers per context ``_ctx{c}``):

* ``curve_r2``: one-dimensionality. Each state coordinate is fitted by a polynomial of
  degree ``CURVE_DEGREE`` (3) in the readout y (rescaled to [-1, 1] over the points);
  ``curve_r2 = 1 - sum |h - h_fit(y)|^2 / sum |h - mean h|^2``. A straight, curved or
  bent line parametrised by what it stores fits; points spread in 2-D do not. 0 with
  fewer than ``MIN_DISTINCT`` distinct readout values (closer than ``DISTINCT R`` are
  one), where a cubic could pass through any points;
* ``readout_span``: ``(max y - min y) / R``; ``signs``: how many signs (0-2) of stored
  values ``y - y0`` of at least ``HOLD_FLOOR R`` the points reach;
* ``line_pc1``: the old straightness test, variance share of the first principal
  component (0 with fewer than 3 points), reported;
* ``tangent_cos``: the local tangent at each point, the least-squares slope dh/dy of the
  kept points whose readout lies within ``WINDOW_LEVELS`` (1.5) level spacings (``2R /
  (n_levels - 1)``) of the point's (neighbouring points along the line ordered by
  readout), against the slow right-eigenspace there (span of the right eigenvectors of
  the slow modes): ``cos`` of the angle between them, ``|Q Q^H t| / |t|`` with Q an
  orthonormal basis of that span; median over points (a point whose window holds a
  single readout value has no tangent and is skipped; a point without slow modes scores
  0). 1.5 spacings reach the neighbouring levels' points when a hold keeps the written
  values within [0.8, 1.25] (spacing at most 1.25) and not the next-but-one (at least 1.6);
* ``top_eig`` / ``second_eig``: median |lambda_1| / |lambda_2|; ``n_slow``: median number
  of slow modes; ``n_unstable``: median number of modes growing faster than the slow
  cutoff (``ln |lambda| > 1 / tau_slow``);
* selection (Mante et al. 2013), from the slow subspace: the readout gain per unit input
  that the slow modes integrate, ``|W_out P_s B e| / |scale|`` (``P_s = sum_slow r_k
  l_k^H`` the spectral projector, B = dF/dx; 1 = the task's integration gain) for the
  relevant and the irrelevant channel e (medians; a point whose Jacobian is defective,
  with no left eigenvectors, is skipped), their ratio, and its sign (+1 relevant larger,
  -1 irrelevant larger, 0 equal);
* ``modes_90`` (Fig. 3f): the linearised readout response to a constant unit relevant
  input summed over T steps, ``W_out sum_k r_k l_k^T B e g_k`` with ``g_k = sum_{t<T}
  lambda_k^t``. Keeping modes in order of |lambda|, ``modes_90`` is the smallest number
  whose response is within 10 % of the full one, where a complex-conjugate pair counts
  as its two modes and is kept or dropped whole (a cut inside a pair would leave a
  complex, unphysical response); median over the points. ``response_curve`` (Fig. 3f):
  the response accuracy keeping m = 1, 2, ... modes (m inside a pair: the whole pair);
  ``spectrum`` (Fig. 3e): the mean sorted |lambda|.

**Signatures.** ``topology [4 C]``, per context: ``dimension`` of the slow set (0: no
extended slow set, i.e. fewer than ``MIN_DISTINCT`` distinct values or a span below
``span_fraction R``; 1: a curve, ``curve_r2 >= 0.9``; 2: spread beyond a curve),
``signs`` (0-2), ``n_unstable`` (capped at ``UNSTABLE_CAP``), selection sign: what the
scaffold is, not whether it met the criteria (no hold fraction, no tangent angle);
:func:`distance` is L1. ``dynamics [6 C]``, per context: ``[has kept points, median
|lambda_1|, median |lambda_2|, log10 selection ratio clipped to +-2 / 4, modes_90 / 10
(capped), n_slow / 4 (capped)]``; a context without kept points has no linearisation:
its flag is 0 and its entries are 0 and never compared. :func:`dynamics_distance` is the
mean over the contexts *both* networks have of the per-context L1 difference of the
entries; a pair that shares no context is ``UNSHARED`` (5, one unit per entry) apart, so
networks without lines are nobody's particular neighbours (a missing line is a scaffold
fact, read by the topology, not a difference of linear dynamics). It is not a metric.

Invariance: eigenvalues, time constants, the selection gains and ratio and ``modes_90``
are invariant to any invertible change of state coordinates (``W_out P_s B`` and the
eigenvalues are); the hold test, the drift rule, ``readout_span`` and ``signs`` read the
output only; ``curve_r2``, ``line_pc1``, ``tangent_cos`` and the visited-region rule use
Euclidean norms, invariant to orthogonal changes of coordinates and permutations of units.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..dynamics import FixedPointConfig, FixedPoints, eigendecompose, find_fixed_points, jacobians
from ..dynamics.linearise import float64_params
from ..population import READOUT_WEIGHT, Population
from ..tasks.cdi import ContextIntegration
from .base import Criterion, Scaffold, ScaffoldSpec, StoredScaffold, l1_distance

log = logging.getLogger(__name__)

#: The hold test's bound: a held value keeps between KEPT and 1 / KEPT of itself over one
#: trial. The one time scale tau* = T / ln(1 / KEPT) and every time-scale threshold derive
#: from it (:class:`Timescales`).
KEPT = 0.8
#: Smallest |value| (in units of R) the hold test judges: twice 0.072 R, below which the
#: task's tolerated RMS error (0.0144 R) alone can move a kept fraction out of its bounds.
HOLD_FLOOR = 0.15
#: Readout values closer than this (in units of R) are one value.
DISTINCT = 1e-3
#: Half-width of the local-tangent window, in spacings of the probed levels.
WINDOW_LEVELS = 1.5
#: Thresholds of the line criteria that are not time scales (reasons in :data:`CRITERIA`).
THRESHOLDS: dict[str, float] = {
    "span_fraction": 1.0,  # the kept points' readout span >= 1.0 R
    "curve_r2": 0.9,  # variance explained by the curve y -> h_fit(y)
    "tangent_cos": 1 / math.sqrt(2),  # local tangent within 45 degrees of the slow right-eigenspace
    "line_pc1": 0.9,  # the old straightness test (reported only)
    "response_fraction": 0.9,  # modes_90: modes reproducing 90 % of the response
}
#: Degree of the polynomial curve h_fit(y) of the one-dimensionality test.
CURVE_DEGREE = 3
#: Fewest distinct readout values a line needs: twice the cubic's 4 coefficients, so the
#: fit leaves as many residual degrees of freedom as it uses.
MIN_DISTINCT = 2 * (CURVE_DEGREE + 1)
#: ``modes_90`` enters the dynamics signature capped at this many modes, divided by it.
MODES_CAP = 10
#: The number of slow modes enters the dynamics signature capped at this, divided by it.
SLOW_CAP = 4
#: The number of fast-growing modes enters the topology signature capped at this.
UNSTABLE_CAP = 2
#: Entries per context of the dynamics signature after its flag; also the distance of two
#: networks that share no context with kept points (one unit per entry).
DYNAMICS_ENTRIES = 5
UNSHARED = float(DYNAMICS_ENTRIES)
_FLOOR = 1e-12  # |1 - lambda| below which g = T; smallest denominators


@dataclass(frozen=True)
class Timescales:
    """Every time-scale threshold, from one ``tau* = T / ln(1 / KEPT)`` (module docstring).

    ``n_time``: T, the task's trial length (steps). All rates are per step.
    """

    n_time: int

    @property
    def tau_star(self) -> float:
        """tau*, the time constant of the leaky integrator that keeps KEPT over one trial."""
        return self.n_time / math.log(1 / KEPT)

    def hold_bounds(self, hold: int) -> tuple[float, float]:
        """The kept fraction a hold of ``hold`` steps allows: ``exp(-+hold / tau*)``."""
        return math.exp(-hold / self.tau_star), math.exp(hold / self.tau_star)

    @property
    def rate(self) -> float:
        """``1 / tau*``: the drift rule's relative drift per step and the bound on ``|ln |lambda_1||``."""
        return 1 / self.tau_star

    @property
    def tolerance(self) -> float:
        """``1 - exp(-T / tau*)`` (0.2): what one trial's hold may take from a held value;
        a mode keeping less is fast, and the irrelevant stream may move the output by this
        fraction of the pulsed value."""
        return 1 - math.exp(-self.n_time / self.tau_star)

    @property
    def tau_slow(self) -> float:
        """``T / ln(1 / tolerance)`` (T / ln 5): modes with a longer time constant are slow."""
        return self.n_time / math.log(1 / self.tolerance)


CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "hold",
        f"In both contexts, every value v with |v| >= {HOLD_FLOOR} R among the probe values R * linspace(-1, 1, "
        "n_levels) (13 by default), "
        "integrated from the zero state by a noise-free pulse on the relevant stream (the task's longest stimulus), "
        f"is held at zero sensory input for one trial: y(end of hold) / y(end of stimulus) in [{KEPT}, {1 / KEPT:g}] "
        "(y the network's output); and the same pulses on the irrelevant stream move the output "
        f"by at most {1 - KEPT:.1f} |v| at every step from where it is with nothing pulsed (float64).",
        "What a line attractor does (Fig. 3): it keeps the value it integrated and ignores the other stream. "
        f"The bounds are the one time scale tau* = T / ln(1 / {KEPT}) = 4.5 T: a leaky integrator with tau* keeps "
        f"{KEPT} of its value over a trial, and the task's pass threshold is that integrator's error, so a network "
        "that holds less is leakier than the task allows; 1.25 is the same rate of growth. The irrelevant stream "
        f"may move the output by {1 - KEPT:.1f} of the pulsed value, the most the hold lets a held value of that "
        "size move; measured from the output with nothing pulsed, because the network's resting output is not "
        f"the stream's doing. Levels below {HOLD_FLOOR} R are not judged: the task's tolerated RMS error "
        "(0.0144 R at its "
        f"pass threshold) alone could move their fraction out of the bounds below 0.072 R; {HOLD_FLOOR} R is "
        "twice that. Every judged level counts, both signs: a line attractor holds every value it integrates.",
    ),
    Criterion(
        "one_dimensional",
        "In both contexts, the slow points (readout drift per step at most |y - y0| / tau*) form a line along a "
        f"slow direction: >= {MIN_DISTINCT} distinct readout values spanning >= {THRESHOLDS['span_fraction']:g} R, "
        f"a cubic curve in the readout explains >= {THRESHOLDS['curve_r2']:.0%} of their variance, and the median "
        "local tangent (slope over the points within 1.5 level spacings) lies within 45 degrees of the slow "
        "right-eigenspace (modes with time constant >= T / ln 5).",
        "Fig. 3a-d: the network integrates along a one-dimensional set of slow points. Drift rule: a point drifts "
        "no faster than the leakiest line the hold test passes (tau*), at its stored value y - y0, so a linear "
        "line is kept exactly when it holds. Span R: half the range of written values [-R, R]; a line that holds "
        "them keeps points up to 0.8 of the largest on both sides (span 1.6 R at unit gain), a cluster of slow "
        "points around one value far less. One-dimensional: 90 % of the variance along a curve parametrised by "
        "the stored value, so curved and bent (ReLU) lines pass and 2-D spreads fail. Tangent: the line is a "
        "slow direction of the dynamics, not a sideways drift through fast modes; within 45 degrees means nearer "
        "the slow subspace than its orthogonal complement, and a window straddling the bend of a piecewise-linear "
        "line averages the two pieces' directions, which for bends up to 90 degrees stays within 45 degrees of "
        "each. Slow modes keep more than 0.2 of a value over a trial (the hold's tolerance); the cutoff sits 7 "
        "times below tau*, so the top mode of a line that holds is never near it. The tangent is local: one "
        "global cubic's derivative mis-measures piecewise-linear lines.",
    ),
    Criterion(
        "selection",
        "In both contexts, the slow modes carry more of the relevant than of the irrelevant input to the readout "
        "(median |W_out P_s B e| over the slow points, P_s the spectral projector on the slow modes).",
        "Mante et al. (2013) and Fig. 3: the context selects which stream the line integrates, visible in the "
        "linearisation as the input the slow modes pass to the readout. Read from all slow modes (the "
        "projector), not from r_1 alone, which is ill-conditioned when lambda_2 is near lambda_1.",
    ),
    Criterion(
        "integrates",
        "In both contexts, the median top |lambda| over the slow points satisfies |ln |lambda_1|| <= 1 / tau*.",
        "The hold test's bound on the linearisation: a linear mode with |ln |lambda|| = 1 / tau* keeps exactly "
        f"{KEPT} (or grows to {1 / KEPT:g}) over a trial. Reported beside the hold test, which measures the same "
        "time scale on the network itself.",
        headline=False,
    ),
    Criterion(
        "pc1_line",
        "In both contexts, the first principal component of the slow points explains >= 90 % of their variance "
        "(at least 3 points).",
        "The old straightness test, on the same points, reported beside the line criterion so the change is "
        "visible: it fails curved and piecewise-linear lines that are one-dimensional.",
        headline=False,
    ),
)


@dataclass(frozen=True)
class CdiConfig:
    """Settings of :func:`compute` (module docstring).

    ``n_levels`` (odd, >= 3, so 0 is one) probe values ``R * linspace(-1, 1, n_levels)``;
    a hold of ``hold`` steps (default: the trial length) sampled at ``n_hold_samples``
    times for the seeds; ``outlier``: the visited-region rule; ``n_spectrum``: leading
    sorted |lambda| reported; ``chunk``: members linearised at once (memory);
    ``fixed_points``: the search settings (slow points included).
    """

    n_levels: int = 13
    n_hold_samples: int = 3
    hold: int | None = None
    outlier: float = 2.0
    n_spectrum: int = 10
    chunk: int = 8
    fixed_points: FixedPointConfig = field(default_factory=lambda: FixedPointConfig(include_slow=True))

    def __post_init__(self) -> None:
        if self.n_levels < 3 or self.n_levels % 2 == 0:
            raise ValueError(f"CdiConfig.n_levels must be an odd number >= 3 (0 is a level), got {self.n_levels}")
        for name in ("n_hold_samples", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"CdiConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hold is not None and self.hold < self.n_hold_samples:
            raise ValueError(f"CdiConfig.hold must be >= n_hold_samples, got {self.hold}")


# ---------------------------------------------------------------------- compute
def compute(population: Population, fixed_points: FixedPoints, config: CdiConfig | None = None) -> list[Scaffold]:
    """One :class:`Scaffold` per member (module docstring).

    ``fixed_points`` are those at the task's conditions ``[C=2, I]`` (each context, zero
    sensory input): their conditions are where the lines are searched afresh, from the
    hold probes' states (the generic search samples a line sparsely).
    """
    cfg = CdiConfig() if config is None else config
    task = _cdi_task(population)
    cond = fixed_points.conditions.to(torch.float64)
    if cond.shape != (2, task.input_size) or cond[:, list(task.SENSORY)].abs().amax() > 0:
        raise ValueError(
            "cdi scaffold: fixed_points must be found at the task's conditions (each context with zero "
            f"sensory input, [2, {task.input_size}]); got conditions {cond.tolist()}"
        )
    times = Timescales(int(task.n_time))
    out_range = float(task.output_range)
    probes = hold_probes(population, cfg)
    held = hold_test(probes["outputs"], probes["values"], probes["n_stimulus"], out_range, times)
    seeds = probes["seeds"]  # [P, C, K, S]
    fp = find_fixed_points(population, conditions=cond, initial_states=seeds, config=cfg.fixed_points)
    points = torch.cat([fp.points, seeds], 2)  # [P, C, N + K, S]
    centre = seeds.mean(2, keepdim=True)
    radius = (seeds - centre).norm(dim=-1).amax(-1, keepdim=True)  # [P, C, 1]
    inside = (points - centre).norm(dim=-1) <= cfg.outlier * radius
    mask = torch.cat([fp.mask, torch.ones(seeds.shape[:3], dtype=torch.bool)], 2) & inside
    readout = _readout_matrix(population)
    window = WINDOW_LEVELS * 2 * out_range / (cfg.n_levels - 1)
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
            jac.cpu().view(p, c, n, s, s), jac_x.cpu().view(p, c, n, s, -1), readout[part], probes["rest"][part],
            times, out_range, window, float(task.scale), task.SENSORY, cfg.n_spectrum,
        ))
    stats = {k: torch.cat([ch[k] for ch in chunks]) for k in chunks[0]}
    stats.update(held)
    stats["n_found"] = fp.mask.sum(-1)
    scaffolds = [_scaffold(stats, i, times) for i in range(len(population))]
    log.info("cdi scaffold: %d of %d members canonical, %d hold in both contexts",
             sum(s.canonical for s in scaffolds), len(scaffolds), sum(s.criteria["hold"] for s in scaffolds))
    return scaffolds


def hold_probes(population: Population, config: CdiConfig) -> dict[str, Any]:
    """The hold probes (module docstring), run from the zero state in float64.

    Returns ``outputs [P, C, 2, L, D + H]`` (first readout channel; axis 2: the relevant,
    then the irrelevant stream; L = ``n_levels`` values ``values [L]`` = R *
    linspace(-1, 1, L), D = ``n_stimulus`` stimulus steps, H hold steps), ``seeds [P, C, L
    * K, S]`` (the relevant probes' states at K = ``n_hold_samples`` evenly spaced hold
    times, the last at its end) and ``rest [P, C, S]`` (the zero-value relevant probe's
    state at the end of its hold).
    """
    task = _cdi_task(population)
    n_time = int(task.n_time)
    n_stimulus = min(int(task.max_stimulus), n_time)
    hold = config.hold if config.hold is not None else n_time
    values = float(task.output_range) * torch.linspace(-1, 1, config.n_levels, dtype=torch.float64)
    inputs = torch.stack([
        torch.stack([task.hold_inputs(values, ctx, stream, n_stimulus, hold) for stream in (ctx, 1 - ctx)])
        for ctx in range(2)
    ]).to(population.device, torch.float64)  # [C, 2, L, D + H, I]
    c, _, n_levels, steps, n_in = inputs.shape
    flat = inputs.reshape(-1, steps, n_in).expand(len(population), -1, -1, -1)  # [P, B, D + H, I]
    params = {name: v.detach().to(torch.float64) for name, v in population.params.items()}
    cell_params = float64_params(population)
    times = [n_stimulus + (hold * k) // config.n_hold_samples - 1 for k in range(1, config.n_hold_samples + 1)]
    h = population.initial_state(flat.shape[1], torch.float64)
    outputs, sampled = [], []
    with torch.no_grad():
        for t in range(steps):
            h = population.step(flat[:, :, t], h, cell_params)
            outputs.append(population.readout(h, params)[..., 0])
            if t in times:
                sampled.append(h)
    p, s = len(population), h.shape[-1]
    states = torch.stack(sampled, 2).view(p, c, 2, n_levels, len(times), s)[:, :, 0].cpu()  # relevant probes
    return {
        "outputs": torch.stack(outputs, -1).view(p, c, 2, n_levels, steps).cpu(),
        "values": values,
        "n_stimulus": n_stimulus,
        "seeds": states.reshape(p, c, n_levels * len(times), s),
        "rest": states[:, :, n_levels // 2, -1],
    }


def hold_test(outputs: Tensor, values: Tensor, n_stimulus: int, out_range: float,
              timescales: Timescales) -> dict[str, Tensor]:
    """The hold verdict from the probes' ``outputs [P, C, 2, L, D + H]`` (axis 2: relevant,
    irrelevant stream) at ``values [L]``.

    Per level, ``kept`` (relevant probe: the output at the end of the hold over the output
    at the end of the stimulus, step ``n_stimulus - 1``), ``moved`` (irrelevant probe: the
    largest |output - baseline| over all steps / |v|, the baseline being the output of the
    probe of value 0, which pulses nothing: what the stream itself moves, not the
    network's resting output) and ``gain`` (relevant output at the end of the
    stimulus / v). Returns ``[P, C]`` tensors over the levels with |v| >= HOLD_FLOOR *
    ``out_range``: ``held`` (every such level has ``kept`` within
    ``timescales.hold_bounds(H)`` and ``moved <= timescales.tolerance``; NaN fails),
    ``kept_min``, ``kept_max``, ``moved`` (largest) and ``gain`` (median).
    """
    judged = values.abs() >= HOLD_FLOOR * out_range  # [L]
    if not bool(judged.any()):
        raise ValueError(f"hold_test: no probe value reaches {HOLD_FLOOR} R")
    zero = int(values.abs().argmin())
    if values[zero].abs() > 1e-9 * values.abs().max():
        raise ValueError("hold_test: the probe values must contain 0 (the irrelevant stream's baseline)")
    v = values[judged]
    stored = outputs[:, :, 0, judged, n_stimulus - 1]
    kept = outputs[:, :, 0, judged, -1] / stored
    baseline = outputs[:, :, 1, zero, None]  # [P, C, 1, D + H]: the output with no stream pulsed
    moved = (outputs[:, :, 1, judged] - baseline).abs().amax(-1) / v.abs()
    lo, hi = timescales.hold_bounds(outputs.shape[-1] - n_stimulus)
    ok = (kept >= lo) & (kept <= hi) & (moved <= timescales.tolerance)
    return {"held": ok.all(-1), "kept_min": kept.amin(-1), "kept_max": kept.amax(-1), "moved": moved.amax(-1),
            "gain": (stored / v).median(-1).values}


def line_statistics(
    points: Tensor,
    mask: Tensor,
    drift: Tensor,
    jacobian: Tensor,
    input_jacobian: Tensor,
    readout: Tensor,
    rest: Tensor,
    timescales: Timescales,
    out_range: float,
    window: float,
    scale: float = 1.0,
    sensory: Sequence[int] = (0, 1),
    n_spectrum: int = 10,
) -> dict[str, Tensor]:
    """Per-member, per-context statistics of the candidate ``points [P, C, N, S]``
    (``mask [P, C, N]``; context c's relevant channel ``sensory[c]``) with their drift
    ``F(h) - h [P, C, N, S]``, ``jacobian`` dF/dh ``[P, C, N, S, S]`` and
    ``input_jacobian`` dF/dx ``[P, C, N, S, I]``, under ``readout [P, O, S]``; ``rest [P,
    C, S]`` is where nothing is stored (y0), ``out_range`` R, ``window`` the local
    tangent's half-width (readout units) and ``scale`` the integration gain.

    Returns ``[P, C]`` tensors ``n_candidates``, ``n_points`` (kept by the drift rule),
    ``n_distinct``, ``readout_span`` (in units of R), ``signs``, ``curve_r2``,
    ``line_pc1``, ``tangent_cos``, ``top_eig``, ``second_eig``, ``n_slow``,
    ``n_unstable``, ``selection_relevant``, ``selection_irrelevant``,
    ``selection_ratio``, ``modes_90`` (NaN where a context keeps no point), ``spectrum
    [P, C, n_spectrum']`` and ``response_curve [P, C, n_spectrum']`` (zeros there).
    """
    p, c, n, s = points.shape
    w = readout.to(torch.float64)
    y = torch.einsum("pos,pcns->pcno", w, points)[..., 0]
    stored = y - torch.einsum("pos,pcs->pco", w, rest.to(torch.float64))[..., :1]
    out_drift = torch.einsum("pos,pcns->pcno", w, drift).norm(dim=-1)
    keep = mask & (out_drift * timescales.tau_star <= stored.abs().clamp_min(DISTINCT * out_range))
    curve = curve_fit(points, y, keep, distinct_tol=DISTINCT * out_range)
    pc1 = first_component(points, keep)
    big = keep & (stored.abs() >= HOLD_FLOOR * out_range)
    signs = (big & (stored > 0)).any(-1).to(torch.int64) + (big & (stored < 0)).any(-1).to(torch.int64)

    eigenvalues, right, left = eigendecompose(jacobian)
    absval = eigenvalues.abs()
    rate = absval.log()  # per-step log growth of each mode
    slow = rate.abs() <= 1 / timescales.tau_slow  # [P, C, N, S]
    unstable = rate > 1 / timescales.tau_slow
    cos = slow_alignment(local_tangents(points, y, keep, window, DISTINCT * out_range), right, slow)

    wr = torch.einsum("pos,pcnsk->pcnok", w.to(right.dtype), right)  # readout of each mode
    lb = left @ input_jacobian.to(left.dtype)  # [P, C, N, S(modes), I]: each mode's input drive
    relevant = torch.tensor(list(sensory)[:c]).view(1, c, 1, 1, 1).expand(p, c, n, s, 1)
    lb_rel, lb_irr = lb.gather(-1, relevant)[..., 0], lb.gather(-1, relevant.flip(1))[..., 0]
    sel_rel = (wr * (slow * lb_rel).unsqueeze(-2)).sum(-1).norm(dim=-1) / abs(scale)
    sel_irr = (wr * (slow * lb_irr).unsqueeze(-2)).sum(-1).norm(dim=-1) / abs(scale)
    k = min(n_spectrum, s)
    modes, accuracy, finite = response_modes(eigenvalues, wr, lb_rel, timescales.n_time, k)

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
        "signs": signs,
        "curve_r2": curve["r2"],
        "line_pc1": pc1,
        "tangent_cos": med(cos),
        "top_eig": med(absval[..., 0]),
        "second_eig": med(absval[..., 1] if s > 1 else torch.zeros_like(absval[..., 0])),
        "n_slow": med(slow.sum(-1)),
        "n_unstable": med(unstable.sum(-1)),
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
    or no spread), ``span [P, C]`` (max - min of the kept ``y``) and ``n_distinct [P, C]``.
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
    return {"r2": r2, "span": span, "n_distinct": n_distinct}


def local_tangents(points: Tensor, y: Tensor, keep: Tensor, window: float, distinct_tol: float = 0.0) -> Tensor:
    """The line's local direction at each point, ``[P, C, N, S]``: the least-squares slope
    dh/dy of the kept ``points [P, C, N, S]`` whose readout ``y [P, C, N]`` lies within
    ``window`` of the point's; NaN where those readouts span no more than
    ``distinct_tol`` (one value: no direction) or the point is not kept."""
    near = keep.unsqueeze(-1) & keep.unsqueeze(-2) & ((y.unsqueeze(-1) - y.unsqueeze(-2)).abs() <= window)
    wgt = near.to(points.dtype)  # [P, C, N (point), N (neighbour)]
    count = wgt.sum(-1, keepdim=True).clamp_min(1)
    y_mean = (wgt @ y.unsqueeze(-1)) / count  # [P, C, N, 1]
    var = (wgt @ (y**2).unsqueeze(-1)) / count - y_mean**2
    cov = (wgt @ (y.unsqueeze(-1) * points)) / count - y_mean * (wgt @ points) / count
    ys = y.unsqueeze(-2).expand_as(near)
    spread = torch.where(near, ys, -math.inf).amax(-1) - torch.where(near, ys, math.inf).amin(-1)
    return torch.where((spread > distinct_tol).unsqueeze(-1), cov / var.clamp_min(1e-300), math.nan)


def slow_alignment(tangent: Tensor, right: Tensor, slow: Tensor) -> Tensor:
    """``cos`` of the angle between ``tangent [..., S]`` and the span of the right
    eigenvectors (columns of ``right [..., S, S]``) that ``slow [..., S]`` marks:
    ``|Q Q^H t| / |t|``, Q an orthonormal basis of the span (from an SVD; singular values
    below ``S eps`` of the largest do not count). ``[...]``: 0 where no mode is slow, NaN
    where the tangent is."""
    k = max(int(slow.sum(-1).max()) if slow.numel() else 0, 1)
    order = (~slow).to(torch.int8).argsort(dim=-1, stable=True)[..., :k]  # slow columns first
    cols = right.gather(-1, order.unsqueeze(-2).expand(*right.shape[:-1], k))
    cols = cols * slow.gather(-1, order).unsqueeze(-2)  # [..., S, k], non-slow columns zeroed
    u, sv, _ = torch.linalg.svd(cols, full_matrices=False)
    rank = sv > sv[..., :1] * right.shape[-1] * torch.finfo(sv.dtype).eps
    t = tangent.to(u.dtype)
    along = torch.where(rank, (u.mH @ t.unsqueeze(-1))[..., 0], 0)  # [..., k]
    return along.norm(dim=-1) / tangent.norm(dim=-1)


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


def dynamics_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Distance between dynamics signatures ``u [N, 6 C], v [M, 6 C] -> [N, M]``: the mean,
    over the contexts both rows have kept points in (flag 1), of the L1 difference of the
    5 entries; ``UNSHARED`` where they share none (module docstring)."""
    u, v = np.atleast_2d(np.asarray(u, dtype=np.float64)), np.atleast_2d(np.asarray(v, dtype=np.float64))
    if u.shape[1] != v.shape[1] or u.shape[1] % (DYNAMICS_ENTRIES + 1):
        raise ValueError(f"dynamics signatures must share a length divisible by {DYNAMICS_ENTRIES + 1}; "
                         f"got {u.shape[1]} and {v.shape[1]}")
    a, b = (x.reshape(len(x), -1, DYNAMICS_ENTRIES + 1) for x in (u, v))  # [N, C, 1 + E]
    shared = (a[:, None, :, 0] > 0) & (b[None, :, :, 0] > 0)  # [N, M, C]
    per = np.abs(a[:, None, :, 1:] - b[None, :, :, 1:]).sum(-1)  # [N, M, C]
    n_shared = shared.sum(-1)
    total = np.where(shared, per, 0.0).sum(-1)
    return np.where(n_shared > 0, total / np.maximum(n_shared, 1), UNSHARED)


# ---------------------------------------------------------------------- helpers
def _beyond(value: float, bound: float) -> str:
    """``value`` with 2 decimals, or as many more (up to 6) as it takes not to read as
    ``bound`` (1.2503 beyond 1.25 reads "1.2503", not "1.25")."""
    for digits in range(2, 7):
        if round(value, digits) != round(bound, digits):
            break
    return f"{value:.{digits}f}"


def _cdi_task(population: Population) -> ContextIntegration:
    if not isinstance(population.task, ContextIntegration):
        raise ValueError(f"the cdi scaffold needs a cdi population, got task {population.task.name!r}")
    return population.task


def _readout_matrix(population: Population) -> Tensor:
    """``W_out`` over the whole state, ``[P, O, S]`` (zeros past the first H entries)."""
    w = population.params[READOUT_WEIGHT].detach().to("cpu", torch.float64)
    return torch.nn.functional.pad(w, (0, population.state_size - population.hidden_size))


def context_flags(per: Mapping[str, Sequence[float]], c: int, timescales: Timescales) -> dict[str, bool | int]:
    """Context ``c``'s verdicts from its numbers (lists per context): ``held``, ``present``
    (>= MIN_DISTINCT distinct readout values spanning >= span_fraction R),
    ``one_dimensional``, ``integrates``, ``selection_sign`` (+1 / 0 / -1), ``pc1``, and
    the slow set's ``dimension`` (0 absent, 1 a curve, 2 spread beyond one)."""
    t = THRESHOLDS

    def at(key: str) -> float:
        value = float(per[key][c])
        return value if math.isfinite(value) else math.nan

    present = at("n_distinct") >= MIN_DISTINCT and at("readout_span") >= t["span_fraction"]
    curve = present and at("curve_r2") >= t["curve_r2"]
    rel, irr = at("selection_relevant"), at("selection_irrelevant")
    sign = 0 if not (rel == rel and irr == irr) or rel == irr else (1 if rel > irr else -1)
    return {
        "held": bool(per["held"][c]),
        "present": present,
        "one_dimensional": curve and at("tangent_cos") >= t["tangent_cos"],
        "integrates": abs(math.log(at("top_eig"))) <= timescales.rate if at("top_eig") > 0 else False,
        "selection_sign": sign,
        "pc1": at("line_pc1") >= t["line_pc1"],
        "dimension": 0 if not present else 1 if curve else 2,
    }


def _scaffold(stats: Mapping[str, Tensor], i: int, timescales: Timescales) -> Scaffold:
    """Member ``i``'s :class:`Scaffold` from :func:`hold_test`'s and :func:`line_statistics`' tensors."""
    per = {k: v[i].tolist() for k, v in stats.items()}  # per context
    ctx = range(len(per["curve_r2"]))
    numbers: dict[str, Any] = {f"{k}_ctx{c}": per[k][c] for k in per for c in ctx}
    flags = [context_flags(per, c, timescales) for c in ctx]
    numbers.update({f"{name}_ctx{c}": flags[c][name] for name in flags[0] for c in ctx})
    deviation = [abs(math.log(t)) if t == t and t > 0 else math.inf for t in per["top_eig"]]
    worst = int(np.argmax(deviation))
    with_points = [c for c in ctx if per["n_points"][c] > 0]

    def least(key: str) -> float:
        return float(np.nanmin(per[key])) if not np.all(np.isnan(per[key])) else math.nan

    def most(key: str) -> float:
        return float(np.nanmax(per[key])) if not np.all(np.isnan(per[key])) else math.nan

    numbers.update({
        "kept_min": least("kept_min"),
        "kept_max": most("kept_max"),
        "moved": most("moved"),
        "curve_r2": least("curve_r2"),
        "readout_span": least("readout_span"),
        "line_pc1": least("line_pc1"),
        "tangent_cos": least("tangent_cos"),
        "top_eig": per["top_eig"][worst],
        "second_eig": most("second_eig"),
        "selection_relevant": least("selection_relevant"),
        "selection_irrelevant": most("selection_irrelevant"),
        "selection_ratio": least("selection_ratio"),
        "modes_90": most("modes_90"),
        "spectrum": np.mean([per["spectrum"][c] for c in with_points], axis=0).tolist() if with_points else [],
        "response_curve": (np.mean([per["response_curve"][c] for c in with_points], axis=0).tolist()
                           if with_points else []),
        "tau_star": timescales.tau_star,
        "tau_slow": timescales.tau_slow,
    })
    canonical, criteria = SPEC.judge({
        "hold": all(f["held"] for f in flags),
        "one_dimensional": all(f["one_dimensional"] for f in flags),
        "selection": all(f["selection_sign"] > 0 for f in flags),
        "integrates": all(f["integrates"] for f in flags),
        "pc1_line": all(f["pc1"] for f in flags),
    })

    def capped(value: float, cap: int) -> float:
        return min(value, cap) / cap if value == value else 0.0

    topology = np.array([
        value
        for c in ctx
        for value in (flags[c]["dimension"], per["signs"][c],
                      min(per["n_unstable"][c], UNSTABLE_CAP) if per["n_points"][c] > 0 else 0,
                      flags[c]["selection_sign"])
    ], dtype=np.float64)
    ratio = np.asarray(per["selection_ratio"], dtype=np.float64)
    log_ratio = np.clip(np.log10(np.maximum(ratio, 1e-300)), -2, 2) / 4
    # the number of slow modes is a count of eigenvalues near 1: linear dynamics (the paper's
    # Fig. 3e/f difference between architectures), so it belongs here, not in the topology
    dynamics = np.array([
        value
        for c in ctx
        for value in ((1.0, per["top_eig"][c], per["second_eig"][c], log_ratio[c],
                       capped(per["modes_90"][c], MODES_CAP), capped(per["n_slow"][c], SLOW_CAP))
                      if per["n_points"][c] > 0 else (0.0,) * (DYNAMICS_ENTRIES + 1))
    ])
    # a kept context's rare NaN entry (every kept point defective: no selection) is 0
    return Scaffold("cdi", canonical, criteria, numbers, topology, np.nan_to_num(dynamics, nan=0.0))


# ---------------------------------------------------------------------- strategy
@dataclass(frozen=True)
class CdiNumbers:
    """The cdi numbers that claims, figures and :meth:`CdiScaffold.classify` read (worst
    context where two differ): ``modes_90``, ``line_pc1``, ``curve_r2``, the hold's
    ``kept_min``, ``kept_max`` and ``moved``, the mean ``spectrum [K]`` and
    ``response_curve [K]`` over the contexts with points (empty when none),
    ``readout_span`` (units of R), ``tangent_cos``, ``selection_ratio``; per context c
    (``_ctx0``, ``_ctx1``): the slow set's ``dimension`` (0 none, 1 a curve, 2 spread
    beyond one; -1 not recorded) and ``n_slow`` (median number of slow modes)."""

    modes_90: float
    line_pc1: float
    curve_r2: float
    kept_min: float
    kept_max: float
    moved: float
    spectrum: list[float]
    response_curve: list[float]
    # read only by classify; the defaults ("not recorded": NaN, dimension -1) serve numbers
    # built by hand for claims and figures, never stored ones (``read`` needs every field)
    readout_span: float = math.nan
    tangent_cos: float = math.nan
    selection_ratio: float = math.nan
    dimension_ctx0: int = -1
    dimension_ctx1: int = -1
    n_slow_ctx0: float = math.nan
    n_slow_ctx1: float = math.nan


#: Kinds of cdi scaffold (:meth:`CdiScaffold.classify`), the first that applies; the hold
#: kinds use the hold test's own bounds at its default hold (one trial).
KINDS = (
    ("line_attractor", "canonical: hold, one_dimensional and selection"),
    ("reverses", "hold fails and a judged value turns to the opposite sign over the hold (kept_min < 0)"),
    ("leaks", f"hold fails and a judged value keeps less than {KEPT} of itself over the hold (kept_min)"),
    ("grows", f"hold fails and a judged value grows beyond {1 / KEPT:g} of itself (kept_max)"),
    ("irrelevant_moves", f"hold fails and the irrelevant stream moves the output by more than {1 - KEPT:.1f} |v|"),
    ("not_held", "hold fails otherwise (a kept fraction that is not a number, or a hold other than one trial)"),
    ("plane", "the slow set spreads beyond a curve in a context (dimension 2) with 2 slow modes there"),
    ("higher_dimensional", "the same with 3 or more slow modes"),
    ("scattered", "the same with fewer than 2 slow modes"),
    ("no_slow_set", "no extended slow set in a context (dimension 0)"),
    ("off_slow_modes", "a curve in each context, not along the slow modes (tangent beyond 45 degrees)"),
    ("no_selection", "selection fails: the slow modes do not carry more of the relevant than the irrelevant input"),
)


class CdiScaffold(ScaffoldSpec):
    """The cdi's scaffold strategy (module docstring)."""

    task = "cdi"
    criteria = CRITERIA
    numbers = CdiNumbers
    claim = "cdi_line_attractor"
    universal_kind = "line_attractor"
    compute = staticmethod(compute)
    distance = staticmethod(distance)
    dynamics_distance = staticmethod(dynamics_distance)

    def classify(self, scaffold: StoredScaffold) -> tuple[str, str]:
        """``(kind, phrase)``: the first of :data:`KINDS` that applies, from the stored
        verdicts and numbers (the hold first: what a line attractor does; then what the
        slow set is)."""
        n: CdiNumbers = scaffold.numbers
        if scaffold.canonical:
            return "line_attractor", ("one line attractor per context: values held along a one-dimensional set "
                                      "of slow points, the context selecting the stream")
        if not scaffold.met("hold"):
            if n.kept_min < 0:
                return "reverses", (f"no line attractor: values reverse sign over one trial (a value keeps "
                                    f"{n.kept_min:.2f} of itself; a line keeps >= {KEPT})")
            if n.kept_min < KEPT:
                return "leaks", (f"no line attractor: values leak (a value keeps {_beyond(n.kept_min, KEPT)} of "
                                 f"itself over one trial; a line keeps >= {KEPT})")
            if n.kept_max > 1 / KEPT:
                return "grows", (f"no line attractor: values grow ({_beyond(n.kept_max, 1 / KEPT)} times over one "
                                 f"trial; a line keeps <= {1 / KEPT:g})")
            if n.moved > 1 - KEPT:
                return "irrelevant_moves", (f"no context selection: the irrelevant stream moves the output by "
                                            f"{_beyond(n.moved, 1 - KEPT)} of its value (<= {1 - KEPT:.1f} allowed)")
            return "not_held", (f"values not held (kept between {n.kept_min:.2f} and {n.kept_max:.2f} of "
                                f"themselves, the irrelevant stream moving the output by {n.moved:.2f})")
        dims = (n.dimension_ctx0, n.dimension_ctx1)
        slow = (n.n_slow_ctx0, n.n_slow_ctx1)
        if 2 in dims:
            modes = max(round(m) if m == m else 0 for d, m in zip(dims, slow, strict=True) if d == 2)
            if modes == 2:
                return "plane", (f"a plane, not a line: values held on slow points spanning 2 dimensions (2 slow "
                                 f"modes; a curve explains {n.curve_r2:.0%} of their variance, >= 90% for a line)")
            if modes > 2:
                return "higher_dimensional", (f"a {modes}-dimensional slow set, not a line ({modes} slow modes; a "
                                              f"curve explains {n.curve_r2:.0%} of the slow points' variance)")
            return "scattered", (f"slow points scattered beyond a line (a curve explains {n.curve_r2:.0%} of their "
                                 f"variance) with {modes} slow mode{'s' if modes != 1 else ''}")
        if 0 in dims:
            return "no_slow_set", (f"values held, but no line of slow points (they span {n.readout_span:.2f} R; "
                                   f"a line spans >= {THRESHOLDS['span_fraction']:g} R)")
        if not scaffold.met("one_dimensional"):
            if n.tangent_cos == n.tangent_cos:
                angle = f"its tangent is {math.degrees(math.acos(min(max(n.tangent_cos, 0.0), 1.0))):.0f} degrees"
            else:
                angle = "no tangent measured"
            return "off_slow_modes", (f"a curve of slow points that does not run along the slow modes ({angle} "
                                      "from them; within 45 for a line)")
        return "no_selection", (f"a line in each context, but its slow modes do not select the relevant stream "
                                f"(relevant / irrelevant gain {n.selection_ratio:.2f}, > 1 needed)")


SPEC = CdiScaffold()
