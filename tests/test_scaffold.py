"""Scaffolds on hand-built systems with known answers: the flip-flop hypercube, the sine
limit cycle, their invariance to changes of coordinates (the paper's thesis), and the
homology fingerprints."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from universality.cells import make_cell
from universality.cells.base import Cell
from universality.dynamics import FixedPointConfig, find_fixed_points
from universality.geometry import distance as geometry_distance
from universality.population import Member, Population
from universality.scaffold import distance_matrix, flipflop, sine
from universality.scaffold.homology import diagram_distance, fingerprint, n_long_lived, persistence
from universality.tasks import make_task

F64 = torch.float64
SINE_TASK = make_task("sine", n_freqs=6)
ONE_LOOP_CHECK = sine.SineConfig(n_homology=1)  # persistent homology at one input only (speed)


# ---------------------------------------------------------------------- hand-built systems
class DiagonalTanh(Cell):
    """h'_j = tanh(w_j h_j + x_j): K independent units, bistable where w_j > 1."""

    arch = "diagtanh"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        return x

    def recur(self, params, drive, state):
        return torch.tanh(params["w"].unsqueeze(1) * state + drive)


class Oscillator(Cell):
    """h' = r R(w) h / sqrt(1 + |h|^2), with w = a x + c the sine task's decoding of the input.

    The radius obeys rho' = r rho / sqrt(1 + rho^2) and the angle advances by exactly w:
    for r > 1 an unstable spiral at 0 (eigenvalues r e^{+-iw}) inside a circular limit
    cycle of radius sqrt(r^2 - 1) and frequency w; for r < 1 a stable spiral, no cycle.
    """

    arch = "oscillator"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        shape = (-1, *([1] * (x.dim() - 1)))
        return params["a"].view(shape) * x + params["c"].view(shape)

    def recur(self, params, drive, h):
        return params["r"].view(-1, 1, 1) * rotate(h, drive) / torch.sqrt(1 + h.square().sum(-1, keepdim=True))


def rotate(h, angle):
    """``h [..., 2]`` rotated by ``angle [..., 1]``."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    return torch.cat([cos * h[..., :1] - sin * h[..., 1:], sin * h[..., :1] + cos * h[..., 1:]], -1)


def to_new(params, h):
    """g = phi(A h + b), phi(u) = c sinh(u / c): ``h [P, ..., S]`` -> ``[P, ..., S]``."""
    flat = h.reshape(h.shape[0], -1, h.shape[-1])
    u = flat @ params["A"].transpose(1, 2) + params["b"].unsqueeze(1)
    c = params["c_phi"].view(-1, 1, 1)
    return (c * torch.sinh(u / c)).reshape(h.shape)


def to_old(params, g):
    """The inverse map h = A^-1 (phi^-1(g) - b)."""
    flat = g.reshape(g.shape[0], -1, g.shape[-1])
    c = params["c_phi"].view(-1, 1, 1)
    u = c * torch.asinh(flat / c) - params["b"].unsqueeze(1)
    return (u @ params["A_inv"].transpose(1, 2)).reshape(g.shape)


class Conjugated(Cell):
    """The inner cell seen through g = phi(A h + b): g' = phi(A F(A^-1(phi^-1(g) - b), x) + b)."""

    def __init__(self, inner: Cell) -> None:
        super().__init__()
        self.inner = inner
        self.arch = inner.arch + "-conjugated"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        return self.inner.drive(params, x)

    def recur(self, params, drive, state):
        return to_new(params, self.inner.recur(params, drive, to_old(params, state)))


class ConjugatedPopulation(Population):
    """Reads out through the inverse change of coordinates, so outputs are unchanged."""

    def readout(self, states, params=None):
        p = self.params if params is None else params
        return super().readout(to_old(p, states), p)


def make_population(cell, task, hidden, params, cls=Population):
    p = next(iter(params.values())).shape[0]
    members = [Member(task.name, cell.arch, cell.activation, hidden, 0.0, 1e-3, s) for s in range(p)]
    return cls(cell, task, hidden, members, params)


