"""The sine scaffold on hand-built systems with known answers: an oscillator (one unstable
spiral inside a circular limit cycle per input), the same with a dominant real mode, a
cycle beside the point, a spiral without a cycle, a damped spiral that passes the task;
oscillators whose linearised frequency is a staircase, flat or reversed; the winding number
on synthetic loops; tracking and bias fits on synthetic eigenvalues; invariance to changes
of coordinates."""

import itertools
import math

import numpy as np
import pytest
import torch
from conjugation import conjugate, make_population, permute_gru, to_new, to_old
from hypothesis import given, settings
from hypothesis import strategies as st

from universality.cells import make_cell
from universality.cells.base import Cell
from universality.dynamics import find_fixed_points
from universality.geometry import distance as geometry_distance
from universality.population import Population
from universality.report.figures import FigureContext
from universality.report.figures import sine as sine_figures
from universality.run.layout import RunLayout
from universality.scaffold import sine
from universality.tasks import make_task

F64 = torch.float64
SINE_TASK = make_task("sine", n_freqs=6)
OMEGA = SINE_TASK.frequencies().numpy()
ONE_LOOP_CHECK = sine.SineConfig(n_homology=1)  # persistent homology at one input only (speed)


# ---------------------------------------------------------------------- hand-built systems
def rotate(h, angle):
    """``h [..., 2]`` rotated by ``angle [..., 1]``."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.cat([cos * h[..., :1] - sin * h[..., 1:], sin * h[..., :1] + cos * h[..., 1:]], -1)


def spiral(r, w, d):
    """The saturating spiral r R(w) d / sqrt(1 + |d|^2) of ``d [..., 2]``: |lambda| = r, arg
    lambda = +-w at d = 0; for r > 1 a circular limit cycle of radius sqrt(r^2 - 1), frequency w."""
    return r * rotate(d, w) / torch.sqrt(1 + d.square().sum(-1, keepdim=True))


class Oscillator(Cell):
    """h' = spiral(r, w, h), with w = a x + c the sine task's decoding of the input: an
    unstable spiral at 0 (eigenvalues r e^{+-iw}) inside a limit cycle for r > 1; a stable
    spiral and no cycle for r < 1."""

    arch = "oscillator"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        shape = (-1, *([1] * (x.dim() - 1)))
        return params["a"].view(shape) * x + params["c"].view(shape)

    def recur(self, params, drive, h):
        return spiral(params["r"].view(-1, 1, 1), drive, h)


class LinearSpiral(Oscillator):
    """h' = r R(w) h: the oscillator without its saturation. For r > 1 the origin is the same
    unstable spiral, but trajectories grow without bound: no cycle."""

    def recur(self, params, drive, h):
        return params["r"].view(-1, 1, 1) * rotate(h, drive)


class FlipOscillator(Oscillator):
    """The oscillator in (u, v) beside a flip unit s' = -q s / (1 + 4 s^2): one fixed point
    (0, 0, 0), with eigenvalues r e^{+-iw} and the REAL -q, which dominates for q > r. The
    flip settles on a period-2 orbit s = +-1/(2 sqrt 2) sqrt(q - 1) (variance 0.125 at q =
    1.5, below the cycle's (r^2 - 1) / 2), so the cycle's top-2 plane is (u, v)."""

    def recur(self, params, drive, h):
        s = h[..., 2:]
        flip = -params["q"].view(-1, 1, 1) * s / (1 + 4 * s.square())
        return torch.cat([spiral(params["r"].view(-1, 1, 1), drive, h[..., :2]), flip], -1)


class OffsetOscillator(Oscillator):
    """A spiral around a centre that moves with a bistable unit s' = tanh(2 s) / tanh(2):
    (u, v)' = c(s) + spiral(r(s), w, (u, v) - c(s)), c(s) = (2 (1 - s^2), 0), r(s) = 1.2 +
    0.3 (1 - s^2). Fixed points: P0 = (2, 0, 0), eigenvalues 1.5 e^{+-iw} and the real
    2 / tanh 2 = 2.07 (larger), and (0, 0, +-1), eigenvalues 1.2 e^{+-iw} and 0.14. The
    trajectory leaves s = 0 for s = +-1 and ends on the cycle of radius sqrt(0.44) around
    (0, 0): the largest unstable complex pair is P0's, whose point lies beside the cycle."""

    def recur(self, params, drive, h):
        s = h[..., 2:]
        near = 1 - s.square()
        centre = torch.cat([2 * near, torch.zeros_like(s)], -1)
        uv = centre + spiral(1.2 + 0.3 * near, drive, h[..., :2] - centre)
        return torch.cat([uv, torch.tanh(2 * s) / math.tanh(2.0)], -1)


class DampedOscillator(Oscillator):
    """A stable spiral (r < 1) around c = R(-w) (0, 1) in (u, v), (u, v)' = c + r R(w) ((u, v)
    - c), beside s' = -sin w, read out as u + s. From the zero state (where every trial
    starts) the output at step t (after t + 1 updates) is r^(t + 1) sin(w t): the target,
    decaying with time constant -1 / log r. Eigenvalues r e^{+-iw} and 0."""

    def recur(self, params, drive, h):
        uv = h[..., :2]
        centre = rotate(torch.tensor([0.0, 1.0], dtype=h.dtype).expand_as(uv), -drive)
        uv = centre + params["r"].view(-1, 1, 1) * rotate(uv - centre, drive)
        return torch.cat([uv, -torch.sin(drive)], -1)


class StaircaseOscillator(Oscillator):
    """The oscillator with its frequency w = a x + c replaced per member: ``levels`` > 0
    rounds it to the midpoint of one of ``levels`` equal bins of [lo, lo + width] (a
    staircase in w, as a piecewise-linear cell's linearisation is); ``levels`` = 0 with
    ``reverse`` = 1 maps w to lo + (lo + width) - w (decreasing in w)."""

    def drive(self, params, x):
        w = super().drive(params, x)
        shape = (-1, *([1] * (x.dim() - 1)))
        lo, width = params["lo"].view(shape), params["width"].view(shape)
        levels, reverse = params["levels"].view(shape), params["reverse"].view(shape)
        step = width / levels.clamp_min(1)
        level = torch.floor((w - lo) / step).clamp(torch.zeros_like(levels), (levels - 1).clamp_min(0))
        stair = lo + (level + 0.5) * step
        return torch.where(levels > 0, stair, w + reverse * (2 * lo + width - 2 * w))


def oscillator(radii, cell=None, hidden=2, extra=None, task=SINE_TASK):
    """Oscillator population, one member per radius, reading out the first coordinate."""
    r = torch.as_tensor(radii, dtype=F64)
    p = len(r)
    w0, w1 = task.frequency_of(torch.tensor([0.0, 1.0])).tolist()  # the task's affine decoding
    readout = torch.zeros(p, 1, hidden, dtype=F64)
    readout[..., 0] = 1.0
    params = {"r": r, "a": torch.full((p,), w1 - w0, dtype=F64), "c": torch.full((p,), w0, dtype=F64),
              "readout.weight": readout, "readout.bias": torch.zeros(p, 1, dtype=F64), **(extra or {})}
    return make_population(cell or Oscillator(), task, hidden, params)


def box_states(p, k, n=512, seed=0, half_width=1.2):
    gen = torch.Generator().manual_seed(seed)
    return half_width * (2 * torch.rand(p, n, k, generator=gen, dtype=F64) - 1)


def per_input(vector, width):
    return vector.reshape(len(OMEGA), width)


# ---------------------------------------------------------------------- the canonical oscillator
def test_oscillator_has_one_unstable_spiral_inside_a_limit_cycle_per_input():
    pop = oscillator([1.15, 1.3, 0.9])
    scaffolds = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(3, 2, n=64)))
    for s, r in zip(scaffolds[:2], (1.15, 1.3), strict=True):
        topology, dynamics = per_input(s.topology, 4), per_input(s.dynamics, 3)
        np.testing.assert_array_equal(topology, 1)  # one point, a pair, a cycle, winding once
        np.testing.assert_allclose(dynamics[:, 0], r, atol=1e-9)  # |lambda| = r
        np.testing.assert_allclose(dynamics[:, 1], 1, atol=1e-9)  # arg lambda = w
        np.testing.assert_allclose(dynamics[:, 2], 1, atol=1e-3)  # the cycle runs at w
        n = s.numbers
        assert s.canonical and all(s.criteria.values()) and set(s.criteria) == {c.name for c in sine.CRITERIA}
        assert n["frac_one_complex_unstable_point"] == n["frac_limit_cycle"] == n["frac_point_inside_cycle"] == 1
        assert n["corr"] > 0.999999 and n["rank_corr"] == 1 and n["slope"] == pytest.approx(1, abs=1e-9)
        assert n["n_levels"] == len(OMEGA) and n["cycle_rank_corr"] == 1
        assert n["cycle_slope"] == pytest.approx(1, abs=1e-3)
        assert n["intercept"] == pytest.approx(0, abs=1e-9) and n["median_rel_error"] < 1e-9
        assert np.isnan(n["bias_slope"])  # |lambda| is the same at every input: no fit
        assert n["median_cycle_freq_error"] < 1e-3 and n["frac_h1_loop"] == 1
        assert n["pair_point"] == [0] * len(OMEGA) and set(map(abs, n["winding"])) == {1}
    # the two members differ only in |lambda|: the topology is identical, the dynamics 0.15 apart
    assert sine.distance(scaffolds[0].topology, scaffolds[1].topology)[0, 0] == 0
    assert sine.dynamics_distance(scaffolds[0].dynamics, scaffolds[1].dynamics)[0, 0] == pytest.approx(0.15)

    damped = scaffolds[2]  # a stable spiral: no pair, no cycle
    assert not damped.canonical and not any(damped.criteria.values())
    np.testing.assert_array_equal(per_input(damped.topology, 4), [[1, 0, 0, 0]] * len(OMEGA))
    np.testing.assert_array_equal(damped.dynamics, 0)  # the documented fill
    assert damped.numbers["n_tracked"] == damped.numbers["n_levels"] == 0 and math.isnan(damped.numbers["corr"])
    assert math.isnan(damped.numbers["rank_corr"]) and math.isnan(damped.numbers["cycle_rank_corr"])
    assert math.isnan(damped.numbers["frac_point_inside_cycle"])
    assert math.isnan(damped.numbers["median_cycle_freq_error"])


