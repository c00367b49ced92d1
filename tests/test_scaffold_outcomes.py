"""What scaffold a network has, in words (``ScaffoldSpec.classify`` / ``describe``, read by
``universality check``): hand-built cells whose dynamics are known analytically, run
through the real fixed-point search and scaffold, then stored, read back and classified;
and the modal / tie rule of ``describe`` on hand-made stored scaffolds.

Cells: a linear integrator (h' = h + x: every state fixed, a 3-dimensional continuum) and
bistable tanh units (the hypercube) for the flip-flop; a linear rotation (h' = c + R(w) (h
- c): |lambda| = 1 exactly), the saturating spiral (canonical) and a stable spiral for the
sine; a plane of fixed points, a leaky and a growing line, and a line the irrelevant
stream moves, for the cdi. The constructions are those of test_scaffold*.py."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conjugation import make_population
from test_scaffold import DiagonalTanh, bistable, box_states
from test_scaffold_cdi import GAIN, ScatteredPlane, T, diag, diagonal_integrator, gated_population
from test_scaffold_cdi import scaffold as cdi_scaffolds
from test_scaffold_sine import ONE_LOOP_CHECK, Oscillator, oscillator, rotate

from universality.dynamics import FixedPointConfig, find_fixed_points
from universality.scaffold import SCAFFOLDS, Outcome, StoredScaffold, cdi, flipflop, sine
from universality.tasks import make_task

F64 = torch.float64


def outcomes(spec, scaffolds):
    """``[(kind, phrase)]`` of computed scaffolds, as ``check`` sees them: stored
    (``as_dict``), read back typed, classified."""
    out = [spec.classify(spec.read(s.as_dict())) for s in scaffolds]
    for (kind, phrase), s in zip(out, scaffolds, strict=True):
        assert (kind == spec.universal_kind) == s.canonical  # never disagrees with the scaffold claim
        assert "nan" not in phrase.lower()
    return out


# ---------------------------------------------------------------------- flip-flop
class LinearIntegrator(DiagonalTanh):
    """h' = h + x: at zero input every state is a fixed point (J = I, neutral in all 3
    directions); a pulse writes its sign pattern, which stays forever."""

    arch = "integrator"

    def recur(self, params, drive, state):
        return state + drive


def test_a_linear_integrator_holds_memories_on_a_continuum_not_a_hypercube():
    params = {"w": torch.ones(1, 3, dtype=F64), "readout.weight": torch.eye(3, dtype=F64)[None],
              "readout.bias": torch.zeros(1, 3, dtype=F64)}
    pop = make_population(LinearIntegrator(), make_task("flipflop", n_bits=3), 3, params)
    (s,) = flipflop.compute(pop, find_fixed_points(pop, initial_states=box_states(1, 3, n=64)))
    n = s.numbers
    # ground truth: one continuum, neutral in all 3 directions, no unstable mode; no isolated point
    assert n["n_continua"] == 1 and n["continuum_dims"] == [3] and n["continuum_index"] == [0]
    assert n["n_stable"] == 0 and n["patterns_held"] == 8 and not s.canonical
    [(kind, phrase)] = outcomes(flipflop.SPEC, [s])
    assert kind == "continuum"
    assert phrase == ("memories held on a 3-dimensional continuum of marginally stable states (neutral "
                      "dimension 3), not 8 isolated attractors")


def test_bistable_units_are_the_hypercube():
    pop = bistable([[2.0] * 3, [2.5, 3.0, 2.5]])
    scaffolds = flipflop.compute(pop, find_fixed_points(pop, initial_states=box_states(2, 3, n=128)))
    assert [kind for kind, _ in outcomes(flipflop.SPEC, scaffolds)] == ["hypercube", "hypercube"]
    outcome = flipflop.SPEC.describe([flipflop.SPEC.read(s.as_dict()) for s in scaffolds])
    assert outcome == Outcome("hypercube", True, 2, 2, {"hypercube": 2}, outcome.reason)
    assert outcome.reason == ("hypercube: 8 isolated stable fixed points joined by index-1 saddles along the 12 "
                              "cube edges (2/2 networks)")


def test_a_monostable_unit_has_fewer_attractors_and_a_missing_saddle_other_saddles():
    # unit 1 of the first member has one stable state (read out as +0.1): 4 memories, 4 patterns
    pop = bistable([[2.0, 0.5, 2.0]], readout_bias=0.1)
    (fewer,) = flipflop.compute(pop, find_fixed_points(pop, initial_states=box_states(1, 3, n=128)))
    # two memories of one bit, the search started at them only: the saddle between is not found
    one = bistable([[2.0]])
    init = torch.tensor([[[-1.0], [1.0]]], dtype=F64)
    (missing,) = flipflop.compute(one, find_fixed_points(one, initial_states=init,
                                                         config=FixedPointConfig(max_pairs=0)))
    [(kind_a, phrase_a), (kind_b, phrase_b)] = outcomes(flipflop.SPEC, [fewer, missing])
    assert kind_a == "fewer_attractors"
    assert phrase_a.startswith("fewer isolated attractors than 8: 4 stable fixed points carrying 4 of 8 patterns")
    assert kind_b == "other_saddles"
    assert phrase_b.startswith("2 isolated attractors, but their index-1 saddles are not the cube's edges: 0 of 1")


class Ghost(DiagonalTanh):
    """One memory at h = -1/2 and a ghost (slow point, speed ~2e-4) at 1/2 read out as the
    other pattern (tests/test_scaffold.py's Ghost)."""

    arch = "ghost"

    def recur(self, params, drive, state):
        d = 1e-4
        return state + drive - 0.5 * (state + 0.5) * ((state - 0.5) ** 2 + d) * ((state + 1.5) ** 2 + d)


def test_a_pattern_on_a_ghost_is_a_memory_on_slow_points():
    pop = make_population(Ghost(), make_task("flipflop", n_bits=1), 1, {
        "w": torch.ones(1, 1, dtype=F64), "readout.weight": torch.ones(1, 1, 1, dtype=F64),
        "readout.bias": torch.zeros(1, 1, dtype=F64)})
    init = torch.linspace(-2, 1, 31, dtype=F64).view(1, -1, 1)
    (s,) = flipflop.compute(pop, find_fixed_points(pop, initial_states=init,
                                                   config=FixedPointConfig(include_slow=True)))
    [(kind, phrase)] = outcomes(flipflop.SPEC, [s])
    assert kind == "slow_points"
    assert phrase.startswith("memories on slow points rather than fixed points: 1 of 2 patterns read out only at "
                             "slow points, 1 on isolated stable fixed points")


# ---------------------------------------------------------------------- sine
class Rotation(Oscillator):
    """h' = c + r R(w) (h - c), c = (0, 1): one fixed point c with eigenvalues r e^{+-iw}; for
    r = 1 the readout circles at amplitude |c| = 1 forever from the zero state: a sustained
    oscillation with no unstable spiral."""

    def recur(self, params, drive, h):
        c = torch.tensor([0.0, 1.0], dtype=h.dtype)
        return c + params["r"].view(-1, 1, 1) * rotate(h - c, drive)


def test_a_linear_rotation_is_no_unstable_spiral():
    pop = oscillator([1.0], Rotation())
    (s,) = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(1, 2, n=16)), ONE_LOOP_CHECK)
    n = s.numbers
    assert n["n_fixed"] == [1] * 6 and n["frac_marginal_pair"] == 1
    assert n["top_pair_abs_lambda"] == pytest.approx([1.0] * 6, abs=1e-12)
    assert n["frac_limit_cycle"] == 1 and n["frac_one_complex_unstable_point"] == 0  # it oscillates, no spiral
    [(kind, phrase)] = outcomes(sine.SPEC, [s])
    assert kind == "linear_rotation"
    assert phrase == ("no unstable spiral: the oscillation is a linear rotation (a fixed point whose complex pair "
                      "has |lambda| = 1.000000, marginal, at 6 of 6 inputs)")