def bistable(w, readout_bias=0.0):
    """Diagonal-tanh flip-flop population, one member per row of ``w [P, K]``, readout = identity."""
    w = torch.as_tensor(w, dtype=F64)
    p, k = w.shape
    params = {"w": w, "readout.weight": torch.eye(k, dtype=F64).expand(p, k, k).clone(),
              "readout.bias": torch.full((p, k), readout_bias, dtype=F64)}
    return make_population(DiagonalTanh(), make_task("flipflop", n_bits=k), k, params)


def oscillator(radii, task=SINE_TASK):
    """Oscillator population, one member per radius, reading out the first coordinate."""
    r = torch.as_tensor(radii, dtype=F64)
    p = len(r)
    w0, w1 = task.frequency_of(torch.tensor([0.0, 1.0])).tolist()  # the task's affine decoding
    params = {"r": r, "a": torch.full((p,), w1 - w0, dtype=F64), "c": torch.full((p,), w0, dtype=F64),
              "readout.weight": torch.tensor([[1.0, 0.0]], dtype=F64).expand(p, 1, 2).clone(),
              "readout.bias": torch.zeros(p, 1, dtype=F64)}
    return make_population(Oscillator(), task, 2, params)


def box_states(p, k, n=512, seed=0, half_width=1.2):
    gen = torch.Generator().manual_seed(seed)
    return half_width * (2 * torch.rand(p, n, k, generator=gen, dtype=F64) - 1)


def grid_states(k, levels=(-1.0, -0.1, 0.0, 0.1, 1.0)):
    """Candidates ``[1, 5^k, k]`` on a grid that reaches every fixed point of the bistable units."""
    return torch.tensor(list(itertools.product(levels, repeat=k)), dtype=F64)[None]


def conjugate(pop, seed):
    """``pop`` in random smooth coordinates g = phi(A h + b) (A well conditioned)."""
    gen = torch.Generator().manual_seed(seed)
    p, s = len(pop), pop.state_size
    q1, _ = torch.linalg.qr(torch.randn(p, s, s, generator=gen, dtype=F64))
    q2, _ = torch.linalg.qr(torch.randn(p, s, s, generator=gen, dtype=F64))
    scales = torch.linspace(0.5, 2.0, s, dtype=F64)  # condition number 4: well conditioned, clearly anisotropic
    a = q1 @ torch.diag(scales) @ q2
    extra = {"A": a, "A_inv": torch.linalg.inv(a), "b": 0.3 * torch.randn(p, s, generator=gen, dtype=F64),
             "c_phi": 0.5 + torch.rand(p, generator=gen, dtype=F64)}
    return make_population(Conjugated(pop.cell), pop.task, pop.hidden_size, {**pop.params, **extra},
                           ConjugatedPopulation)


def expected_index_counts(k):
    return [math.comb(k, i) * 2 ** (k - i) for i in range(k + 1)]


def hypercube_upper(k):
    """Independent reference: {(a, b): a < b memories differing in exactly one bit}."""
    return {(a, b) for a, b in itertools.combinations(range(2**k), 2) if bin(a ^ b).count("1") == 1}


def adjacency_from_vector(vector, k):
    """The memory-graph adjacency counts stored in a flip-flop signature."""
    n = 2**k
    rows, cols = np.triu_indices(n)
    upper = vector[k + 2 : k + 2 + len(rows)]
    return {(int(a), int(b)): int(c) for a, b, c in zip(rows, cols, upper, strict=True) if c}


