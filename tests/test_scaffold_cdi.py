"""The cdi scaffold on context-gated linear systems with known line attractors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from universality.cells.base import Cell, Params
from universality.dynamics import FixedPointConfig, find_fixed_points
from universality.population import Member, Population
from universality.scaffold.cdi import SPEC, THRESHOLDS, CdiConfig, compute, distance
from universality.tasks import make_task

TASK = make_task("cdi")  # inputs: u0, u1, context 0, context 1; target gain TASK.scale
GAIN = TASK.scale
CONFIG = CdiConfig(n_trials=4, n_candidates=32, n_levels=5)


class GatedLinear(Cell):
    """h' = A h + sum_c x_ctx_c B_c u + b: context c selects the input matrix ``B [P, 2, S, 2]``."""

    arch = "gatedlinear"

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        raise NotImplementedError

    def drive(self, params: Params, x: Tensor) -> Tensor:
        bias = params["b"].view(params["b"].shape[0], *([1] * (x.dim() - 2)), -1)
        return torch.einsum("p...c,pcsi,p...i->p...s", x[..., 2:], params["B"], x[..., :2]) + bias

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        return drive + torch.einsum("pbs,pts->pbt", state, params["A"])


def gated_population(
    a: Tensor, b_in: Tensor, readout: Tensor, bias: Tensor | None = None, readout_bias: Tensor | None = None
) -> Population:
    """``a [P, S, S]``, ``b_in [P, 2, S, 2]``, ``readout [P, 1, S]`` (float64) as a population."""
    p, s = a.shape[:2]
    cell = GatedLinear()
    members = [Member(TASK.name, cell.arch, cell.activation, s, 0.0, 1e-3, i) for i in range(p)]
    params = {
        "A": a,
        "B": b_in,
        "b": torch.zeros(p, s, dtype=torch.float64) if bias is None else bias,
        "readout.weight": readout,
        "readout.bias": torch.zeros(p, 1, dtype=torch.float64) if readout_bias is None else readout_bias,
    }
    return Population(cell, TASK, s, members, params)


def diagonal_integrator(eigenvalues: list[float], into: list[float]) -> Population:
    """``A = diag(eigenvalues)``; in context c, channel c drives ``GAIN * into``; readout ``into``."""
    s = len(eigenvalues)
    v = torch.tensor(into, dtype=torch.float64)
    b_in = torch.zeros(1, 2, s, 2, dtype=torch.float64)
    b_in[0, 0, :, 0] = GAIN * v
    b_in[0, 1, :, 1] = GAIN * v
    return gated_population(torch.diag(torch.tensor(eigenvalues, dtype=torch.float64))[None], b_in, v.view(1, 1, s))


def scaffold(pop: Population, config: CdiConfig = CONFIG):
    fp = find_fixed_points(pop, config=FixedPointConfig(n_initial=8))
    return compute(pop, fp, config)


def test_exact_gated_integrator_is_a_canonical_line_attractor():
    (sc,) = scaffold(diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0]))
    n = sc.numbers
    assert sc.canonical and sc.task == "cdi"
    for c in range(2):
        # the line (only at the zero probe level: elsewhere the input drifts along it) is one
        # continuum, whose ends along its neutral direction make a perfect first PC
        assert n[f"n_points_ctx{c}"] == 1
        assert n[f"line_pc1_ctx{c}"] > 1 - 1e-9
        assert n[f"top_eig_ctx{c}"] == pytest.approx(1.0, abs=1e-12)
        assert n[f"second_eig_ctx{c}"] == pytest.approx(0.5, abs=1e-12)
        assert n[f"alignment_ctx{c}"] == pytest.approx(1.0, abs=1e-9)
        # W r1 l1 B e_rel = GAIN: the slow mode integrates at exactly the task's gain
        assert n[f"selection_relevant_ctx{c}"] == pytest.approx(1.0, rel=1e-9)
        assert n[f"selection_irrelevant_ctx{c}"] < 1e-12
        assert n[f"modes_90_ctx{c}"] == 1
    assert n["modes_90"] == 1 and n["selection_ratio"] > 1e6
    np.testing.assert_allclose(n["spectrum"], [1.0, 0.5, 0.3], atol=1e-12)
    assert np.isfinite(sc.vector).all()


def test_leaky_integrator_is_not_a_line_attractor():
    (sc,) = scaffold(diagonal_integrator([0.8, 0.5, 0.3], [1.0, 0.0, 0.0]))
    n = sc.numbers
    assert not sc.canonical
    assert n["top_eig"] == pytest.approx(0.8, abs=1e-12)
    assert abs(n["top_eig"] - 1) > THRESHOLDS["top_eig_tol"]
    # one isolated point per probe input: at each constant input the set collapses to a point
    assert n["n_points_ctx0"] == n["n_points_ctx1"] == CONFIG.n_levels


def test_an_integrator_of_both_streams_selects_nothing():
    v = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    b_in = (GAIN * v).view(1, 1, 3, 1).expand(1, 2, 3, 2).clone()  # each context integrates both streams
    pop = gated_population(torch.diag(torch.tensor([1.0, 0.5, 0.3], dtype=torch.float64))[None], b_in,
                           v.view(1, 1, 3))
    (sc,) = scaffold(pop)
    n = sc.numbers
    assert n["line_pc1"] > 1 - 1e-9 and n["top_eig"] == pytest.approx(1.0, abs=1e-12)  # a perfect line ...
    assert n["selection_ratio"] == pytest.approx(1.0, rel=1e-9) and not sc.canonical  # ... that does not select