def test_the_marginal_band_is_what_the_limit_cycle_test_cannot_see():
    cfg = sine.SineConfig()
    tol = sine.marginal_tol(cfg)
    # a mode at |lambda| = exp(tol) grows by exactly 1 + max_amplitude_change over half the window
    assert math.exp(tol) ** (cfg.n_measure / 2) == pytest.approx(1 + cfg.max_amplitude_change, rel=1e-12)
    # a slightly damped rotation inside the band is a linear rotation (its amplitude changes by
    # 5 % between the halves: a "cycle"); twice the band out it decays (by 17 %: no cycle)
    pop = oscillator([math.exp(-tol / 2), math.exp(-2 * tol)], Rotation())
    inside, outside = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(2, 2, n=16)),
                                   ONE_LOOP_CHECK)
    assert inside.numbers["frac_limit_cycle"] == 1 and outside.numbers["frac_limit_cycle"] == 0
    assert [kind for kind, _ in outcomes(sine.SPEC, [inside, outside])] == ["linear_rotation", "decays"]


def test_a_saturating_spiral_is_canonical_and_a_stable_spiral_decays():
    pop = oscillator([1.15, 0.9])
    scaffolds = sine.compute(pop, find_fixed_points(pop, initial_states=box_states(2, 2, n=16)), ONE_LOOP_CHECK)
    [(kind_a, _), (kind_b, phrase_b)] = outcomes(sine.SPEC, scaffolds)
    assert kind_a == "unstable_spiral"
    assert kind_b == "decays"
    assert phrase_b == ("no oscillation: it decays to a stable spiral (|lambda| = 0.9000 < 1 at 6 of 6 inputs; a "
                        "limit cycle at 0)")