# ---------------------------------------------------------------------- flip-flop
@pytest.mark.parametrize("k", [1, 2, 3])
def test_bistable_units_have_the_canonical_hypercube(k):
    pop = bistable([[2.0] * k, [3.0 + 0.5 * j for j in range(k)]])
    fp = find_fixed_points(pop, initial_states=box_states(2, k))
    scaffolds = flipflop.compute(pop, fp)
    for s in scaffolds:
        n = s.numbers
        assert s.canonical and n["hypercube"] and n["full_cube"]
        assert n["n_points"] == 3**k
        assert [n["n_stable"]] + [n[f"n_index{i}"] for i in range(1, k + 1)] == expected_index_counts(k)
        assert n["n_patterns"] == 2**k and n["n_hypercube_edges"] == k * 2 ** (k - 1)
        assert n["n_other_edges"] == n["n_none_edges"] == n["n_index_above"] == 0
        assert adjacency_from_vector(s.vector, k) == dict.fromkeys(hypercube_upper(k), 1)
    assert distance_matrix(flipflop.SPEC, scaffolds).max() == 0


def test_a_monostable_unit_breaks_the_flipflop_scaffold():
    # unit 1 has one stable state (h = 0, read out as +0.1): memories span only bits 0 and 2
    pop = bistable([[2.0, 0.5, 2.0], [2.0, 2.0, 2.0]], readout_bias=0.1)
    fp = find_fixed_points(pop, initial_states=box_states(2, 3))
    broken, good = flipflop.compute(pop, fp)
    n = broken.numbers
    assert not broken.canonical and not n["hypercube"] and good.canonical
    assert [n["n_stable"], n["n_index1"], n["n_index2"], n["n_index3"]] == [4, 4, 1, 0]
    assert n["n_points"] == 9 and n["n_patterns"] == 4
    memories = [a | 2 | c for a in (0, 1) for c in (0, 4)]  # bit 1 always set
    edges = {(a, b) for a, b in hypercube_upper(3) if a in memories and b in memories}
    assert len(edges) == 4 and adjacency_from_vector(broken.vector, 3) == dict.fromkeys(edges, 1)
    # missing: 4 + 8 + 5 + 1 points of index 0..3, 8 cube edges, 4 patterns
    assert flipflop.distance(broken.vector, good.vector)[0, 0] == 4 + 8 + 5 + 1 + 8 + 4


class BitAndDrift(DiagonalTanh):
    """Unit 0 is a flip-flop bit, h' = tanh(2 h + x) (memories at +-0.957, a saddle at 0).
    Unit 1 is not read out: h' = h + 0.1 tanh(h) (h^2 - 1) / (1 + h^2), stable at 0, unstable
    at +-1, drifting away beyond. The memory graph is the 1-cube (two memories, the saddle
    (0, 0) between them) plus four index-1 points (+-0.957, +-1) that are no cube edge: one
    branch returns to a memory, the other drifts away and reaches none."""

    arch = "bitdrift"

    def recur(self, params, drive, state):
        bit, drift = state[..., :1], state[..., 1:]
        away = 0.1 * torch.tanh(drift) * (drift**2 - 1) / (1 + drift**2)
        return torch.cat([torch.tanh(2 * bit + drive), drift + away], -1)


def test_index1_points_off_the_cube_break_the_hypercube():
    params = {"scale": torch.ones(1, dtype=F64), "readout.weight": torch.tensor([[[1.0, 0.0]]], dtype=F64),
              "readout.bias": torch.zeros(1, 1, dtype=F64)}
    pop = make_population(BitAndDrift(), make_task("flipflop", n_bits=1), 2, params)
    grid = torch.tensor(list(itertools.product((-1.0, -0.1, 0.0, 0.1, 1.0), (-1.2, -1.0, -0.1, 0.0, 0.1, 1.0, 1.2))),
                        dtype=F64)[None]
    (scaffold,) = flipflop.compute(pop, find_fixed_points(pop, initial_states=grid),
                                   flipflop.FlipFlopConfig(max_steps=300))
    n = scaffold.numbers
    assert n["n_stable"] == n["n_patterns"] == 2 and n["n_hypercube_edges"] == 1  # the 1-cube is all there
    assert n["n_index1"] == 5 and n["n_other_edges"] == 4 and n["n_none_edges"] == 4
    assert not n["hypercube"] and not scaffold.canonical  # but other edges are not allowed


