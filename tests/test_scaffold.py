"""Scaffolds on hand-built systems with known answers: the flip-flop hypercube and its
functional memory, the registry's contract for every task (signatures invariant to
permuting hidden units, distances that are metrics), invariance to changes of
coordinates (the paper's thesis), and the homology fingerprints. (Sine and cdi systems:
tests/test_scaffold_sine.py, tests/test_scaffold_cdi.py.)"""

import dataclasses
import itertools
import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conjugation import conjugate, make_population, permute_gru, to_new, to_old
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from universality.cells import make_cell
from universality.cells.base import Cell
from universality.claims import criteria_rates
from universality.dynamics import FixedPointConfig, find_fixed_points
from universality.geometry import distance as geometry_distance
from universality.population import Population
from universality.report.figures import FigureContext
from universality.report.figures import flipflop as flipflop_figures
from universality.run.layout import RunLayout
from universality.scaffold import SCAFFOLDS, distance_matrix, flipflop
from universality.scaffold.homology import diagram_distance, fingerprint, n_long_lived, persistence
from universality.tasks import make_task

F64 = torch.float64


# ---------------------------------------------------------------------- hand-built systems
class DiagonalTanh(Cell):
    """h'_j = tanh(w_j h_j + x_j): K independent units, bistable where w_j > 1 (with
    ``params["w_in"] [P, S, I]``: h' = tanh(w h + W_in x))."""

    arch = "diagtanh"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        if "w_in" not in params:
            return x
        return torch.einsum("p...i,psi->p...s", x, params["w_in"])

    def recur(self, params, drive, state):
        return torch.tanh(params["w"].unsqueeze(1) * state + drive)


def bistable(w, readout_bias=0.0):
    """Diagonal-tanh flip-flop population, one member per row of ``w [P, K]``, readout = identity."""
    w = torch.as_tensor(w, dtype=F64)
    p, k = w.shape
    params = {"w": w, "readout.weight": torch.eye(k, dtype=F64).expand(p, k, k).clone(),
              "readout.bias": torch.full((p, k), readout_bias, dtype=F64)}
    return make_population(DiagonalTanh(), make_task("flipflop", n_bits=k), k, params)


def box_states(p, k, n=512, seed=0, half_width=1.2):
    gen = torch.Generator().manual_seed(seed)
    return half_width * (2 * torch.rand(p, n, k, generator=gen, dtype=F64) - 1)


def grid_states(k, levels=(-1.0, -0.1, 0.0, 0.1, 1.0)):
    """Candidates ``[1, 5^k, k]`` on a grid that reaches every fixed point of the bistable units."""
    return torch.tensor(list(itertools.product(levels, repeat=k)), dtype=F64)[None]


def expected_index_counts(k):
    return [math.comb(k, i) * 2 ** (k - i) for i in range(k + 1)]


def hypercube_upper(k):
    """Independent reference: {(a, b): a < b memories differing in exactly one bit}."""
    return {(a, b) for a, b in itertools.combinations(range(2**k), 2) if bin(a ^ b).count("1") == 1}


def adjacency_from_topology(vector, k):
    """The memory-graph adjacency counts stored in a flip-flop signature."""
    n = 2**k
    rows, cols = np.triu_indices(n)
    upper = vector[k + 2 : k + 2 + len(rows)]
    return {(int(a), int(b)): int(c) for a, b, c in zip(rows, cols, upper, strict=True) if c}