# ---------------------------------------------------------------------- cdi
def test_a_plane_of_fixed_points_is_a_plane_not_a_line():
    """tests/test_scaffold_cdi.py's scattered plane: the relevant stream moves h_1 (read out)
    and h_2 by sin(17 u), both integrated (eigenvalues 1, 1): values held on a plane."""
    b_in = torch.zeros(1, 2, 3, 4, dtype=F64)
    for ctx in range(2):
        b_in[0, ctx, 0, ctx] = GAIN
        b_in[0, ctx, 1, 2 + ctx] = GAIN
    pop = gated_population(diag([1.0, 1.0, 0.5]), b_in, torch.tensor([[[1.0, 0.0, 0.0]]], dtype=F64),
                           ScatteredPlane())
    (s,) = cdi_scaffolds(pop)
    assert s.criteria["hold"] and not s.canonical
    [(kind, phrase)] = outcomes(cdi.SPEC, [s])
    assert kind == "plane"
    assert phrase.startswith("a plane, not a line: values held on slow points spanning 2 dimensions (2 slow modes;")


@pytest.mark.parametrize(("sign", "kind", "start"), [
    (-1, "leaks", "no line attractor: values leak (a value keeps 0.37 of itself over one trial"),
    (+1, "grows", "no line attractor: values grow (2.72 times over one trial"),
])
def test_a_leaky_or_growing_line_is_no_line_attractor(sign, kind, start):
    """A line with lambda = exp(+-1 / T): a value keeps e^-1 (grows to e) over one trial."""
    (s,) = cdi_scaffolds(diagonal_integrator([math.exp(sign / T), 0.5, 0.3], [1.0, 0.0, 0.0]))
    [(got, phrase)] = outcomes(cdi.SPEC, [s])
    assert got == kind and phrase.startswith(start)


def test_a_line_the_irrelevant_stream_moves_and_the_canonical_line():
    """Member 0: a line attractor beside a fast unit (lambda = 0) that follows the irrelevant
    stream at gain 0.25, read out with weight 1; member 1: the same with gain 0."""
    b_in = torch.zeros(2, 2, 2, 2, dtype=F64)
    for ctx in range(2):
        b_in[:, ctx, 0, ctx] = GAIN
        b_in[0, ctx, 1, 1 - ctx] = 0.25
    pop = gated_population(diag([1.0, 0.0]).expand(2, 2, 2).clone(), b_in,
                           torch.ones(2, 1, 2, dtype=F64))
    moved, line = cdi_scaffolds(pop)
    [(kind_a, phrase_a), (kind_b, _)] = outcomes(cdi.SPEC, [moved, line])
    assert kind_a == "irrelevant_moves"
    assert phrase_a == ("no context selection: the irrelevant stream moves the output by 0.25 of its value (<= 0.2 "
                        "allowed)")
    assert kind_b == "line_attractor"


# ---------------------------------------------------------------------- describe
def flipflop_numbers(**changes) -> flipflop.FlipFlopNumbers:
    """A 3-bit hypercube's numbers with ``changes``."""
    base = {"patterns_held": 8, "escape_times": [640] * 8, "hold_steps": 640, "n_stable": 8, "n_patterns": 8,
            "n_hypercube_edges": 12, "n_other_edges": 0, "n_continua": 0, "continuum_dims": [],
            "continuum_index": [], "slow_point_memories": 0}
    return flipflop.FlipFlopNumbers(**(base | changes))