def test_a_dominant_real_mode_does_not_hide_the_complex_pair():
    """Review point 2: the only fixed point's largest eigenvalue is the real -1.5; the
    unstable complex pair 1.3 e^{+-iw} beneath it is the oscillation."""
    pop = oscillator([1.3], FlipOscillator(), hidden=3, extra={"q": torch.tensor([1.5], dtype=F64)})
    fp = find_fixed_points(pop, initial_states=box_states(1, 3, n=32))
    top = fp.eigenvalues[0, :, 0, 0]  # the dominant eigenvalue of the point, per input
    torch.testing.assert_close(top, torch.full_like(top, -1.5))  # real, and larger than the pair
    (s,) = sine.compute(pop, fp, ONE_LOOP_CHECK)
    np.testing.assert_allclose(s.numbers["abs_lambda"], 1.3, atol=1e-9)
    np.testing.assert_allclose(s.numbers["linear_freq"], OMEGA, atol=1e-9)
    np.testing.assert_array_equal(per_input(s.topology, 4), 1)
    assert s.canonical and s.numbers["slope"] == pytest.approx(1, abs=1e-9)


def test_a_cycle_beside_the_point_fails_point_inside_cycle():
    pop = oscillator([1.0], OffsetOscillator(), hidden=3)
    near = torch.tensor([[[2.1, 0.1, 0.05], [0.1, -0.1, 0.9], [-0.1, 0.1, -0.9]]], dtype=F64)  # one by each point
    fp = find_fixed_points(pop, initial_states=torch.cat([near, box_states(1, 3, n=32, half_width=2.5)], 1))
    (s,) = sine.compute(pop, fp, ONE_LOOP_CHECK)
    n = s.numbers
    assert n["max_n_fixed"] == 3 and n["frac_one_complex_unstable_point"] == 0  # three points per input
    np.testing.assert_allclose(n["abs_lambda"], 1.5, atol=1e-9)  # P0's pair, not the larger real 2.07 ...
    points = fp.points[0, torch.arange(len(OMEGA)), torch.as_tensor(n["pair_point"])]
    torch.testing.assert_close(points, torch.tensor([[2.0, 0.0, 0.0]], dtype=F64).expand(len(OMEGA), 3))
    assert n["frac_limit_cycle"] == 1 and n["n_cycle_and_pair"] == len(OMEGA)  # ... and a cycle, beside it
    assert n["winding"] == [0] * len(OMEGA) and n["frac_point_inside_cycle"] == 0
    assert not s.criteria["point_inside_cycle"] and s.criteria["limit_cycle"] and s.criteria["tracking"]
    np.testing.assert_array_equal(per_input(s.topology, 4)[:, 3], 0)