def test_a_memory_graph_missing_its_edge_is_no_hypercube():
    # the search starts only at the two memories and, without the round between stable
    # points, does not find the saddle between them
    pop = bistable([[2.0]])
    init = torch.tensor([[[-1.0], [1.0]]], dtype=F64)
    (s,) = flipflop.compute(pop, find_fixed_points(pop, initial_states=init, config=FixedPointConfig(max_pairs=0)))
    n = s.numbers
    assert n["n_stable"] == n["n_patterns"] == 2 and n["n_other_edges"] == 0  # every memory, nothing extra ...
    assert n["n_hypercube_edges"] == 0 and not s.canonical  # ... but the cube edge is missing
    # the targeted saddle search (default) seeds the segment between them and restores the edge
    (s,) = flipflop.compute(pop, find_fixed_points(pop, initial_states=init))
    assert s.numbers["n_hypercube_edges"] == 1 and s.canonical and s.numbers["n_continua"] == 0


def test_flipflop_needs_the_zero_input():
    pop = bistable([[2.0, 2.0]])
    fp = find_fixed_points(pop, conditions=torch.ones(1, 2), initial_states=box_states(1, 2, n=32))
    with pytest.raises(ValueError, match="zero input"):
        flipflop.compute(pop, fp)


# ---------------------------------------------------------------------- sine
def test_oscillator_has_one_unstable_spiral_and_a_limit_cycle_per_input():
    pop = oscillator([1.15, 1.3, 0.9])
    omega = SINE_TASK.frequencies().numpy()
    fp = find_fixed_points(pop, initial_states=box_states(3, 2, n=64))
    scaffolds = sine.compute(pop, fp)
    for s, r in zip(scaffolds[:2], (1.15, 1.3), strict=True):
        features = s.vector.reshape(len(omega), 5)
        np.testing.assert_array_equal(features[:, 0], 1)  # one fixed point per input
        np.testing.assert_allclose(features[:, 1], r, atol=1e-9)  # |lambda| = r
        np.testing.assert_allclose(features[:, 2], 1, atol=1e-9)  # arg lambda = w
        np.testing.assert_array_equal(features[:, 3], 1)  # a limit cycle ...
        np.testing.assert_allclose(features[:, 4], 1, atol=1e-3)  # ... at frequency w
        assert s.canonical and s.numbers["corr"] > 0.999 and s.numbers["median_rel_error"] < 1e-9
        assert s.numbers["frac_one_unstable_oscillatory"] == s.numbers["frac_limit_cycle"] == 1
        assert s.numbers["median_cycle_freq_error"] < 1e-3 and s.numbers["frac_h1_loop"] == 1
    assert sine.distance(scaffolds[0].vector, scaffolds[1].vector)[0, 0] == pytest.approx(0.15, abs=1e-3)

    damped = scaffolds[2]
    assert not damped.canonical
    assert damped.numbers["frac_limit_cycle"] == damped.numbers["frac_one_unstable_oscillatory"] == 0
    assert damped.numbers["corr"] > 0.999  # the linearised frequency still tracks w
    assert math.isnan(damped.numbers["median_cycle_freq_error"])
    np.testing.assert_allclose(damped.vector.reshape(-1, 5)[:, 1], 0.9, atol=1e-9)


class LinearSpiral(Oscillator):
    """h' = r R(w) h: the oscillator without its saturation. For r > 1 the origin is the same
    unstable spiral (eigenvalues r e^{+-iw}), but trajectories grow without bound: no cycle."""

    def recur(self, params, drive, h):
        return params["r"].view(-1, 1, 1) * rotate(h, drive)


def test_an_unstable_spiral_without_a_limit_cycle_is_not_canonical():
    pop = oscillator([1.15])
    pop = make_population(LinearSpiral(), SINE_TASK, 2, pop.params)
    (s,) = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(1, 2, n=16)), ONE_LOOP_CHECK)
    assert s.numbers["frac_one_unstable_oscillatory"] == 1 and s.numbers["corr"] > 0.999  # the spiral is right
    assert s.numbers["median_rel_error"] < 1e-9
    assert s.numbers["frac_limit_cycle"] == 0 and not s.canonical  # but nothing oscillates stably