# ---------------------------------------------------------------------- flip-flop
def memory_modulus(w):
    """|lambda| of tanh(w h) at its nonzero fixed point h* = tanh(w h*): w (1 - h*^2)."""
    h = brentq(lambda x: x - math.tanh(w * x), 0.1, 1.0)
    return w * (1 - h * h)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_bistable_units_have_the_canonical_hypercube(k):
    w = [[2.0] * k, [3.0 + 0.5 * j for j in range(k)]]
    pop = bistable(w)
    fp = find_fixed_points(pop, initial_states=box_states(2, k))
    scaffolds = flipflop.compute(pop, fp)
    hold = flipflop.HOLD_TRIALS * pop.task.n_time
    for s, wm in zip(scaffolds, w, strict=True):
        n = s.numbers
        assert s.canonical and n["hypercube"] and n["full_cube"]
        assert s.criteria == {"hypercube": True, "functional_memory": True}
        assert n["n_points"] == 3**k
        assert [n["n_stable"]] + [n[f"n_index{i}"] for i in range(1, k + 1)] == expected_index_counts(k)
        assert n["n_patterns"] == 2**k and n["n_hypercube_edges"] == k * 2 ** (k - 1)
        assert n["n_other_edges"] == n["n_none_edges"] == n["n_index_above"] == 0
        assert adjacency_from_topology(s.topology, k) == dict.fromkeys(hypercube_upper(k), 1)
        # every pattern held for the whole hold: a memory on the task's timescale
        assert n["patterns_held"] == 2**k and n["escape_times"] == [hold] * 2**k and n["escape_time"] == hold
        assert n["slow_point_memories"] is None  # the search kept no slow points (default)
        # linear dynamics: a memory's moduli are w_j (1 - h*_j^2), sorted; an index-1 saddle
        # has unit j at 0 (|lambda| = w_j), 2^(k-1) saddles per unit
        moduli = sorted((memory_modulus(x) for x in wm), reverse=True)
        second = moduli[1] if k > 1 else flipflop.NO_SECOND_MODE
        saddles = float(np.median([x for x in wm for _ in range(2 ** (k - 1))]))
        np.testing.assert_allclose(s.dynamics, [moduli[0], second, saddles, 1.0], atol=1e-8)
    assert distance_matrix(flipflop.SPEC, scaffolds).max() == 0
    assert distance_matrix(flipflop.SPEC, scaffolds, "dynamics").max() > 0.5  # same topology, other dynamics


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
    assert len(edges) == 4 and adjacency_from_topology(broken.topology, 3) == dict.fromkeys(edges, 1)
    # missing: 4 + 8 + 5 + 1 points of index 0..3, 8 cube edges, 4 patterns
    assert flipflop.distance(broken.topology, good.topology)[0, 0] == 4 + 8 + 5 + 1 + 8 + 4
    # functionally, bit 1 written as -1 decays (h <- tanh(h / 2)) until the readout h + 0.1 turns positive
    h, steps = math.tanh(-1.0), 0
    while math.tanh(0.5 * h) + 0.1 < 0:
        h, steps = math.tanh(0.5 * h), steps + 1
    hold = flipflop.HOLD_TRIALS * pop.task.n_time
    assert n["escape_times"] == [steps if not j & 2 else hold for j in range(8)]
    assert n["patterns_held"] == 4 and not broken.criteria["functional_memory"]


class Drift(DiagonalTanh):
    """h' = h + x - 1/8: no fixed point; a +1 pulse from 0 leaves 7/8, which reaches 0 at the
    7th step of the hold; a -1 pulse runs away from 0 forever."""

    arch = "drift"

    def recur(self, params, drive, state):
        return state + drive - 0.125


def test_functional_memory_counts_the_steps_before_a_pattern_is_lost():
    pop = make_population(Drift(), make_task("flipflop", n_bits=1, n_time=5), 1, {
        "w": torch.ones(1, 1, dtype=F64), "readout.weight": torch.ones(1, 1, 1, dtype=F64),
        "readout.bias": torch.zeros(1, 1, dtype=F64)})
    held, escape = flipflop.functional_memory(pop)
    assert held.tolist() == [[True, False]]  # pattern 0 (bit -1) held, pattern 1 (+1) lost
    assert escape.tolist() == [[flipflop.HOLD_TRIALS * 5, 6]]  # 7/8 - 6/8 > 0 = 7/8 - 7/8
    held, escape = flipflop.functional_memory(pop, hold_trials=1)  # 5 steps: lost after the hold
    assert held.tolist() == [[True, True]] and escape.tolist() == [[5, 5]]


class HoleyCube(DiagonalTanh):
    """Three bistable tanh units, but unit 0's gain drops from w_0 to w_0 - 1.5 m where m =
    s(h_1) s(h_2), s(u) = sigmoid(10 (u - 1/2)), is ~1 only where units 1 and 2 are both high:
    there unit 0 has a single stable state at 0, read out as -0.05 (bit 0 clear). The
    (+, +, +) memory is destroyed; the other seven patterns keep their memories."""

    arch = "holeycube"

    def recur(self, params, drive, state):
        w = params["w"].unsqueeze(1)
        m = torch.sigmoid(10 * (state[..., 1:2] - 0.5)) * torch.sigmoid(10 * (state[..., 2:3] - 0.5))
        gain = torch.cat([w[..., :1] - 1.5 * m, w[..., 1:].expand(*m.shape[:-1], 2)], -1)
        return torch.tanh(gain * state + drive)