def test_an_unstable_spiral_without_a_limit_cycle_is_not_canonical():
    pop = oscillator([1.15], LinearSpiral())
    (s,) = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(1, 2, n=16)), ONE_LOOP_CHECK)
    assert s.criteria["one_complex_unstable_point"] and s.criteria["tracking"]  # the spiral is right
    assert s.numbers["frac_limit_cycle"] == 0 and not s.criteria["limit_cycle"] and not s.canonical
    assert s.numbers["n_cycle_and_pair"] == 0 and not s.criteria["point_inside_cycle"]  # no cycle to wind


def test_a_damped_oscillation_that_passes_the_task_fails_the_scaffold():
    """The cheaper solution to the task: a stable spiral whose output r^t sin(w t) decays with
    time constant 10 T scores a normalised MSE of int_0^1 (1 - exp(-s / 10))^2 ds = 0.003 on
    T steps, below the task's 0.01. The scaffold runs past the trial (steps 301-812) and
    needs an unstable point and a steady amplitude: the halves of its window differ by
    exp(-256 / 1000) = 0.77, outside the 10 % tolerance."""
    task = make_task("sine")
    readout = torch.tensor([[[1.0, 0.0, 1.0]]], dtype=F64)
    pop = oscillator([math.exp(-1 / (10 * task.n_time))], DampedOscillator(), hidden=3,
                     extra={"readout.weight": readout}, task=task)
    trials = task.sample(64, torch.Generator().manual_seed(0))
    _, outputs = pop.run(trials.inputs.double())
    assert float(task.score(outputs, trials)) <= task.pass_threshold  # it passes the task ...
    fp = find_fixed_points(pop, initial_states=box_states(1, 3, n=16))
    (s,) = sine.compute(pop, fp, ONE_LOOP_CHECK)
    assert s.numbers["frac_limit_cycle"] == 0 and not s.criteria["limit_cycle"]  # ... not the scaffold
    assert s.numbers["frac_one_complex_unstable_point"] == 0 and not s.canonical


