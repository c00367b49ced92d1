"""Frequency-cued sine-wave scaffold (the paper's Fig. 2): per input, one unstable spiral
inside a limit cycle, whose linearised frequency tracks the target.

For each frequency's static input x_j (the task's conditions, target w_j):

* **The oscillatory pair.** Among the certified fixed points at x_j (slow points ignored;
  a continuum arrives as one point, see :class:`~universality.dynamics.FixedPoints`),
  the *unstable complex pair with the largest modulus*: an eigenvalue lambda with
  ``|lambda| > 1 + unstable_tol`` and ``min_angle < |arg lambda| < pi - min_angle``,
  chosen even where a real mode (e.g. |lambda| = 1 from saturated gates, or a flip at
  arg = pi) has a larger modulus, since only a complex pair rotates the state. Its
  point's slot (``pair_point``), |lambda| and the linearised frequency |arg lambda| are
  recorded per input.
* **Autonomous trajectory.** Every member runs at every input (float64, batched over
  members x a chunk of inputs) from a small seeded kick off the zero state for
  ``n_transient`` steps, then over a window of ``n_measure`` steps, on which the readout
  y(t) gives the cycle frequency (peak of the Hann-windowed, zero-padded spectrum, refined
  by parabolic interpolation) and whether it is a limit cycle (finite; ``std y >=
  min_amplitude``; the two halves' amplitudes differ by at most ``max_amplitude_change``;
  ``corr(y_t, y_{t+period}) >= min_periodicity``). The readout is the same in every
  coordinate system of the state space.
* **Point inside the cycle.** The winding number of the window's states around the pair's
  point, in the plane of the window's top two principal components: a first pass
  accumulates the states' covariance, a second pass (the same window, re-run from the
  saved state at its start, so no states are stored) the unwrapped angle of the projected
  state around the projected point; ``winding = round(total angle / (cycle frequency x
  (n_measure - 1)))``, i.e. turns per period. The angle of each step is taken in
  (-pi, pi], so this is the exact winding number of the polygon through the sampled
  states. |winding| = 1: the oscillation turns once around the unstable point per period
  (the paper's picture); 0: the cycle lies beside it (another mechanism).
* **Tracking** (over the inputs where the pair exists, at least 3): Spearman rank
  correlation (``rank_corr``, judged), Pearson correlation (``corr``, reported) and
  least-squares ``slope``/``intercept`` of |arg lambda| on w; ``n_levels``, the number of
  distinct values of |arg lambda| (a piecewise-linear cell's linearisation is a staircase
  in w); and the same correlations and slope of the cycle's own frequency
  (``cycle_rank_corr``, ``cycle_slope``, reported: the task's target sets the cycle's
  frequency directly, so they cannot tell whether the linearisation explains it).
* **Bias** (a finding, not a criterion): per member, the least-squares ``bias_slope`` and
  ``bias_intercept`` of the relative error (|arg lambda| - w) / w on |lambda| - 1 (the
  saturating orbit runs slower than its linearisation the more unstable the point is).
* **What oscillates instead** (for :meth:`SineScaffold.classify`, in ``numbers`` only):
  per input, the number of certified points ``n_fixed`` and ``top_pair_abs_lambda``, the
  modulus of the complex pair (same angle bounds) with the largest modulus over the
  certified points whatever its stability (NaN where none). The pair is *marginal* when
  ``|ln |lambda|| <= marginal_tol(config)`` = ln(1 + max_amplitude_change) / (n_measure /
  2) (3.7e-4 by default): a linear mode that close to the unit circle changes its
  amplitude between the two halves of the window by less than the limit-cycle test
  tolerates, so the scaffold's own measurement cannot tell it from a sustained
  oscillation. ``frac_marginal_pair``: the fraction of inputs whose top pair is marginal
  (a linear rotation, e.g. h' = c + R(w) (h - c), rather than an unstable spiral).
* **Homology** (a check, in ``numbers`` only): at ``n_homology`` evenly spaced inputs,
  ripser on the window's states; ``frac_h1_loop`` is the fraction with one long-lived H1 bar.

Signatures, per input, concatenated over inputs (``C`` inputs):

* ``topology [C * 4]``: ``[min(n_fixed, max_n_fixed), has an unstable complex pair, has a
  limit cycle, |winding| == 1]`` (winding 0 where there is no pair or no cycle);
* ``dynamics [C * 3]``: ``[|lambda|, |arg lambda| / w, cycle frequency / w]`` of the pair
  and the cycle (0 where there is no pair, resp. no cycle).

Both distances are the mean over inputs of the per-input L1 difference, so the topology
distance reads as the (weighted) fraction of inputs whose scaffold differs. Eigenvalues,
the readout and the winding number are unchanged by permuting hidden units; eigenvalues and
the readout by any invertible change of coordinates, and the winding number by any that
keeps the point inside (or outside) the projected cycle.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from ..dynamics import FixedPoints
from ..dynamics.linearise import float64_params
from ..population import Population
from ..tasks import SineWave
from .base import Criterion, Scaffold, ScaffoldSpec, StoredScaffold
from .homology import n_long_lived, persistence

log = logging.getLogger(__name__)

#: Fraction of inputs at which the per-input conditions of the first three criteria must hold.
MIN_INPUT_FRACTION = 0.9
#: Tracking: smallest Spearman correlation and the band of the slope of |arg lambda| on w
#: (reasons in CRITERIA). 0.9 is above the largest Spearman correlation any two-level
#: relation reaches on 3 or more inputs (0.894 at 4 inputs, sqrt(3)/2 = 0.866 for many).
MIN_RANK_CORR = 0.9
SLOPE_BAND = (0.5, 2.0)
#: Fewest inputs with a pair for a correlation or regression (two points always fit a line).
MIN_TRACKED = 3
#: A regressor or response spread over less than this is constant (eigenvalues of the same
#: linearisation differ by round-off, ~1e-12): no correlation or slope is defined. Two
#: linearised frequencies are distinct levels when they differ by more than this.
MIN_SPREAD = 1e-9

CRITERIA: tuple[Criterion, ...] = (
    Criterion(
        "one_complex_unstable_point",
        f"at >= {MIN_INPUT_FRACTION:.0%} of inputs, exactly one certified fixed point (a continuum counts "
        "once, slow points are ignored), and it has an unstable complex pair (|lambda| > 1, "
        "0 < |arg lambda| < pi)",
        "The paper's Fig. 2 scaffold is one unstable spiral per input. The pair is sought among all "
        "eigenvalues of the point, not only the largest, so a real mode of larger modulus (saturated "
        f"gates) does not hide it. {MIN_INPUT_FRACTION:.0%} allows a few inputs at the ends of the frequency "
        "range where the search or the network is borderline.",
    ),
    Criterion(
        "limit_cycle",
        f"at >= {MIN_INPUT_FRACTION:.0%} of inputs the autonomous trajectory ends on a limit cycle (readout "
        "finite, amplitude >= min_amplitude, the two halves of the window within max_amplitude_change of "
        "each other, correlation >= min_periodicity one period apart)",
        "The network must generate the sine autonomously at a constant input (Fig. 2: the trajectory "
        "settles on a cycle around the unstable point). The readout is measured because it does not "
        "depend on the coordinates of the state space; the same fraction of inputs as above, for the "
        "same reason.",
    ),
    Criterion(
        "point_inside_cycle",
        f"at >= {MIN_INPUT_FRACTION:.0%} of the inputs that have both a limit cycle and an unstable complex "
        "pair, |winding| == 1: the cycle turns once per period around the pair's fixed point, in the plane "
        "of the cycle's top two principal components",
        "The paper's picture is an oscillation organised around the unstable point: the spiral's "
        "linearisation explains the cycle only if the cycle encloses it. A cycle beside the point is "
        "another mechanism. Inputs lacking the cycle or the pair are judged by the two criteria above.",
    ),
    Criterion(
        "tracking",
        f"over the inputs with an unstable complex pair (at least {MIN_TRACKED}), the Spearman rank correlation "
        f"of |arg lambda| with the target w is >= {MIN_RANK_CORR} and the least-squares slope of |arg lambda| "
        f"on w lies in [{SLOPE_BAND[0]}, {SLOPE_BAND[1]}]",
        "The paper's claim (Fig. 2, linearised vs target frequency) is that the linearised frequency "
        "tracks the target: it rises with w, in proportion (slope 1). In a piecewise-linear cell (ReLU) "
        "the Jacobian at the point changes only where a unit switches on or off, so |arg lambda| is a "
        "staircase in w whose number of levels (`n_levels`) grows with the number of units that switch "
        "along the branch of fixed points, a property of the individual network. A rank correlation asks "
        "that the order follow w, whatever the curve's shape; for a monotone staircase it measures only "
        "how finely the levels divide the inputs (sqrt(1 - sum(n_i^3 - n_i) / (K^3 - K)), n_i of the K "
        f"inputs on level i). {MIN_RANK_CORR} is above the largest value any two-level relation (a switch, "
        "not a trend) reaches on 3 or more inputs (0.894 at 4 inputs, sqrt(3)/2 = 0.866 for many), so a "
        "pass needs at least three ordered levels; three equal levels reach 0.943, which leaves room for "
        "the local inversions a switching unit can cause. Pearson's r (`corr`, reported) also penalises a "
        "curved monotone relation. The slope band: a factor of 2 either side keeps the linearisation "
        "predictive of the frequency to within an octave while admitting the systematic slowing of the "
        "saturating orbit relative to its linearisation (reported as the bias finding), and rejects flat "
        "relations. A relative-error bound is not used: it inflates at low frequency (0.05 rad/step is "
        "50 % at w = 0.1). The cycle's own frequency is not judged (reported as `cycle_rank_corr`, "
        "`cycle_slope`): the task's target sets it directly, so it tracks in any network that does the "
        "task and cannot tell whether the linearisation explains the oscillation.",
    ),
)

TOPOLOGY_FEATURES = ("n_fixed", "has_pair", "has_cycle", "winds_once")
DYNAMICS_FEATURES = ("abs_lambda", "linear_freq_ratio", "cycle_freq_ratio")


@dataclass(frozen=True)
class SineConfig:
    """Settings of the pair selection and the trajectory measurements (readout units for
    amplitudes).

    * ``unstable_tol = 1e-6``: a mode is unstable if |lambda| > 1 + unstable_tol; neutral
      modes (|lambda| = 1 up to round-off, ~1e-12) are not.
    * ``min_angle = 1e-3`` rad/step: a pair is complex if min_angle < |arg lambda| < pi -
      min_angle. Below it the pair turns by less than 0.1 rad over a 100-step trial (no
      oscillation on the task's time scale; 100 times below the slowest target, 0.1), and
      it is far above the ~1e-8 imaginary parts round-off gives nearly equal real eigenvalues.
    * ``n_transient = 300`` steps are dropped (a unit growing at |lambda| = 1.05 goes from
      the ``kick = 1e-3`` to O(1) in ~140 steps); ``n_measure = 512`` covers 8 periods of
      the slowest default frequency (0.1 rad/step). ``min_amplitude = 0.05`` is 7 % of the
      target's std (1/sqrt 2).
    * ``max_chunk_bytes``: inputs are simulated in chunks whose state covariances
      (members x inputs x S x S float64) fit in this many bytes.
    """

    unstable_tol: float = 1e-6
    min_angle: float = 1e-3
    n_transient: int = 300
    n_measure: int = 512
    kick: float = 1e-3
    seed: int = 0
    min_amplitude: float = 0.05
    max_amplitude_change: float = 0.1
    min_periodicity: float = 0.9
    max_n_fixed: int = 5
    n_homology: int = 5
    homology_points: int = 200
    h1_threshold: float = 0.5
    max_chunk_bytes: int = 2**27


@dataclass(frozen=True)
class ComplexPair:
    """Per (member, input), ``[P, C]``: the unstable complex pair of largest modulus among
    the certified points: ``value`` (complex, NaN where none), ``point`` (slot in
    ``FixedPoints``, -1 where none); ``n_fixed`` certified points; ``single``: exactly one
    certified point and it holds an unstable complex pair."""

    value: np.ndarray
    point: np.ndarray
    n_fixed: np.ndarray
    single: np.ndarray

    @property
    def exists(self) -> np.ndarray:
        return self.point >= 0


def complex_pair(fixed_points: FixedPoints, unstable_tol: float = 1e-6, min_angle: float = 1e-3) -> ComplexPair:
    """The unstable complex pair with the largest modulus per (member, input) (see
    :class:`SineConfig` for the tolerances), from ``fixed_points.eigenvalues [P, C, N, S]``."""
    certified = fixed_points.mask & fixed_points.fixed  # slow points are ignored
    ev = fixed_points.eigenvalues  # [P, C, N, S]
    p, c, n, s = ev.shape
    modulus, angle = ev.abs(), ev.angle().abs()
    is_pair = (certified.unsqueeze(-1) & (modulus > 1 + unstable_tol)
               & (angle > min_angle) & (angle < math.pi - min_angle))  # [P, C, N, S]
    n_fixed = certified.sum(-1).numpy()
    if n * s == 0:
        none = np.full((p, c), -1)
        return ComplexPair(np.full((p, c), complex(math.nan, math.nan)), none, n_fixed, np.zeros((p, c), bool))
    best = torch.where(is_pair, modulus, -math.inf).reshape(p, c, n * s).argmax(-1, keepdim=True)  # [P, C, 1]
    exists = is_pair.reshape(p, c, n * s).any(-1)
    value = ev.reshape(p, c, n * s).gather(-1, best).squeeze(-1)
    point = torch.where(exists, best.squeeze(-1) // s, -1)
    single = (certified.sum(-1) == 1) & exists
    return ComplexPair(torch.where(exists, value, complex(math.nan, math.nan)).numpy(), point.numpy(), n_fixed,
                       single.numpy())


def marginal_tol(config: SineConfig) -> float:
    """Largest ``|ln |lambda||`` of a marginal pair: ``ln(1 + max_amplitude_change) /
    (n_measure / 2)``, the growth or decay the limit-cycle test cannot see (module docstring)."""
    return math.log(1 + config.max_amplitude_change) / (config.n_measure / 2)


def top_pair_modulus(fixed_points: FixedPoints, min_angle: float = 1e-3) -> np.ndarray:
    """``[P, C]``: the largest |lambda| of a complex eigenvalue (``min_angle < |arg lambda| <
    pi - min_angle``) over the certified points, stable, marginal or unstable; NaN where
    no certified point has one."""
    certified = (fixed_points.mask & fixed_points.fixed).unsqueeze(-1)  # [P, C, N, 1]
    ev = fixed_points.eigenvalues  # [P, C, N, S]
    angle = ev.angle().abs()
    is_pair = certified & (angle > min_angle) & (angle < math.pi - min_angle)
    if ev.shape[2] * ev.shape[3] == 0:
        return np.full(ev.shape[:2], math.nan)
    top = torch.where(is_pair, ev.abs(), -math.inf).flatten(2).amax(-1)
    return torch.where(torch.isfinite(top), top, math.nan).numpy()


def compute(population: Population, fixed_points: FixedPoints, config: SineConfig | None = None) -> list[Scaffold]:
    """One sine :class:`Scaffold` per member from ``fixed_points`` found at the task's inputs."""
    cfg = config or SineConfig()
    task = population.task
    if not isinstance(task, SineWave):
        raise ValueError(f"the sine scaffold needs a SineWave task, got {task.name!r}")
    omega = task.frequency_of(fixed_points.conditions[:, 0]).numpy()  # [C]
    pair = complex_pair(fixed_points, cfg.unstable_tol, cfg.min_angle)
    abs_lam, linear_freq = np.abs(pair.value), np.abs(np.angle(pair.value))  # [P, C], NaN where no pair
    top_pair = top_pair_modulus(fixed_points, cfg.min_angle)  # [P, C]
    with np.errstate(invalid="ignore", divide="ignore"):
        marginal = np.abs(np.log(top_pair)) <= marginal_tol(cfg)  # NaN compares False
    centre = torch.zeros(len(population), len(omega), population.state_size, dtype=torch.float64)  # [P, C, S]
    if fixed_points.points.shape[2]:
        slot = torch.as_tensor(pair.point).clamp_min(0)[..., None, None].expand(-1, -1, 1, population.state_size)
        centre = fixed_points.points.gather(2, slot)[:, :, 0]

    keep = _homology_inputs(len(omega), cfg)
    readout, kept, angle = _simulate(population, fixed_points.conditions, centre, keep, cfg)
    cycle_freq, has_cycle = _oscillation(readout, cfg)  # [P, C]
    both = has_cycle & pair.exists
    turns = angle / (cycle_freq * (cfg.n_measure - 1))
    winding = np.where(both & np.isfinite(turns), np.round(np.nan_to_num(turns)), 0).astype(np.int64)  # [P, C]
    winds_once = np.abs(winding) == 1

    topology = np.stack([np.minimum(pair.n_fixed, cfg.max_n_fixed), pair.exists, has_cycle, winds_once],
                        -1).astype(np.float64)  # [P, C, 4]
    dynamics = np.stack([np.nan_to_num(abs_lam), np.nan_to_num(linear_freq / omega),
                         np.where(has_cycle, cycle_freq / omega, 0.0)], -1)  # [P, C, 3]

    scaffolds = []
    for m in range(len(population)):
        ok = pair.exists[m]
        corr, rank_corr, slope, intercept = tracking(omega[ok], linear_freq[m, ok])
        cyc = has_cycle[m]
        _, cycle_rank_corr, cycle_slope, _ = tracking(omega[cyc], cycle_freq[m, cyc])
        bias_slope, bias_intercept = frequency_bias(omega[ok], abs_lam[m, ok], linear_freq[m, ok])
        loops = [_one_loop(s, cfg) for s in kept[m]]
        numbers: dict[str, Any] = {
            "n_inputs": len(omega),
            "max_n_fixed": int(pair.n_fixed[m].max()) if len(omega) else 0,
            "frac_one_complex_unstable_point": float(pair.single[m].mean()),
            "frac_limit_cycle": float(has_cycle[m].mean()),
            "n_cycle_and_pair": int(both[m].sum()),
            "frac_point_inside_cycle": float(winds_once[m][both[m]].mean()) if both[m].any() else math.nan,
            "n_tracked": int(ok.sum()),
            "corr": corr,
            "rank_corr": rank_corr,
            "slope": slope,
            "intercept": intercept,
            "n_levels": n_levels(linear_freq[m, ok]),
            "cycle_rank_corr": cycle_rank_corr,
            "cycle_slope": cycle_slope,
            "bias_slope": bias_slope,
            "bias_intercept": bias_intercept,
            "median_rel_error": _nanmedian(np.abs(linear_freq[m] - omega) / omega),
            "median_cycle_freq_error": _nanmedian(np.where(has_cycle[m], np.abs(cycle_freq[m] - omega) / omega,
                                                           np.nan)),
            "frac_h1_loop": float(np.mean(loops)) if loops else math.nan,
            "omega": omega.tolist(),
            "abs_lambda": abs_lam[m].tolist(),
            "linear_freq": linear_freq[m].tolist(),
            "pair_point": pair.point[m].tolist(),
            "cycle_freq": np.where(has_cycle[m], cycle_freq[m], np.nan).tolist(),
            "winding": winding[m].tolist(),
            "n_fixed": pair.n_fixed[m].tolist(),
            "top_pair_abs_lambda": top_pair[m].tolist(),
            "frac_marginal_pair": float(marginal[m].mean()) if len(omega) else 0.0,
            "marginal_tol": marginal_tol(cfg),
        }
        canonical, criteria = SPEC.judge(meets(numbers))
        scaffolds.append(Scaffold("sine", canonical, criteria, numbers, topology[m].reshape(-1),
                                  dynamics[m].reshape(-1)))
    log.info("sine scaffold: %d of %d members canonical", sum(s.canonical for s in scaffolds), len(scaffolds))
    return scaffolds


def meets(numbers: dict[str, Any]) -> dict[str, bool]:
    """Criterion name -> met, from a member's ``numbers`` (NaN fails)."""
    lo, hi = SLOPE_BAND
    return {
        "one_complex_unstable_point": numbers["frac_one_complex_unstable_point"] >= MIN_INPUT_FRACTION,
        "limit_cycle": numbers["frac_limit_cycle"] >= MIN_INPUT_FRACTION,
        "point_inside_cycle": numbers["frac_point_inside_cycle"] >= MIN_INPUT_FRACTION,
        "tracking": numbers["rank_corr"] >= MIN_RANK_CORR and lo <= numbers["slope"] <= hi,
    }


def tracking(omega: np.ndarray, freq: np.ndarray) -> tuple[float, float, float, float]:
    """``(corr, rank_corr, slope, intercept)`` of ``freq [K]`` (rad/step) on ``omega [K]``:
    Pearson and Spearman correlations and least squares (NaNs with fewer than
    :data:`MIN_TRACKED` points or a constant variable, see :data:`MIN_SPREAD`)."""
    if len(omega) < MIN_TRACKED or np.ptp(omega) <= MIN_SPREAD or np.ptp(freq) <= MIN_SPREAD:
        return math.nan, math.nan, math.nan, math.nan
    fit = stats.linregress(omega, freq)
    rank_corr = stats.spearmanr(omega, freq).statistic
    return float(fit.rvalue), float(rank_corr), float(fit.slope), float(fit.intercept)


def n_levels(freq: np.ndarray) -> int:
    """Number of distinct values in ``freq [K]``: sorted, a gap above :data:`MIN_SPREAD`
    starts a new level (0 for none)."""
    if len(freq) == 0:
        return 0
    return int(1 + (np.diff(np.sort(freq)) > MIN_SPREAD).sum())


def frequency_bias(omega: np.ndarray, abs_lambda: np.ndarray, linear_freq: np.ndarray) -> tuple[float, float]:
    """``(slope, intercept)`` of the least-squares line of the relative error
    ``(linear_freq - omega) / omega`` on ``abs_lambda - 1`` (all ``[K]``; NaNs with fewer
    than :data:`MIN_TRACKED` points or constant |lambda|, see :data:`MIN_SPREAD`)."""
    if len(omega) < MIN_TRACKED or np.ptp(abs_lambda) <= MIN_SPREAD:
        return math.nan, math.nan
    fit = stats.linregress(abs_lambda - 1, (linear_freq - omega) / omega)
    return float(fit.slope), float(fit.intercept)


def winding_number(states: Tensor, point: Tensor, freq: Tensor | np.ndarray | float) -> np.ndarray:
    """Winding numbers of trajectories ``states [..., T, S]`` (T >= 2) around ``point [...,
    S]`` in the plane of each trajectory's top two principal components, counted per period
    of angular frequency ``freq [...]`` (rad/step), as :func:`compute` measures them."""
    states = states.to(torch.float64)
    moments = _Moments(states[..., 0, :])
    for t in range(states.shape[-2]):
        moments.add(states[..., t, :])
    turning = _TurningAngle(moments.plane(), point.to(torch.float64))
    for t in range(states.shape[-2]):
        turning.add(states[..., t, :])
    freq = torch.as_tensor(freq, dtype=torch.float64)
    return torch.round(turning.total / (freq * (states.shape[-2] - 1))).numpy()


def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Topology distance: the mean over inputs of the L1 difference of the per-input
    features (:data:`TOPOLOGY_FEATURES`): ``u [N, C * 4], v [M, C * 4] -> [N, M]``."""
    return _mean_input_l1(u, v, len(TOPOLOGY_FEATURES))


def dynamics_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Dynamics distance: the mean over inputs of the L1 difference of the per-input
    numbers (:data:`DYNAMICS_FEATURES`): ``u [N, C * 3], v [M, C * 3] -> [N, M]``."""
    return _mean_input_l1(u, v, len(DYNAMICS_FEATURES))


@dataclass(frozen=True)
class SineNumbers:
    """The sine numbers that figures and :meth:`SineScaffold.classify` read, per input
    ``[C]``: the target ``omega``, the pair's ``abs_lambda`` and ``linear_freq`` (NaN where
    no pair), ``n_fixed`` (certified points) and ``top_pair_abs_lambda`` (the largest
    complex pair of any stability, NaN where none); per network: ``bias_slope`` (relative
    frequency error per unit of |lambda| - 1), the criteria's fractions of inputs
    (``frac_one_complex_unstable_point``, ``frac_limit_cycle``, ``frac_point_inside_cycle``,
    NaN without an input with a cycle and a pair), ``frac_marginal_pair`` with its
    ``marginal_tol`` (:func:`marginal_tol`) and the tracking fit's ``rank_corr`` and
    ``slope``."""

    omega: list[float]
    abs_lambda: list[float]
    linear_freq: list[float]
    bias_slope: float
    n_fixed: list[int]
    top_pair_abs_lambda: list[float]
    frac_one_complex_unstable_point: float
    frac_limit_cycle: float
    frac_point_inside_cycle: float
    frac_marginal_pair: float
    marginal_tol: float
    rank_corr: float
    slope: float


#: Kinds of sine scaffold (:meth:`SineScaffold.classify`), the first that applies; "at most
#: inputs" is at >= MIN_INPUT_FRACTION of them, the criteria's own fraction.
KINDS = (
    ("unstable_spiral", "canonical: every headline criterion"),
    ("linear_rotation", "the top complex pair is marginal at most inputs (frac_marginal_pair)"),
    ("decays", "no limit cycle at most inputs, and the top complex pair is stable at most inputs"),
    ("no_limit_cycle", "no limit cycle at most inputs"),
    ("several_fixed_points", "one_complex_unstable_point fails, most failing inputs have >= 2 points"),
    ("no_fixed_point", "one_complex_unstable_point fails, most failing inputs have no point"),
    ("no_unstable_pair", "one_complex_unstable_point fails, most failing inputs have one point without the pair"),
    ("cycle_beside_point", "point_inside_cycle fails"),
    ("not_tracking", "tracking fails"),
)


class SineScaffold(ScaffoldSpec):
    """The sine's scaffold strategy (module docstring)."""

    task = "sine"
    criteria = CRITERIA
    numbers = SineNumbers
    universal_kind = "unstable_spiral"
    compute = staticmethod(compute)
    distance = staticmethod(distance)
    dynamics_distance = staticmethod(dynamics_distance)

    def classify(self, scaffold: StoredScaffold) -> tuple[str, str]:
        """``(kind, phrase)``: the first of :data:`KINDS` that applies, from the per-input
        counts and the criteria's fractions; the only tolerance is the marginal band
        (:func:`marginal_tol`), decided at compute time."""
        n: SineNumbers = scaffold.numbers
        c = len(n.omega)
        top = np.asarray(n.top_pair_abs_lambda, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            decaying = np.log(top) < -n.marginal_tol  # a stable pair beyond the marginal band; NaN: False
        stable = int(decaying.sum())
        cycles = round(n.frac_limit_cycle * c)
        if scaffold.canonical:
            return "unstable_spiral", ("one unstable spiral inside a limit cycle per input, its linearised "
                                       "frequency tracking the target")
        if c and n.frac_marginal_pair >= MIN_INPUT_FRACTION:
            modulus = float(np.nanmedian(top))  # >= 90 % of the inputs' pairs lie in the band: so does the median
            return "linear_rotation", (f"no unstable spiral: the oscillation is a linear rotation (a fixed point "
                                       f"whose complex pair has |lambda| = {modulus:.6f}, marginal, at "
                                       f"{round(n.frac_marginal_pair * c)} of {c} inputs)")
        if n.frac_limit_cycle < MIN_INPUT_FRACTION:
            if c and stable >= MIN_INPUT_FRACTION * c:
                modulus = float(np.median(top[decaying]))
                return "decays", (f"no oscillation: it decays to a stable spiral (|lambda| = {modulus:.4f} < 1 at "
                                  f"{stable} of {c} inputs; a limit cycle at {cycles})")
            return "no_limit_cycle", f"no sustained oscillation: a limit cycle at only {cycles} of {c} inputs"
        if n.frac_one_complex_unstable_point < MIN_INPUT_FRACTION:
            fixed = np.asarray(n.n_fixed)
            single = (fixed == 1) & np.isfinite(np.asarray(n.abs_lambda, dtype=np.float64))
            counts = {"several_fixed_points": int(((fixed > 1) & ~single).sum()),
                      "no_fixed_point": int(((fixed == 0) & ~single).sum()),
                      "no_unstable_pair": int(((fixed == 1) & ~single).sum())}
            kind = max(counts, key=lambda k: counts[k])
            phrases = {
                "several_fixed_points": f"several fixed points (up to {int(fixed.max())}) at {counts[kind]} of {c} "
                                        "inputs, not one unstable spiral",
                "no_fixed_point": f"no fixed point at {counts[kind]} of {c} inputs, not one unstable spiral",
                "no_unstable_pair": f"one fixed point without an unstable complex pair at {counts[kind]} of {c} "
                                    "inputs, not an unstable spiral",
            }
            return kind, phrases[kind]
        if not n.frac_point_inside_cycle >= MIN_INPUT_FRACTION:  # NaN fails
            inside = n.frac_point_inside_cycle
            share = f"{inside:.0%} of the inputs" if inside == inside else "no input"
            return "cycle_beside_point", (f"the limit cycle does not enclose the unstable spiral (it winds once "
                                          f"around it at {share})")
        lo, hi = SLOPE_BAND
        return "not_tracking", (f"an unstable spiral inside a limit cycle, but its linearised frequency does not "
                                f"track the target (Spearman {n.rank_corr:.2f}, slope {n.slope:.2f}; needs >= "
                                f"{MIN_RANK_CORR} and a slope in [{lo}, {hi}])")


SPEC = SineScaffold()


# ---------------------------------------------------------------------- helpers
class _Moments:
    """Running first and second moments of states ``[..., S]``, shifted by a reference state
    (the window's first) against cancellation."""

    def __init__(self, reference: Tensor) -> None:
        self.reference = reference
        self.n = 0
        self.sum = torch.zeros_like(reference)
        self.outer = torch.zeros(*reference.shape, reference.shape[-1], dtype=reference.dtype,
                                 device=reference.device)

    def add(self, h: Tensor) -> None:
        d = h - self.reference
        self.n += 1
        self.sum += d
        self.outer += d.unsqueeze(-1) * d.unsqueeze(-2)

    def plane(self) -> Tensor:
        """Orthonormal basis ``[..., S, 2]`` of the top two principal components (zeros
        where the states are not finite)."""
        mean = self.sum / self.n
        cov = self.outer / self.n - mean.unsqueeze(-1) * mean.unsqueeze(-2)
        finite = torch.isfinite(cov).all(-1).all(-1)[..., None, None]
        _, vectors = torch.linalg.eigh(torch.where(finite, cov, 0.0))  # ascending eigenvalues
        return torch.where(finite, vectors[..., -2:], 0.0)


class _TurningAngle:
    """Running total of the angle turned by states ``[..., S]`` around ``point [..., S]``,
    both projected on ``plane [..., S, 2]``; each step's angle in (-pi, pi]."""

    def __init__(self, plane: Tensor, point: Tensor) -> None:
        self.plane, self.point = plane, point
        self.previous: Tensor | None = None
        self.total = torch.zeros(point.shape[:-1], dtype=point.dtype, device=point.device)

    def add(self, h: Tensor) -> None:
        z = ((h - self.point).unsqueeze(-2) @ self.plane).squeeze(-2)  # [..., 2]
        angle = torch.atan2(z[..., 1], z[..., 0])
        if self.previous is not None:
            step = torch.remainder(angle - self.previous + math.pi, 2 * math.pi) - math.pi
            self.total += step.nan_to_num(0.0)
        self.previous = angle


def _mean_input_l1(u: np.ndarray, v: np.ndarray, width: int) -> np.ndarray:
    """Mean over inputs of the L1 difference of ``width`` features per input: ``[N, C * width],
    [M, C * width] -> [N, M]``."""
    u, v = np.atleast_2d(np.asarray(u, dtype=np.float64)), np.atleast_2d(np.asarray(v, dtype=np.float64))
    if u.shape[1] != v.shape[1] or u.shape[1] % width:
        raise ValueError(f"sine signatures must share a length C * {width}; got {u.shape[1]}, {v.shape[1]}")
    if u.shape[1] == 0:
        return np.zeros((len(u), len(v)))
    diff = np.abs(u[:, None, :] - v[None, :, :]).reshape(len(u), len(v), -1, width)
    return diff.sum(-1).mean(-1)


def _homology_inputs(n_inputs: int, cfg: SineConfig) -> Tensor:
    """Indices of the inputs whose trajectories get persistent homology (evenly spaced)."""
    return torch.linspace(0, n_inputs - 1, min(cfg.n_homology, n_inputs)).round().long().unique()


def _simulate(population: Population, conditions: Tensor, centre: Tensor, keep: Tensor, cfg: SineConfig,
              ) -> tuple[Tensor, Tensor, np.ndarray]:
    """Autonomous runs at every input from a seeded kick off zero, batched over members x
    chunks of inputs, two passes over the measured window (module docstring).

    ``conditions [C, I]``, ``centre [P, C, S]`` (the pair's point; any where none). Returns
    the first readout channel over the window ``[P, C, n_measure]``, the states at the inputs
    ``keep`` over the window ``[P, len(keep), n_measure, S]`` (both float64, CPU), and the
    total angle turned around ``centre`` in the window's top-2 PC plane, ``[P, C]``.
    """
    p, c, s, dev = len(population), len(conditions), population.state_size, population.device
    params = float64_params(population)
    readout_params = {k: v.detach().to(torch.float64) for k, v in population.params.items()}
    gen = torch.Generator().manual_seed(cfg.seed)
    kick = cfg.kick * torch.randn(c, s, generator=gen, dtype=torch.float64)  # the same for every chunking
    chunk = max(1, cfg.max_chunk_bytes // max(1, p * s * s * 8))
    ys, angles = [], []
    kept: dict[int, Tensor] = {}
    keep_set = set(keep.tolist())
    with torch.no_grad():
        for lo in range(0, c, chunk):
            hi = min(c, lo + chunk)
            x = conditions[lo:hi].to(dev, torch.float64).expand(p, hi - lo, -1)
            h = kick[lo:hi].expand(p, hi - lo, s).to(dev)
            for _ in range(cfg.n_transient):
                h = population.step(x, h, params)
            start = h
            moments, y, window = _Moments(start), [], []
            local = [j - lo for j in range(lo, hi) if j in keep_set]
            for _ in range(cfg.n_measure):
                h = population.step(x, h, params)
                moments.add(h)
                y.append(population.readout(h, readout_params)[..., 0])
                if local:
                    window.append(h[:, local])
            turning, h = _TurningAngle(moments.plane(), centre[:, lo:hi].to(dev)), start
            for _ in range(cfg.n_measure):
                h = population.step(x, h, params)
                turning.add(h)
            ys.append(torch.stack(y, -1).cpu())
            angles.append(turning.total.cpu())
            if local:
                states = torch.stack(window, 2).cpu()
                kept |= {lo + j: states[:, i] for i, j in enumerate(local)}
    empty = torch.zeros(p, 0, cfg.n_measure, s, dtype=torch.float64)
    kept_states = torch.stack([kept[j] for j in sorted(kept)], 1) if kept else empty
    readout = torch.cat(ys, 1) if ys else torch.zeros(p, 0, cfg.n_measure, dtype=torch.float64)
    angle = torch.cat(angles, 1).numpy() if angles else np.zeros((p, 0))
    return readout, kept_states, angle


def _oscillation(y: Tensor, cfg: SineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frequency (rad/step) and limit-cycle flag of readout traces ``y [..., T]``."""
    t = y.shape[-1]
    finite = torch.isfinite(y).all(-1)
    y = torch.where(finite.unsqueeze(-1), y, 0.0)
    z = y - y.mean(-1, keepdim=True)
    n_fft = 4 * 2 ** math.ceil(math.log2(t))
    power = torch.fft.rfft(z * torch.hann_window(t, periodic=False, dtype=y.dtype), n=n_fft).abs().square()
    power[..., 0] = 0.0
    k = power[..., 1:-1].argmax(-1, keepdim=True) + 1
    a, b, c = (power.clamp_min(1e-300).log().gather(-1, k + d).squeeze(-1) for d in (-1, 0, 1))
    shift = (0.5 * (a - c) / (a - 2 * b + c)).nan_to_num(0.0).clamp(-0.5, 0.5)
    freq = 2 * math.pi * (k.squeeze(-1) + shift) / n_fft

    half = t // 2
    amp1, amp2 = z[..., :half].std(-1), z[..., half:].std(-1)
    steady = (amp2 >= cfg.min_amplitude) & ((amp2 / amp1.clamp_min(1e-300) - 1).abs() <= cfg.max_amplitude_change)
    lag = (2 * math.pi / freq).round().long().clamp(1, t - 2)  # one period, in steps
    idx = torch.arange(t)
    a_idx = idx.expand(*lag.shape, t)
    valid = a_idx + lag.unsqueeze(-1) < t
    b_val = z.gather(-1, (a_idx + lag.unsqueeze(-1)).clamp(max=t - 1))
    num = (z * b_val * valid).sum(-1)
    den = ((z.square() * valid).sum(-1) * (b_val.square() * valid).sum(-1)).sqrt().clamp_min(1e-300)
    periodic = num / den >= cfg.min_periodicity
    return freq.numpy(), (finite & steady & periodic).numpy()


def _one_loop(states: Tensor, cfg: SineConfig) -> bool:
    """Whether a trajectory ``[T, S]`` has exactly one long-lived H1 bar (False if not finite)."""
    if not bool(torch.isfinite(states).all()):
        return False
    return n_long_lived(persistence(states, cfg.homology_points, cfg.seed)[1], cfg.h1_threshold) == 1


def _nanmedian(a: np.ndarray) -> float:
    """Median of the finite entries (NaN if none)."""
    a = a[np.isfinite(a)]
    return float(np.median(a)) if len(a) else math.nan