CUBE = StoredScaffold(True, {"hypercube": True, "functional_memory": True}, flipflop_numbers())
PLANE = StoredScaffold(False, {"hypercube": False, "functional_memory": True},
                       flipflop_numbers(n_stable=0, n_patterns=0, n_hypercube_edges=0, n_continua=1,
                                        continuum_dims=[2], continuum_index=[0]))
FEWER = StoredScaffold(False, {"hypercube": False, "functional_memory": False},
                       flipflop_numbers(n_stable=4, n_patterns=4, n_hypercube_edges=4, patterns_held=4))
EXTRA = StoredScaffold(False, {"hypercube": False, "functional_memory": True}, flipflop_numbers(n_stable=9))
DIVERGED = StoredScaffold(False, {}, None, diverged=True)


def test_describe_reports_the_most_common_kind_with_its_count_and_the_runner_up():
    outcome = flipflop.SPEC.describe([PLANE, CUBE, PLANE, DIVERGED, FEWER, PLANE])
    assert outcome.kind == "continuum" and not outcome.universal
    assert (outcome.count, outcome.n) == (3, 5)  # the diverged member is skipped
    assert outcome.kinds == {"continuum": 3, "fewer_attractors": 1, "hypercube": 1}
    assert outcome.reason == ("memories held on a 2-dimensional continuum of marginally stable states (neutral "
                              "dimension 2), not 8 isolated attractors (3/5 networks); next most common: hypercube "
                              "(1/5)")  # the tie of 1 and 1: the universal kind first


def test_describe_breaks_ties_universal_first_then_alphabetically():
    assert flipflop.SPEC.describe([PLANE, CUBE]).kind == "hypercube"
    assert flipflop.SPEC.describe([CUBE, PLANE]).universal
    tie = flipflop.SPEC.describe([FEWER, EXTRA, EXTRA, FEWER])
    assert tie.kind == "extra_attractors" and tie.count == 2 and not tie.universal
    assert tie.reason.endswith("(2/4 networks); next most common: fewer attractors (2/4)")
    alone = flipflop.SPEC.describe([CUBE])
    assert alone.reason.endswith("(1/1 networks)") and "next" not in alone.reason


def test_describe_refuses_no_networks_and_a_kind_that_disagrees_with_canonical():
    with pytest.raises(ValueError, match="no non-diverged"):
        flipflop.SPEC.describe([])
    with pytest.raises(ValueError, match="no non-diverged"):
        flipflop.SPEC.describe([DIVERGED])

    class Liar(flipflop.FlipFlopScaffold):
        def classify(self, scaffold):
            return "hypercube", "the cube"  # whatever the member's canonical says

    with pytest.raises(ValueError, match="universal kind"):
        Liar().describe([PLANE])


def test_every_registered_scaffold_names_its_universal_kind():
    for spec in SCAFFOLDS.values():
        assert spec.universal_kind


def test_a_number_just_beyond_its_bound_is_written_so_it_reads_beyond():
    numbers = cdi.CdiNumbers(modes_90=1.0, line_pc1=1.0, curve_r2=1.0, kept_min=1.0, kept_max=1.2503, moved=0.0,
                             spectrum=[], response_curve=[])
    criteria = {c.name: c.name != "hold" for c in cdi.CRITERIA}
    kind, phrase = cdi.SPEC.classify(StoredScaffold(False, criteria, numbers))
    assert kind == "grows" and phrase.startswith("no line attractor: values grow (1.2503 times over one trial")


def test_a_value_that_turns_sign_reverses_rather_than_leaks():
    # stored numbers of a network whose hold fails, with the smallest kept fraction set: a
    # negative one is a reversal (the zoo's antisymmetric RNN keeps -1.97), a small positive
    # one a leak
    from dataclasses import replace

    from universality.run.cache import load_scaffolds
    from universality.run.catalog import RunStore

    store = RunStore(Path(__file__).resolve().parents[1] / "reference_results" / "run")
    numbers, _ = load_scaffolds(store, "cdi-vanilla-relu-h64")
    stored = next(s for s in map(cdi.SPEC.read, numbers) if not s.diverged and not s.met("hold"))
    kind_of = {k: cdi.SPEC.classify(replace(stored, numbers=replace(stored.numbers, kept_min=k)))[0]
               for k in (-1.97, 0.5)}
    assert kind_of == {-1.97: "reverses", 0.5: "leaks"}