def holey_escape(hold):
    """Escape time of pattern 7 in :class:`HoleyCube` (w = 2), by plain float iteration."""
    h = [math.tanh(1.0)] * 3
    for t in range(hold):
        s = [1 / (1 + math.exp(-10 * (u - 0.5))) for u in h[1:]]
        h = [math.tanh((2 - 1.5 * s[0] * s[1]) * h[0]), math.tanh(2 * h[1]), math.tanh(2 * h[2])]
        if h[0] - 0.05 <= 0:
            return t
    return hold


def test_a_destroyed_memory_is_lost_functionally_and_from_the_cube():
    params = {"w": torch.full((1, 3), 2.0, dtype=F64), "readout.weight": torch.eye(3, dtype=F64)[None],
              "readout.bias": torch.tensor([[-0.05, 0.0, 0.0]], dtype=F64)}
    pop = make_population(HoleyCube(), make_task("flipflop", n_bits=3), 3, params)
    (s,) = flipflop.compute(pop, find_fixed_points(pop, initial_states=box_states(1, 3)))
    n, hold = s.numbers, flipflop.HOLD_TRIALS * pop.task.n_time
    expected = holey_escape(hold)
    assert 0 < expected < hold  # the ground truth: pattern 7 is lost, after a few steps
    assert n["escape_times"] == [hold] * 7 + [expected]
    assert n["patterns_held"] == 7 and not s.criteria["functional_memory"]
    assert n["escape_time"] == hold  # the median over patterns: seven of eight held
    assert n["n_stable"] == n["n_patterns"] == 7 and not s.criteria["hypercube"] and not s.canonical


class Ghost(DiagonalTanh):
    """h' = h + x - (h + 1/2) ((h - 1/2)^2 + d) ((h + 3/2)^2 + d) / 2, d = 1e-4: one memory at
    h = -1/2 (pattern 0); near h = 1/2 and h = -3/2 the speed dips to ~2e-4 without reaching 0
    (ghosts of memories, read out as patterns 1 and 0): slow points, never fixed ones. Only
    the ghost at 1/2 carries a pattern that no memory does."""

    arch = "ghost"

    def recur(self, params, drive, state):
        d = 1e-4
        return state + drive - 0.5 * (state + 0.5) * ((state - 0.5) ** 2 + d) * ((state + 1.5) ** 2 + d)


def test_a_pattern_carried_only_by_a_slow_point_is_a_slow_point_memory():
    pop = make_population(Ghost(), make_task("flipflop", n_bits=1), 1, {
        "w": torch.ones(1, 1, dtype=F64), "readout.weight": torch.ones(1, 1, 1, dtype=F64),
        "readout.bias": torch.zeros(1, 1, dtype=F64)})
    init = torch.linspace(-2, 1, 31, dtype=F64).view(1, -1, 1)
    fp = find_fixed_points(pop, initial_states=init, config=FixedPointConfig(include_slow=True))
    (s,) = flipflop.compute(pop, fp)
    n = s.numbers
    assert n["n_stable"] == n["n_patterns"] == 1 and n["n_slow_points"] == 2
    assert n["slow_point_memories"] == 1 and not s.canonical


def test_flipflop_criteria_are_stated():
    names = [c.name for c in flipflop.CRITERIA]
    assert names == ["hypercube", "functional_memory"]
    assert [c.headline for c in flipflop.CRITERIA] == [True, False]
    assert all(c.statement and c.reason for c in flipflop.CRITERIA)


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