def test_sine_needs_a_sine_task():
    pop = bistable([[2.0]])
    fp = find_fixed_points(pop, initial_states=box_states(1, 1, n=16))
    with pytest.raises(ValueError, match="SineWave"):
        sine.compute(pop, fp)


# ---------------------------------------------------------------------- invariances
def state_cloud(pop, h0):
    """Member 0's states on shared task trials from the initial states ``h0 [P, B, S]``."""
    trials = pop.task.sample(h0.shape[1], torch.Generator().manual_seed(1))
    states, _ = pop.run(trials.inputs.double(), state=h0)
    return states[0].reshape(-1, pop.state_size)


@settings(max_examples=3)
@given(seed=st.integers(0, 10_000))
def test_scaffold_is_invariant_to_smooth_changes_of_coordinates_but_geometry_is_not(seed):
    """The paper's thesis on exact systems: a conjugated network has the same scaffold
    (topology distance ~0) but a clearly different state-space geometry."""
    cases = [(bistable([[2.0, 2.5]]), flipflop.SPEC, 256, None), (oscillator([1.2]), sine.SPEC, 32, ONE_LOOP_CHECK)]
    for pop, spec, n, config in cases:
        new = conjugate(pop, seed)
        s = pop.state_size
        init = box_states(1, s, n=n, seed=seed)
        a = spec.compute(pop, find_fixed_points(pop, initial_states=init), config)[0]
        b = spec.compute(new, find_fixed_points(new, initial_states=to_new(new.params, init)), config)[0]
        assert a.canonical and b.canonical
        assert spec.distance(a.vector, b.vector)[0, 0] < 1e-4
        h0 = 0.5 * box_states(1, s, n=8, seed=seed + 1)
        cloud_old, cloud_new = state_cloud(pop, h0), state_cloud(new, to_new(new.params, h0))
        torch.testing.assert_close(to_old(new.params, cloud_new[None])[0], cloud_old)  # same trajectories
        assert geometry_distance(cloud_old, cloud_new, "procrustes") > 0.2


def permute_gru(params, perm):
    """A GRU population's parameters with hidden units permuted by ``perm``."""
    h = len(perm)
    rows = torch.cat([perm + g * h for g in range(3)])
    return {"weight_ih": params["weight_ih"][:, rows], "weight_hh": params["weight_hh"][:, rows][:, :, perm],
            "bias_ih": params["bias_ih"][:, rows], "bias_hh": params["bias_hh"][:, rows],
            "readout.weight": params["readout.weight"][:, :, perm], "readout.bias": params["readout.bias"]}


@settings(max_examples=3)
@given(perm=st.permutations(range(4)), seed=st.integers(0, 1000))
def test_signatures_are_invariant_to_permuting_hidden_units(perm, seed):
    perm = torch.tensor(perm)
    # flip-flop: permuted bistable units
    w = torch.tensor([[2.0, 3.0, 2.5, 4.0]], dtype=F64)
    pop = bistable(w)
    new = make_population(DiagonalTanh(), pop.task, 4, {
        "w": w[:, perm], "readout.weight": pop.params["readout.weight"][:, :, perm],
        "readout.bias": pop.params["readout.bias"]})
    init = grid_states(4)
    a = flipflop.compute(pop, find_fixed_points(pop, initial_states=init))[0]
    b = flipflop.compute(new, find_fixed_points(new, initial_states=init[..., perm]))[0]
    assert a.canonical and np.array_equal(a.vector, b.vector)
    # sine: a random GRU and its permutation
    gru = Population.create(make_cell("gru"), SINE_TASK, 4, [seed])
    gen = torch.Generator().manual_seed(seed)
    gru.params = {k: (v + 0.8 * torch.randn(v.shape, generator=gen)).double() for k, v in gru.params.items()}
    new = make_population(gru.cell, SINE_TASK, 4, permute_gru(gru.params, perm))
    init = box_states(1, 4, n=16, seed=seed)
    a = sine.compute(gru, find_fixed_points(gru, initial_states=init), ONE_LOOP_CHECK)[0]
    b = sine.compute(new, find_fixed_points(new, initial_states=init[..., perm]), ONE_LOOP_CHECK)[0]
    np.testing.assert_allclose(a.vector, b.vector, atol=1e-6)