def test_sine_needs_a_sine_task():
    sine_pop = oscillator([1.2])
    pop = make_population(sine_pop.cell, make_task("flipflop", n_bits=1), 2, sine_pop.params)
    fp = find_fixed_points(pop, initial_states=box_states(1, 2, n=16))
    with pytest.raises(ValueError, match="SineWave"):
        sine.compute(pop, fp)


# ---------------------------------------------------------------------- the pair, on given spectra
class Spectra:
    """A stand-in for FixedPoints holding given eigenvalues ``[P, C, N, S]`` (all certified)."""

    def __init__(self, eigenvalues, mask=None):
        self.eigenvalues = torch.as_tensor(eigenvalues, dtype=torch.complex128)
        shape = self.eigenvalues.shape[:-1]
        self.mask = torch.ones(shape, dtype=torch.bool) if mask is None else torch.as_tensor(mask)
        self.fixed = torch.ones(shape, dtype=torch.bool)


def test_the_pair_is_the_largest_unstable_complex_one_over_all_points():
    e = np.exp
    eigenvalues = [[[[1.0, 1.2 * e(0.3j), 1.2 * e(-0.3j)], [2.0, 1.4 * e(0.5j), 1.4 * e(-0.5j)]],  # point 1 wins
                    [[1.0 + 1e-7, 0.9 * e(0.3j), 0.9 * e(-0.3j)], [0.5, 0.5, 0.1]],  # neutral real, stable pair
                    [[-3.0, 1.1 * e(1e-4j), 1.1 * e(-1e-4j)], [0.1, 0.1, 0.1]]]]  # a near-real pair
    pair = sine.complex_pair(Spectra(eigenvalues))
    assert pair.point.tolist() == [[1, -1, -1]] and pair.n_fixed.tolist() == [[2, 2, 2]]
    assert abs(pair.value[0, 0]) == pytest.approx(1.4) and abs(np.angle(pair.value[0, 0])) == pytest.approx(0.5)
    assert np.isnan(pair.value[0, 1:]).all() and not pair.single.any()  # two points each
    single = sine.complex_pair(Spectra(eigenvalues, mask=[[[True, False]] * 3]))  # only the first point
    assert single.point.tolist() == [[0, -1, -1]] and single.single.tolist() == [[True, False, False]]