def test_flipflop_figures_draw_the_fixed_points_and_the_functional_memory(tmp_path):
    pop = bistable([[2.0, 2.0, 2.0], [2.0, 0.5, 2.0]])
    fp = find_fixed_points(pop, initial_states=box_states(2, 3))
    scaffolds = flipflop.compute(pop, fp)
    states, _ = pop.run(pop.task.sample(4, torch.Generator().manual_seed(0)).inputs.double())
    rows = [SimpleNamespace(member=10 + i, shard="s", idx=i, arch="diagtanh", activation="tanh", hidden=3)
            for i in range(2)]
    layout = RunLayout(tmp_path)
    layout.figures.mkdir(parents=True)
    ctx = FigureContext("flipflop", rows, {10 + i: flipflop.SPEC.read(s.as_dict()) for i, s in enumerate(scaffolds)},
                        lambda shard: fp, lambda shard: states, layout)
    lines = flipflop_figures.figures(ctx)
    drawn = sorted(p.name for p in layout.figures.iterdir())
    assert drawn == ["flipflop_fixed_points_diagtanh.png", "flipflop_functional_memory.png"]
    assert all(any(f"figures/{name}" in line for line in lines) for name in drawn)


# ---------------------------------------------------------------------- invariances
def state_cloud(pop, h0):
    """Member 0's states on shared task trials from the initial states ``h0 [P, B, S]``."""
    trials = pop.task.sample(h0.shape[1], torch.Generator().manual_seed(1))
    states, _ = pop.run(trials.inputs.double(), state=h0)
    return states[0].reshape(-1, pop.state_size)


@settings(max_examples=3)
@given(seed=st.integers(0, 10_000))
def test_scaffold_is_invariant_to_smooth_changes_of_coordinates_but_geometry_is_not(seed):
    """The paper's thesis on an exact system: a conjugated network has the same scaffold
    (topology and dynamics signatures) but a clearly different state-space geometry."""
    pop = bistable([[2.0, 2.5]])
    new = conjugate(pop, seed)
    init = box_states(1, 2, n=256, seed=seed)
    a = flipflop.compute(pop, find_fixed_points(pop, initial_states=init))[0]
    b = flipflop.compute(new, find_fixed_points(new, initial_states=to_new(new.params, init)))[0]
    assert a.canonical and b.canonical and a.criteria == b.criteria
    np.testing.assert_array_equal(a.topology, b.topology)
    np.testing.assert_allclose(a.dynamics, b.dynamics, atol=1e-6)
    h0 = 0.5 * box_states(1, 2, n=8, seed=seed + 1)
    cloud_old, cloud_new = state_cloud(pop, h0), state_cloud(new, to_new(new.params, h0))
    torch.testing.assert_close(to_old(new.params, cloud_new[None])[0], cloud_old)  # same trajectories
    assert geometry_distance(cloud_old, cloud_new, "procrustes") > 0.2


@settings(max_examples=3)
@given(perm=st.permutations(range(4)))
def test_flipflop_signatures_are_invariant_to_permuting_bistable_units(perm):
    perm = torch.tensor(perm)
    w = torch.tensor([[2.0, 3.0, 2.5, 4.0]], dtype=F64)
    pop = bistable(w)
    new = make_population(DiagonalTanh(), pop.task, 4, {
        "w": w[:, perm], "w_in": torch.eye(4, dtype=F64)[perm][None],  # new unit j is old unit perm[j]
        "readout.weight": pop.params["readout.weight"][:, :, perm], "readout.bias": pop.params["readout.bias"]})
    init = grid_states(4)
    a = flipflop.compute(pop, find_fixed_points(pop, initial_states=init))[0]
    b = flipflop.compute(new, find_fixed_points(new, initial_states=init[..., perm]))[0]
    assert a.canonical and np.array_equal(a.topology, b.topology)
    np.testing.assert_allclose(a.dynamics, b.dynamics, atol=1e-9)


# ---------------------------------------------------------------------- the registry, every task
REGISTRY_TASKS = {"flipflop": make_task("flipflop"), "sine": make_task("sine", n_freqs=6), "cdi": make_task("cdi")}
PERMUTATION = torch.tensor([2, 0, 3, 1])


@pytest.fixture(scope="module", params=sorted(SCAFFOLDS))
def registry_case(request):
    """``(spec, scaffolds, permuted)``: two random 4-unit GRUs on the task (weights spread
    so the dynamics are not trivial) and the same networks with hidden units permuted."""
    task = REGISTRY_TASKS[request.param]
    assert set(REGISTRY_TASKS) == set(SCAFFOLDS), "every registered task needs a case here"
    spec = SCAFFOLDS[request.param]
    gru = Population.create(make_cell("gru"), task, 4, [0, 1])
    gen = torch.Generator().manual_seed(0)
    gru.params = {k: (v + 0.8 * torch.randn(v.shape, generator=gen)).double() for k, v in gru.params.items()}
    new = make_population(gru.cell, task, 4, permute_gru(gru.params, PERMUTATION))
    init = box_states(2, 4, n=16)
    scaffolds = spec.compute(gru, find_fixed_points(gru, initial_states=init))
    permuted = spec.compute(new, find_fixed_points(new, initial_states=init[..., PERMUTATION]))
    return spec, scaffolds, permuted