@pytest.mark.parametrize("spec", [flipflop.SPEC, sine.SPEC])
def test_topology_distances_are_vectorised_metrics(spec):
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(4, 15)), rng.normal(size=(3, 15))
    d = spec.distance(u, v)
    assert d.shape == (4, 3) and (d >= 0).all()
    for i, j in itertools.product(range(4), range(3)):
        assert d[i, j] == pytest.approx(spec.distance(u[i], v[j])[0, 0])
        assert d[i, j] == pytest.approx(spec.distance(v[j], u[i])[0, 0])
    assert np.allclose(np.diag(spec.distance(u, u)), 0)


# ---------------------------------------------------------------------- homology
def noisy_circle(n=400, seed=0, noise=0.05):
    rng = np.random.default_rng(seed)
    t = rng.uniform(0, 2 * np.pi, n)
    return np.stack([np.cos(t), np.sin(t), np.zeros(n)], 1) + noise * rng.normal(size=(n, 3))


def blobs(k, n=600, seed=0, sigma=0.05):
    rng = np.random.default_rng(seed)
    corners = np.array(list(itertools.product([-1.0, 1.0], repeat=k)))
    return corners[rng.integers(len(corners), size=n)] + sigma * rng.normal(size=(n, k))


def test_a_noisy_circle_has_one_long_lived_loop():
    h0, h1 = persistence(noisy_circle())
    assert n_long_lived(h1, 0.5) == 1 and n_long_lived(h0, 0.5) == 1
    fp = fingerprint(noisy_circle(), n_top=4)
    assert fp.shape == (8,) and fp[4] > 1.0 and fp[5] < 0.2  # H1: one loop of about sqrt(3) radii


@pytest.mark.parametrize("k", [1, 2, 3])
def test_separated_blobs_have_one_long_lived_component_each(k):
    assert n_long_lived(persistence(blobs(k))[0], 0.5) == 2**k


def test_keeping_the_dense_part_drops_transient_states():
    rng = np.random.default_rng(1)
    cloud = np.concatenate([blobs(3, n=900), rng.uniform(-1, 1, size=(60, 3))])  # sparse transients
    assert n_long_lived(persistence(cloud)[0], 0.25) > 8
    assert n_long_lived(persistence(cloud, keep=0.8)[0], 0.25) == 8


@settings(max_examples=10)
@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-10, 10), seed=st.integers(0, 100))
def test_fingerprints_are_invariant_to_scale_and_shift(scale, shift, seed):
    cloud = noisy_circle(seed=seed)
    a = fingerprint(cloud, n_points=150, seed=seed)
    b = fingerprint(torch.from_numpy(scale * cloud + shift).reshape(4, 100, 3), n_points=150, seed=seed)
    assert diagram_distance(a, b)[0, 0] < 1e-6


def test_diagram_distance_separates_loops_from_blobs():
    prints = np.stack([fingerprint(noisy_circle(seed=s), n_points=150) for s in range(2)]
                      + [fingerprint(blobs(2, seed=s), n_points=150) for s in range(2)])
    d = diagram_distance(prints, prints)
    assert d.shape == (4, 4) and np.allclose(d, d.T) and np.allclose(np.diag(d), 0)
    assert max(d[0, 1], d[2, 3]) < 0.3 < d[:2, 2:].min()
    with pytest.raises(ValueError, match="differ in length"):
        diagram_distance(prints, prints[:, :4])