# ---------------------------------------------------------------------- winding number
def loop(centre, radius=1.0, freq=0.3, n=200, turns=1, extra=None):
    """A circle (or a loop turning ``turns`` times per period) in 4-D, ``[n, 4]``, lifted out
    of its plane by a small third coordinate."""
    t = np.arange(n) * freq
    x = np.stack([centre[0] + radius * np.cos(turns * t), centre[1] + radius * np.sin(turns * t),
                  0.1 * np.cos(2 * t), np.zeros(n) if extra is None else extra], 1)
    return torch.as_tensor(x)


@pytest.mark.parametrize(("point", "expected"), [((0.0, 0.0), 1), ((0.5, -0.3), 1), ((1.5, 0.0), 0),
                                                 ((0.0, -3.0), 0)])
def test_winding_counts_turns_around_points_inside_and_outside(point, expected):
    states = loop((0.0, 0.0))
    p = torch.tensor([*point, 0.0, 0.0], dtype=F64)
    assert sine.winding_number(states, p, 0.3) == expected
    assert sine.winding_number(states.flip(0), p, 0.3) == -expected  # the opposite orientation


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), inside=st.booleans(), turns=st.sampled_from([1, 2]))
def test_winding_is_invariant_to_rotations_shifts_and_scales(seed, inside, turns):
    rng = np.random.default_rng(seed)
    states = loop((0.0, 0.0), freq=0.25, n=300, turns=turns)
    point = torch.tensor([0.2, 0.1, 0.0, 0.0] if inside else [2.0, 0.5, 0.0, 0.0], dtype=F64)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    a = torch.as_tensor(q * rng.uniform(0.5, 2.0))
    b = torch.as_tensor(rng.normal(size=4))
    expected = turns if inside else 0
    got = sine.winding_number(states @ a.T + b, a @ point + b, 0.25)
    assert abs(int(got)) == expected


def test_winding_is_batched():
    states = torch.stack([loop((0.0, 0.0)), loop((3.0, 0.0))])  # [2, T, 4]
    point = torch.zeros(2, 4, dtype=F64)
    assert np.abs(sine.winding_number(states, point, torch.tensor([0.3, 0.3]))).tolist() == [1, 0]