def test_integration_spread_over_several_modes():
    eig = [1.0, 0.97, 0.95, 0.3]
    (sc,) = scaffold(diagonal_integrator(eig, [1.0, 1.0, 1.0, 0.0]))
    # independent expectation: each mode contributes sum_{t<T} lambda^t to the readout
    horizon = TASK.n_time
    contrib = [horizon if lam == 1 else (1 - lam**horizon) / (1 - lam) for lam in eig]
    contrib = [c * w for c, w in zip(contrib, [1, 1, 1, 0], strict=True)]
    full = sum(contrib)
    expected = next(m for m in range(1, 5) if abs(sum(contrib[:m]) - full) <= 0.1 * abs(full))
    assert expected == 3
    assert sc.numbers["modes_90"] == expected
    assert sc.canonical  # still a line attractor: the lambda = 1 mode
    np.testing.assert_allclose(sc.numbers["spectrum"], eig, atol=1e-12)
    # Fig. 3f curve: accuracy of the top-m response, 1 - |partial - full| / |full|
    curve = [1 - abs(sum(contrib[:m]) - full) / abs(full) for m in range(1, 5)]
    np.testing.assert_allclose(sc.numbers["response_curve"], curve, atol=1e-9)


def random_system(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A non-normal A with eigenvalues (0.99, 0.9, 0.6, -0.4), random inputs and readout:
    an approximate line attractor with one isolated fixed point per probe input, so the
    points found (hence line_pc1) are exactly determined."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.eye(4, dtype=torch.float64) + 0.3 * torch.randn(4, 4, generator=gen, dtype=torch.float64)
    a = v @ torch.diag(torch.tensor([0.99, 0.9, 0.6, -0.4], dtype=torch.float64)) @ torch.linalg.inv(v)
    b_in = GAIN * torch.randn(2, 4, 2, generator=gen, dtype=torch.float64)
    readout = torch.randn(1, 4, generator=gen, dtype=torch.float64)
    return a[None], b_in[None], readout[None]


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), perm=st.permutations(range(4)))
def test_vector_invariant_under_orthogonal_conjugation_and_permutation(seed, perm):
    """h -> Q h with Q orthogonal times a permutation: an equivalent network (the initial
    state 0 maps to 0; a shift would change it, and with it the trajectories)."""
    a, b_in, readout = random_system(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=torch.float64))
    q = torch.eye(4, dtype=torch.float64)[list(perm)] @ q
    pop1 = gated_population(a, b_in, readout)
    pop2 = gated_population(q @ a @ q.T, q @ b_in, readout @ q.T)
    (s1,), (s2,) = scaffold(pop1), scaffold(pop2)
    trial = TASK.sample(2, torch.Generator().manual_seed(0)).inputs
    states1, out1 = pop1.run(trial)
    states2, out2 = pop2.run(trial)
    assert (states1 - states2).abs().max() > 1e-3  # the coordinates really changed
    assert distance(s1.vector[None], s2.vector[None])[0, 0] < 1e-8
    for key in ("line_pc1", "top_eig", "second_eig", "selection_relevant", "selection_irrelevant", "modes_90"):
        assert s1.numbers[key] == pytest.approx(s2.numbers[key], rel=1e-9, abs=1e-12)
    assert s1.numbers["top_eig"] == pytest.approx(0.99, abs=1e-9)
    assert s1.numbers["n_points_ctx0"] == s2.numbers["n_points_ctx0"]


def test_distance_is_a_vectorised_l1_metric():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(3, 9)), rng.normal(size=(5, 9))
    d = SPEC.distance(u, v)
    assert d.shape == (3, 5)
    np.testing.assert_allclose(d, [[np.abs(a - b).sum() for b in v] for a in u])
    np.testing.assert_allclose(distance(u, u).diagonal(), 0)
    assert SPEC.task == "cdi" and SPEC.compute is compute


def test_conditions_must_be_the_contexts():
    pop = diagonal_integrator([1.0, 0.5], [1.0, 0.0])
    fp = find_fixed_points(pop, conditions=torch.tensor([[0.5, 0.0, 1.0, 0.0]]), config=FixedPointConfig(n_initial=4))
    with pytest.raises(ValueError, match="conditions"):
        compute(pop, fp, CONFIG)
    with pytest.raises(ValueError, match="n_levels"):
        compute(pop, find_fixed_points(pop, config=FixedPointConfig(n_initial=4)), CdiConfig(n_levels=4))


def test_population_of_members_is_batched_and_member_ordered():
    pops = [diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0, 0]), diagonal_integrator([0.8, 0.5, 0.3], [1.0, 0, 0])]
    both = gated_population(*(torch.cat([p.params[k] for p in pops]) for k in ("A", "B", "readout.weight")))
    result = scaffold(both)
    assert [s.canonical for s in result] == [True, False]
    assert result[1].numbers["top_eig"] == pytest.approx(0.8) and not math.isnan(result[0].numbers["top_eig"])