def test_signatures_are_invariant_to_permuting_hidden_units(registry_case):
    spec, scaffolds, permuted = registry_case
    for a, b in zip(scaffolds, permuted, strict=True):
        assert a.criteria == b.criteria and a.canonical == b.canonical
        np.testing.assert_array_equal(a.topology, b.topology)
        np.testing.assert_allclose(a.dynamics, b.dynamics, atol=1e-6)


def test_scaffolds_follow_the_protocol(registry_case):
    spec, scaffolds, _ = registry_case
    names = {c.name for c in spec.criteria}
    for s in scaffolds:
        assert s.task == spec.task and set(s.criteria) == names
        assert s.canonical == all(s.criteria[c.name] for c in spec.criteria if c.headline)
        for signature in (s.topology, s.dynamics):
            assert signature.ndim == 1 and np.isfinite(signature).all()
        json.dumps(s.as_dict(), allow_nan=True)  # JSON-able numbers
    assert len({len(s.topology) for s in scaffolds}) == len({len(s.dynamics) for s in scaffolds}) == 1
    assert all(np.array_equal(s.topology, np.round(s.topology)) for s in scaffolds), "topology is discrete"


def test_stored_scaffolds_read_back_typed_and_a_renamed_criterion_raises(registry_case, monkeypatch):
    spec, scaffolds, _ = registry_case
    stored = [spec.read(json.loads(json.dumps(s.as_dict()))) for s in scaffolds]
    for s, back in zip(scaffolds, stored, strict=True):
        assert back.canonical == s.canonical and dict(back.criteria) == s.criteria and not back.diverged
        assert all(back.met(c.name) == s.criteria[c.name] for c in spec.criteria)
        assert isinstance(back.numbers, spec.numbers)
    with pytest.raises(KeyError):  # a criterion the scaffold does not define is no "unmet"
        stored[0].met("no_such_criterion")
    diverged = spec.read({"canonical": False, "diverged": True})
    assert diverged.diverged and not diverged.canonical and not diverged.met(spec.criteria[0].name)

    renamed = dataclasses.replace(spec.criteria[0], name=spec.criteria[0].name + "_renamed")
    other = type("Renamed", (type(spec),), {"criteria": (renamed, *spec.criteria[1:])})()
    with pytest.raises(ValueError, match="stored criteria"):  # numbers stored under the old name
        other.read(scaffolds[0].as_dict())
    monkeypatch.setitem(SCAFFOLDS, spec.task, other)
    with pytest.raises(KeyError):  # and the rate of the renamed criterion is not counted as unmet
        criteria_rates(spec.task, [SimpleNamespace(member=0, passed=True)], {0: stored[0]})
    with pytest.raises(ValueError, match="lack"):
        spec.read({k: v for k, v in scaffolds[0].as_dict().items() if k != dataclasses.fields(spec.numbers)[0].name})


@pytest.mark.parametrize("signature", ["topology", "dynamics"])
def test_distances_are_vectorised_symmetric_and_zero_on_identical_signatures(registry_case, signature):
    spec, scaffolds, permuted = registry_case
    fn = spec.distance if signature == "topology" else spec.dynamics_distance
    rows = np.stack([getattr(s, signature) for s in [*scaffolds, *permuted]])
    d = fn(rows, rows)
    assert d.shape == (len(rows), len(rows)) and (d >= 0).all()
    np.testing.assert_allclose(d, d.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(d), 0, atol=1e-12)
    for i, j in itertools.product(range(len(rows)), repeat=2):
        assert d[i, j] == pytest.approx(fn(rows[i], rows[j])[0, 0], abs=1e-12)
    n = len(scaffolds)
    np.testing.assert_allclose(np.diag(d[:n, n:]), 0, atol=1e-5)  # a network and its permutation
    np.testing.assert_allclose(distance_matrix(spec, [*scaffolds, *permuted], signature), (d + d.T) / 2, atol=1e-12)


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