# ---------------------------------------------------------------------- tracking and bias
def test_tracking_reads_correlations_and_slope_of_the_linearised_frequency():
    w = np.linspace(0.1, 0.6, 11)
    corr, rank_corr, slope, intercept = sine.tracking(w, 1.3 * w + 0.02)
    assert corr == pytest.approx(1) and rank_corr == pytest.approx(1)
    assert slope == pytest.approx(1.3) and intercept == pytest.approx(0.02)
    corr, rank_corr, slope, _ = sine.tracking(w, 0.7 - w)  # inverted
    assert corr == pytest.approx(-1) and rank_corr == pytest.approx(-1) and slope == pytest.approx(-1)
    corr, rank_corr, _, _ = sine.tracking(w, np.exp(8 * w))  # curved but monotone: only Pearson is below 1
    assert rank_corr == pytest.approx(1) and corr < 0.95
    assert all(math.isnan(v) for v in sine.tracking(w, np.full_like(w, 0.3)))  # flat: undefined
    assert all(math.isnan(v) for v in sine.tracking(w[:2], w[:2]))  # two points always fit a line


@pytest.mark.parametrize(("freq", "met"), [(lambda w: 1.9 * w, True), (lambda w: 0.55 * w + 0.1, True),
                                           (lambda w: 2.2 * w, False), (lambda w: 0.4 * w + 0.1, False),
                                           (lambda w: w + 0.05 * np.sin(40 * w), True),
                                           (lambda w: w + 0.3 * np.sin(40 * w), False)])
def test_tracking_criterion_needs_correlation_and_a_slope_within_an_octave(freq, met):
    w = np.linspace(0.1, 0.6, 51)
    assert tracking_met(w, freq(w)) is met


def tracking_met(w, freq):
    """The tracking criterion on given linearised frequencies ``freq [K]`` at targets ``w [K]``."""
    _, rank_corr, slope, _ = sine.tracking(w, freq)
    numbers = {"frac_one_complex_unstable_point": 1.0, "frac_limit_cycle": 1.0, "frac_point_inside_cycle": 1.0,
               "rank_corr": rank_corr, "slope": slope}
    return sine.meets(numbers)["tracking"]


def staircase(w, levels):
    """``w [K]`` rounded to the midpoint of one of ``levels`` equal bins of its range."""
    step = np.ptp(w) / levels
    return w.min() + (np.clip(np.floor((w - w.min()) / step), 0, levels - 1) + 0.5) * step


def tied_rank_corr(counts):
    """Spearman's rho of a monotone staircase with ``counts`` inputs per level, from the tie
    formula sqrt(1 - sum(n^3 - n) / (K^3 - K)) (mid-ranks)."""
    n = np.asarray(counts, dtype=np.float64)
    k = n.sum()
    return math.sqrt(1 - (n**3 - n).sum() / (k**3 - k))


def test_tracking_passes_staircases_of_three_or_more_levels_and_no_switch():
    """The rank-correlation threshold sits between the best switch and three equal levels:
    a two-level relation reaches at most 0.894 (4 inputs, split 2/2); three equal levels of 51
    inputs reach 0.943. Lowering MIN_RANK_CORR below 0.894 passes the switch; raising it
    above 0.943 fails the three-level staircase."""
    w4 = np.linspace(0.1, 0.6, 4)
    switch = np.array([0.2, 0.2, 0.5, 0.5])
    assert sine.tracking(w4, switch)[1] == pytest.approx(tied_rank_corr([2, 2])) == pytest.approx(0.894, abs=1e-3)
    assert sine.tracking(w4, switch)[2] == pytest.approx(0.72)  # slope in the band: the correlation decides
    assert not tracking_met(w4, switch)
    w = np.linspace(0.1, 0.6, 51)
    three = staircase(w, 3)
    assert sine.n_levels(three) == 3 and sine.tracking(w, three)[0] < 0.95  # Pearson r would fail it
    assert sine.tracking(w, three)[1] == pytest.approx(tied_rank_corr([17, 17, 17])) == pytest.approx(0.943, abs=1e-3)
    assert tracking_met(w, three)
    halves = staircase(w, 2)  # the best switch on many inputs: sqrt(3) / 2
    assert sine.tracking(w, halves)[1] == pytest.approx(math.sqrt(3) / 2, abs=1e-3) and not tracking_met(w, halves)
    rough = staircase(w, 12)
    monotone = tied_rank_corr(np.unique(rough, return_counts=True)[1])
    rough[[20, 21, 22]] = rough[15]  # a switching unit drops three inputs one level below their neighbours
    assert sine.n_levels(rough) == 12 and 0.9 < sine.tracking(w, rough)[1] < monotone
    assert tracking_met(w, rough)
    assert not tracking_met(w, np.full_like(w, 0.35)) and not tracking_met(w, staircase(w, 6)[::-1])  # flat, reversed


def test_distinct_levels_merge_round_off_only():
    """Eigenvalues of one linearisation differ by round-off (~1e-12): one level; a real step
    of 1e-6 rad/step is a level. MIN_SPREAD = 1e-13 splits the first, 1e-5 merges the second."""
    assert sine.n_levels(np.array([0.2, 0.2 + 1e-12, 0.3, 0.3 + 1e-6, 0.3 - 1e-12])) == 3
    assert sine.n_levels(np.array([])) == 0 and sine.n_levels(np.array([0.4])) == 1


def test_the_scaffold_reads_a_staircase_flat_and_reversed_linearisation_end_to_end():
    """Oscillators whose linearised (and cycle) frequency is a staircase of 3 levels (tracks),
    of 2 levels (a switch), flat, or reversed, over 21 inputs; every other criterion is met."""
    task = make_task("sine", n_freqs=21)
    w = task.frequencies().numpy()
    p = 4
    extra = {"lo": torch.full((p,), w[0], dtype=F64), "width": torch.full((p,), np.ptp(w), dtype=F64),
             "levels": torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=F64),
             "reverse": torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=F64)}
    pop = oscillator([1.2] * p, StaircaseOscillator(), extra=extra, task=task)
    scaffolds = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(p, 2, n=16)), ONE_LOOP_CHECK)
    for s in scaffolds:
        assert s.criteria["one_complex_unstable_point"] and s.criteria["limit_cycle"]
        assert s.criteria["point_inside_cycle"]
    three, two, flat, reverse = (s.numbers for s in scaffolds)
    assert three["n_levels"] == 3 and three["rank_corr"] == pytest.approx(tied_rank_corr([7, 7, 7]))
    assert three["corr"] < 0.95 and 0.5 <= three["slope"] <= 2 and scaffolds[0].canonical
    assert two["n_levels"] == 2 and two["rank_corr"] == pytest.approx(tied_rank_corr([10, 11]))
    assert 0.5 <= two["slope"] <= 2 and not scaffolds[1].criteria["tracking"]
    assert flat["n_levels"] == 1 and math.isnan(flat["rank_corr"]) and not scaffolds[2].criteria["tracking"]
    assert reverse["n_levels"] == 21 and reverse["rank_corr"] == pytest.approx(-1)
    assert reverse["slope"] == pytest.approx(-1) and not scaffolds[3].criteria["tracking"]


def test_bias_is_the_slope_of_relative_error_on_instability():
    w = np.linspace(0.1, 0.6, 11)
    growth = np.linspace(0.01, 0.2, 11)[::-1]
    linear = w * (1 + 0.05 + 2.0 * growth)  # relative error = 0.05 + 2 (|lambda| - 1)
    slope, intercept = sine.frequency_bias(w, 1 + growth, linear)
    assert slope == pytest.approx(2.0) and intercept == pytest.approx(0.05)
    assert all(math.isnan(v) for v in sine.frequency_bias(w, np.full_like(w, 1.1), linear))


# ---------------------------------------------------------------------- invariances and metrics
@settings(max_examples=3, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_the_scaffold_is_invariant_to_smooth_changes_of_coordinates_but_geometry_is_not(seed):
    """The paper's thesis on an exact system: the conjugated oscillator has the same
    topology and dynamics signatures but a clearly different state-space geometry."""
    pop = oscillator([1.2])
    new = conjugate(pop, seed)
    init = box_states(1, 2, n=32, seed=seed)
    a = sine.compute(pop, find_fixed_points(pop, initial_states=init), ONE_LOOP_CHECK)[0]
    b = sine.compute(new, find_fixed_points(new, initial_states=to_new(new.params, init)), ONE_LOOP_CHECK)[0]
    assert a.canonical and b.canonical
    np.testing.assert_array_equal(a.topology, b.topology)
    assert sine.dynamics_distance(a.dynamics, b.dynamics)[0, 0] < 1e-4
    h0 = 0.5 * box_states(1, 2, n=8, seed=seed + 1)
    trials = pop.task.sample(8, torch.Generator().manual_seed(1))
    old_states, _ = pop.run(trials.inputs.double(), state=h0)
    new_states, _ = new.run(trials.inputs.double(), state=to_new(new.params, h0))
    torch.testing.assert_close(to_old(new.params, new_states), old_states)  # the same trajectories
    flat = (old_states[0].reshape(-1, 2), new_states[0].reshape(-1, 2))
    assert geometry_distance(*flat, "procrustes") > 0.2


@settings(max_examples=3, deadline=None)
@given(perm=st.permutations(range(4)), seed=st.integers(0, 1000))
def test_signatures_are_invariant_to_permuting_hidden_units(perm, seed):
    perm = torch.tensor(perm)
    gru = Population.create(make_cell("gru"), SINE_TASK, 4, [seed])
    gen = torch.Generator().manual_seed(seed)
    gru.params = {k: (v + 0.8 * torch.randn(v.shape, generator=gen)).double() for k, v in gru.params.items()}
    new = make_population(gru.cell, SINE_TASK, 4, permute_gru(gru.params, perm))
    init = box_states(1, 4, n=16, seed=seed)
    a = sine.compute(gru, find_fixed_points(gru, initial_states=init), ONE_LOOP_CHECK)[0]
    b = sine.compute(new, find_fixed_points(new, initial_states=init[..., perm]), ONE_LOOP_CHECK)[0]
    np.testing.assert_array_equal(a.topology, b.topology)
    np.testing.assert_allclose(a.dynamics, b.dynamics, atol=1e-6)
    assert a.criteria == b.criteria


@pytest.mark.parametrize(("fn", "width"), [(sine.distance, 4), (sine.dynamics_distance, 3)])
def test_distances_are_vectorised_means_over_inputs(fn, width):
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(4, 5 * width)), rng.normal(size=(3, 5 * width))
    d = fn(u, v)
    assert d.shape == (4, 3) and (d >= 0).all()
    for i, j in itertools.product(range(4), range(3)):
        assert d[i, j] == pytest.approx(np.abs(u[i] - v[j]).sum() / 5)  # L1 per input, averaged
        assert d[i, j] == pytest.approx(fn(v[j], u[i])[0, 0])
    assert np.allclose(np.diag(fn(u, u)), 0)
    with pytest.raises(ValueError, match="C \\*"):
        fn(u[:, :-1], v[:, :-1])


def test_figures_draw_tracking_and_bias(tmp_path):
    pop = oscillator([1.15, 1.3])
    scaffolds = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(2, 2, n=32)), ONE_LOOP_CHECK)

    class Row:
        def __init__(self, member):
            self.member, self.arch, self.activation = member, "gru", "tanh"

    layout = RunLayout(tmp_path)
    layout.figures.mkdir(parents=True)
    ctx = FigureContext("sine", [Row(0), Row(1)], {i: sine.SPEC.read(s.as_dict()) for i, s in enumerate(scaffolds)},
                        None, None, layout)
    lines = sine_figures.figures(ctx)
    assert layout.figure("sine_frequency_tracking.png").is_file() and layout.figure("sine_frequency_bias.png").is_file()
    assert "![relative frequency error vs |λ| - 1](figures/sine_frequency_bias.png)" in lines
    assert sine_figures.figures(FigureContext("sine", [], {}, None, None, layout)) == []
