"""The cdi scaffold on hand-built context-gated systems with known line attractors."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from universality import verdicts
from universality.cells.base import Cell, Params
from universality.dynamics import FixedPointConfig, FixedPoints, eigendecompose, find_fixed_points
from universality.population import Member, Population
from universality.scaffold.base import FigureContext
from universality.scaffold.cdi import (
    MIN_DISTINCT,
    SPEC,
    THRESHOLDS,
    CdiConfig,
    compute,
    curve_fit,
    distance,
    extra_claims,
    line_statistics,
    output_range,
    response_modes,
)
from universality.tasks import make_task

TASK = make_task("cdi")  # inputs: u0, u1, context 0, context 1; target gain TASK.scale
GAIN: float = TASK.scale  # type: ignore[attr-defined]
R = output_range(TASK)  # = 1: |scale| * n_time * mean_max
F64 = torch.float64


class GatedLinear(Cell):
    """h' = A h + sum_c x_ctx_c B_c g(u) + b: context c selects the input matrix ``B [P, 2, S, G]``
    acting on the sensory features ``g(u) = u`` (G = 2)."""

    arch = "gatedlinear"

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        raise NotImplementedError

    def features(self, u: Tensor) -> Tensor:
        return u

    def drive(self, params: Params, x: Tensor) -> Tensor:
        bias = params["b"].view(params["b"].shape[0], *([1] * (x.dim() - 2)), -1)
        return torch.einsum("p...c,pcsi,p...i->p...s", x[..., 2:], params["B"], self.features(x[..., :2])) + bias

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        return drive + torch.einsum("pbs,pts->pbt", state, params["A"])


class CurvedLinear(GatedLinear):
    """The gated linear system seen through the smooth invertible map ``h = phi(z) = z + k2 z_1^2
    + k3 z_1^3`` (``k2, k3 [P, S]``, zero in entry 0): ``h' = phi(A phi^-1(h) + drive)``. Its
    line attractor ``{z_2.. = 0}`` becomes the curve ``h(y) = y e_1 + k2 y^2 + k3 y^3`` (y = h_1),
    with the same eigenvalues everywhere and the slow eigenvector along the curve's tangent."""

    arch = "curvedlinear"

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        k2, k3 = params["k2"][:, None], params["k3"][:, None]
        h1 = state[..., :1]
        z = super().recur(params, drive, state - k2 * h1**2 - k3 * h1**3)
        return z + k2 * z[..., :1] ** 2 + k3 * z[..., :1] ** 3


class ScatteredPlane(GatedLinear):
    """A gated linear system whose sensory features are ``(u, sin(17 u))`` (G = 4): pulses of
    different amplitudes land at a second coordinate that is no smooth function of the first
    (at the default pulse amplitudes, steps of 1/6, it zig-zags: sin turns by 2.83 rad a step)."""

    arch = "scatteredplane"

    def features(self, u: Tensor) -> Tensor:
        return torch.cat([u, torch.sin(17 * u)], -1)


def gated_population(a: Tensor, b_in: Tensor, readout: Tensor, cell: Cell | None = None,
                     **extra: Tensor) -> Population:
    """``a [P, S, S]``, ``b_in [P, 2, S, G]``, ``readout [P, 1, S]`` (float64) as a population."""
    p, s = a.shape[:2]
    cell = GatedLinear() if cell is None else cell
    members = [Member(TASK.name, cell.arch, cell.activation, s, 0.0, 1e-3, i) for i in range(p)]
    params = {"A": a, "B": b_in, "b": torch.zeros(p, s, dtype=F64), "readout.weight": readout,
              "readout.bias": torch.zeros(p, 1, dtype=F64), **extra}
    return Population(cell, TASK, s, members, params)


def diag(values: list[float]) -> Tensor:
    return torch.diag(torch.tensor(values, dtype=F64))[None]


def diagonal_integrator(eigenvalues: list[float], into: list[float], channels: tuple[int, int] = (0, 1)) -> Population:
    """``A = diag(eigenvalues)``; in context c, channel ``channels[c]`` drives ``GAIN * into``;
    readout ``into``."""
    s = len(eigenvalues)
    v = torch.tensor(into, dtype=F64)
    b_in = torch.zeros(1, 2, s, 2, dtype=F64)
    for ctx, channel in enumerate(channels):
        b_in[0, ctx, :, channel] = GAIN * v
    return gated_population(diag(eigenvalues), b_in, v.view(1, 1, s))


def scaffold(pop: Population, config: CdiConfig | None = None):
    """The scaffolds of ``pop`` at the task's conditions (the search there is compute's own)."""
    return compute(pop, FixedPoints.empty(len(pop), TASK.conditions(), pop.state_size, {}), config)


# ---------------------------------------------------------------------- lines
def test_straight_line_attractor_is_canonical():
    (sc,) = scaffold(diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0]))
    n = sc.numbers
    assert sc.canonical and sc.task == "cdi" and sc.criteria == {"line_attractor": True, "pc1_line": True}
    for c in range(2):
        # pulses of amplitude a in [-1, 1] integrate to y = a R and stay: 13 distinct values over [-R, R]
        assert n[f"n_distinct_ctx{c}"] == 13
        assert n[f"readout_span_ctx{c}"] == pytest.approx(2.0, rel=1e-9)
        assert n[f"curve_r2_ctx{c}"] > 1 - 1e-9 and n[f"line_pc1_ctx{c}"] > 1 - 1e-9
        assert n[f"slow_share_ctx{c}"] == pytest.approx(1.0, abs=1e-9)
        assert n[f"top_eig_ctx{c}"] == pytest.approx(1.0, abs=1e-12)
        assert n[f"second_eig_ctx{c}"] == pytest.approx(0.5, abs=1e-12)
        assert n[f"n_slow_ctx{c}"] == 1
        # W P_s B e_rel = GAIN: the slow mode integrates at exactly the task's gain
        assert n[f"selection_relevant_ctx{c}"] == pytest.approx(1.0, rel=1e-9)
        assert n[f"selection_irrelevant_ctx{c}"] < 1e-12
        assert n[f"selection_sign_ctx{c}"] == 1
        assert n[f"modes_90_ctx{c}"] == 1
    np.testing.assert_allclose(n["spectrum"], [1.0, 0.5, 0.3], atol=1e-12)
    # topology per context: line present, one-dimensional, tangent slow, selection +1
    np.testing.assert_allclose(sc.topology, [1, 1, 1, 1] * 2)
    # dynamics per context: |lambda_1|, |lambda_2|, log10 ratio (clipped at 2) / 4, modes_90 / 10, 1 slow mode of 4
    np.testing.assert_allclose(sc.dynamics, [1.0, 0.5, 0.5, 0.1, 0.25] * 2, atol=1e-12)


def test_curved_line_attractor_is_one_dimensional_where_pc1_is_not():
    k2 = torch.tensor([[0.0, 2.0, 0.0]], dtype=F64)
    k3 = torch.tensor([[0.0, 0.0, 1.5]], dtype=F64)
    base = diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0])
    pop = gated_population(base.params["A"], base.params["B"], base.params["readout.weight"], CurvedLinear(),
                           k2=k2, k3=k3)
    (sc,) = scaffold(pop)
    n = sc.numbers
    # ground truth: the points lie on (y, 2 y^2, 1.5 y^3), y = a R at the 13 pulse amplitudes
    y = np.linspace(-1, 1, 13)
    curve = np.stack([y, 2 * y**2, 1.5 * y**3], 1)
    share = np.linalg.svd(curve - curve.mean(0), compute_uv=False) ** 2
    assert share[0] / share.sum() < 0.8  # a strongly curved line
    for c in range(2):
        assert n[f"line_pc1_ctx{c}"] < THRESHOLDS["line_pc1"]
        assert n[f"curve_r2_ctx{c}"] > 1 - 1e-9
        assert n[f"slow_share_ctx{c}"] == pytest.approx(1.0, abs=1e-6)  # the slow eigenvector is the tangent
        assert n[f"top_eig_ctx{c}"] == pytest.approx(1.0, abs=1e-9)
    assert sc.canonical and sc.criteria == {"line_attractor": True, "pc1_line": False}


def test_points_spread_in_two_dimensions_fail_the_curve_test():
    # a planar grid read out along its first axis: the second coordinate is independent of y,
    # so no curve in y explains it, R^2 = var(x_1) / (var(x_1) + var(x_2)) = 1/2 exactly
    g = torch.linspace(-1, 1, 9, dtype=F64)
    grid = torch.cartesian_prod(g, g)
    points = torch.cat([grid, torch.zeros(len(grid), 1, dtype=F64)], 1)[None, None]  # [1, 1, 81, 3]
    fit = curve_fit(points, points[..., 0], torch.ones(1, 1, 81, dtype=torch.bool))
    assert fit["r2"].item() == pytest.approx(0.5, abs=1e-12)
    # too few distinct readout values: a cubic passes through any 4, so no verdict of one-dimensionality
    few = curve_fit(points[:, :, :9 * (MIN_DISTINCT - 1)], points[:, :, :9 * (MIN_DISTINCT - 1), 0],
                    torch.ones(1, 1, 9 * (MIN_DISTINCT - 1), dtype=torch.bool))
    assert few["n_distinct"].item() == MIN_DISTINCT - 1 and few["r2"].item() == 0


def test_scattered_plane_attractor_is_not_a_line():
    b_in = torch.zeros(1, 2, 3, 4, dtype=F64)
    for ctx in range(2):
        b_in[0, ctx, 0, ctx] = GAIN  # the relevant stream moves h_1 = y ...
        b_in[0, ctx, 1, 2 + ctx] = GAIN  # ... and h_2 by sin(17 u): scattered over the plane
    pop = gated_population(diag([1.0, 1.0, 0.5]), b_in, torch.tensor([[[1.0, 0.0, 0.0]]], dtype=F64),
                           ScatteredPlane())
    (sc,) = scaffold(pop)
    n = sc.numbers
    for c in range(2):
        assert n[f"present_ctx{c}"] and n[f"slow_tangent_ctx{c}"] and n[f"integrates_ctx{c}"]
        assert n[f"curve_r2_ctx{c}"] < THRESHOLDS["curve_r2"] and not n[f"one_dimensional_ctx{c}"]
    assert not sc.canonical


def test_leaky_integrator_is_not_a_line_attractor():
    (sc,) = scaffold(diagonal_integrator([0.8, 0.5, 0.3], [1.0, 0.0, 0.0]))
    n = sc.numbers
    assert not sc.canonical
    assert n["top_eig"] == pytest.approx(0.8, abs=1e-12)
    assert n["readout_span"] < 1e-3  # everything it integrated has leaked away during the hold
    assert not n["present_ctx0"] and not n["present_ctx1"] and n["n_slow_ctx0"] == 0


def test_timescale_rule_admits_the_points_that_hold_memory_for_a_trial():
    """On a line with |lambda_1| = lam (drift -(1 - lam) y per step along it), the rule keeps
    exactly |y| < 0.1 R / (T (1 - lam)): for T = 100, lam = 0.997 gives |y| < 1/3 (span 0.64 R
    on a grid of step 0.02: present), lam = 0.996 |y| < 0.25 (span 0.48 R: no line)."""
    y = torch.linspace(-1, 1, 101, dtype=F64)
    points = torch.stack([y, torch.zeros_like(y)], -1)[None, None].expand(1, 2, 101, 2)
    b = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=F64) * GAIN
    for lam, span in ((0.997, 0.64), (0.996, 0.48)):
        jac = torch.diag(torch.tensor([lam, 0.5], dtype=F64)).expand(1, 2, 101, 2, 2)
        drift = points @ jac.transpose(-1, -2)[..., 0, :, :] - points
        stats = line_statistics(points, torch.ones(1, 2, 101, dtype=torch.bool), drift, jac,
                                torch.stack([b, b.flip(1)])[None, :, None].expand(1, 2, 101, 2, 2),
                                torch.tensor([[[1.0, 0.0]]], dtype=F64), TASK.n_time, R, GAIN)
        assert stats["readout_span"][0, 0].item() == pytest.approx(span, abs=1e-9)
        assert stats["curve_r2"][0, 0].item() > 1 - 1e-9
        assert stats["selection_relevant"][0, 0].item() == pytest.approx(1.0)


def test_points_without_left_eigenvectors_are_skipped_not_scored_zero():
    """A defective Jacobian (a nilpotent Jordan block: the eigenvector matrix is exactly
    singular, as at saturated ReLU LSTM points) has no left eigenvectors, so its point has no
    slow-tangent share. The median skips such points: on a line whose other points have
    share 1, 61 of 101 defective points must not turn the median into 0."""
    y = torch.linspace(-1, 1, 101, dtype=F64)
    points = torch.cat([y[:, None], torch.zeros(101, 3, dtype=F64)], -1)[None, None].expand(1, 2, 101, 4)
    jac = torch.diag(torch.tensor([1.0, 0.5, 0.3, 0.2], dtype=F64)).expand(1, 2, 101, 4, 4).clone()
    defective = torch.arange(101) % 5 < 3  # 61 points: the line's mode beside a nilpotent 3x3 block
    jac[:, :, defective, 1:, 1:] = torch.diag(torch.ones(2, dtype=F64), 1)
    assert eigendecompose(jac[0, 0, 0])[2].isnan().all()  # no left eigenvectors there
    b = torch.zeros(2, 4, 4, dtype=F64)
    b[0, 0, 0] = b[1, 0, 1] = GAIN
    stats = line_statistics(points, torch.ones(1, 2, 101, dtype=torch.bool), torch.zeros_like(points), jac,
                            b[None, :, None].expand(1, 2, 101, 4, 4),
                            torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=F64), TASK.n_time, R, GAIN)
    assert stats["slow_share"][0].tolist() == [1.0, 1.0]
    assert stats["selection_relevant"][0].tolist() == pytest.approx([1.0, 1.0])


# ---------------------------------------------------------------------- selection
def test_selection_sign_of_hand_built_integrators():
    (selective,) = scaffold(diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0], channels=(0, 1)))
    (anti,) = scaffold(diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0], channels=(1, 0)))
    v = torch.tensor([1.0, 0.0, 0.0], dtype=F64)
    both = gated_population(diag([1.0, 0.5, 0.3]), (GAIN * v).view(1, 1, 3, 1).expand(1, 2, 3, 2).clone(),
                            v.view(1, 1, 3))
    (nothing,) = scaffold(both)
    for c in range(2):
        assert selective.numbers[f"selection_sign_ctx{c}"] == 1
        assert anti.numbers[f"selection_sign_ctx{c}"] == -1  # integrates the stream it should ignore
        assert nothing.numbers[f"selection_sign_ctx{c}"] == 0
    assert nothing.numbers["selection_ratio"] == pytest.approx(1.0, rel=1e-9)
    assert nothing.numbers["curve_r2"] > 1 - 1e-9  # a perfect line ...
    assert selective.canonical and not anti.canonical and not nothing.canonical  # ... that does not select
    assert selective.topology[3] == 1 and anti.topology[3] == -1 and nothing.topology[3] == 0


def test_selection_reads_every_slow_mode():
    """Two modes with lambda = 1 and 0.999 share the integration (both slow); r_1 alone would
    see half of it. The slow projector sees the whole gain."""
    (sc,) = scaffold(diagonal_integrator([1.0, 0.999, 0.3], [0.5, 0.5, 0.0]))
    assert sc.numbers["n_slow_ctx0"] == 2
    # readout (0.5, 0.5, 0) of input GAIN (0.5, 0.5, 0): 0.25 + 0.25 per unit gain
    assert sc.numbers["selection_relevant_ctx0"] == pytest.approx(0.5, rel=1e-9)


# ---------------------------------------------------------------------- modes
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
    np.testing.assert_allclose(sc.numbers["spectrum"], eig, atol=1e-12)
    # Fig. 3f curve: accuracy of the top-m response, 1 - |partial - full| / |full|
    curve = [1 - abs(sum(contrib[:m]) - full) / abs(full) for m in range(1, 5)]
    np.testing.assert_allclose(sc.numbers["response_curve"], curve, atol=1e-9)


def test_a_conjugate_pair_is_kept_whole():
    """A weakly driven real mode (0.95) and a strongly driven rotation (0.9 e^{+-0.2i}): the
    first mode alone misses most of the response, the pair completes it, so modes_90 = 3;
    keeping 2 modes keeps the whole pair too (the curve's 2nd and 3rd entries are 1)."""
    rot = 0.9 * torch.tensor([[math.cos(0.2), -math.sin(0.2)], [math.sin(0.2), math.cos(0.2)]], dtype=F64)
    a = torch.zeros(1, 4, 4, dtype=F64)
    a[0, 0, 0], a[0, 1:3, 1:3], a[0, 3, 3] = 0.95, rot, 0.2
    v = torch.tensor([0.05, 1.0, 0.0, 0.0], dtype=F64)
    b_in = torch.zeros(1, 2, 4, 2, dtype=F64)
    b_in[0, 0, :, 0] = b_in[0, 1, :, 1] = GAIN * v
    (sc,) = scaffold(gated_population(a, b_in, torch.tensor([[[1.0, 1.0, 1.0, 0.0]]], dtype=F64)))
    assert sc.numbers["modes_90"] == 3
    assert sc.numbers["response_curve"][0] < 0.5
    np.testing.assert_allclose(sc.numbers["response_curve"][1:3], [1.0, 1.0], atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), s=st.integers(2, 8))
def test_modes_90_never_splits_a_conjugate_pair(seed, s):
    gen = torch.Generator().manual_seed(seed)
    jac = torch.randn(s, s, generator=gen, dtype=F64) / math.sqrt(s)
    eigenvalues, right, left = eigendecompose(jac)
    wr = torch.randn(1, s, generator=gen, dtype=F64).to(right.dtype) @ right  # [O=1, S]
    lb = left @ torch.randn(s, generator=gen, dtype=F64).to(left.dtype)
    modes, _, finite = response_modes(eigenvalues, wr, lb, TASK.n_time, s)
    assert finite
    kept = np.sort_complex(np.linalg.eigvals(jac.numpy()))  # independent: numpy's eigenvalues
    kept = kept[np.argsort(-np.abs(kept), kind="stable")][: int(modes)]
    # the kept eigenvalues are closed under conjugation: their imaginary parts cancel
    assert abs(kept.imag.sum()) < 1e-9


# ---------------------------------------------------------------------- invariance, batching, errors
def random_system(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """A non-normal A with eigenvalues (0.99, 0.9, 0.6, -0.4), random inputs and readout."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.eye(4, dtype=F64) + 0.3 * torch.randn(4, 4, generator=gen, dtype=F64)
    a = v @ torch.diag(torch.tensor([0.99, 0.9, 0.6, -0.4], dtype=F64)) @ torch.linalg.inv(v)
    b_in = GAIN * torch.randn(2, 4, 2, generator=gen, dtype=F64)
    readout = torch.randn(1, 4, generator=gen, dtype=F64)
    return a[None], b_in[None], readout[None]


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 10_000), perm=st.permutations(range(4)))
def test_signatures_invariant_under_orthogonal_conjugation_and_permutation(seed, perm):
    """h -> Q h with Q orthogonal times a permutation: an equivalent network (the initial
    state 0 maps to 0; a shift would change it, and with it the trajectories)."""
    a, b_in, readout = random_system(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=F64))
    q = torch.eye(4, dtype=F64)[list(perm)] @ q
    pop1 = gated_population(a, b_in, readout)
    pop2 = gated_population(q @ a @ q.T, q @ b_in, readout @ q.T)
    (s1,), (s2,) = scaffold(pop1), scaffold(pop2)
    trial = TASK.sample(2, torch.Generator().manual_seed(0)).inputs
    states1, _ = pop1.run(trial)
    states2, _ = pop2.run(trial)
    assert (states1 - states2).abs().max() > 1e-3  # the coordinates really changed
    np.testing.assert_array_equal(s1.topology, s2.topology)
    np.testing.assert_allclose(s1.dynamics, s2.dynamics, atol=1e-8)
    for key in ("curve_r2", "line_pc1", "slow_share", "top_eig", "second_eig", "selection_relevant",
                "selection_irrelevant", "modes_90", "readout_span"):
        assert s1.numbers[key] == pytest.approx(s2.numbers[key], rel=1e-7, abs=1e-9)
    assert s1.numbers["top_eig"] == pytest.approx(0.99, abs=1e-9)
    assert s1.numbers["n_points_ctx0"] == s2.numbers["n_points_ctx0"]


def test_signatures_are_nan_free_and_one_length():
    pops = [diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0, 0]), diagonal_integrator([0.8, 0.5, 0.3], [1.0, 0, 0])]
    a, b_in, readout = (torch.cat([p.params[k] for p in pops]) for k in ("A", "B", "readout.weight"))
    result = scaffold(gated_population(a, b_in, readout), CdiConfig(chunk=1))  # one member per linearisation chunk
    assert [s.canonical for s in result] == [True, False]  # member order kept
    assert result[1].numbers["top_eig"] == pytest.approx(0.8)
    for sc in result:
        assert sc.topology.shape == (8,) and sc.dynamics.shape == (10,)
        assert np.isfinite(sc.topology).all() and np.isfinite(sc.dynamics).all()
        # topology is discrete: flags, signs and capped counts in quarters
        assert np.all(np.isin(sc.topology, [-1, 0, 0.25, 0.5, 0.75, 1]))


def test_distance_is_a_vectorised_l1_metric():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(3, 10)), rng.normal(size=(5, 10))
    d = SPEC.distance(u, v)
    assert d.shape == (3, 5)
    np.testing.assert_allclose(d, [[np.abs(a - b).sum() for b in v] for a in u])
    np.testing.assert_allclose(distance(u, u).diagonal(), 0)
    assert SPEC.task == "cdi" and SPEC.compute is compute and SPEC.claim == "cdi_line_attractor"
    assert [c.name for c in SPEC.criteria if c.headline] == ["line_attractor"]


def test_conditions_must_be_the_contexts():
    pop = diagonal_integrator([1.0, 0.5], [1.0, 0.0])
    fp = find_fixed_points(pop, conditions=torch.tensor([[0.5, 0.0, 1.0, 0.0]]), config=FixedPointConfig(n_initial=4))
    with pytest.raises(ValueError, match="conditions"):
        compute(pop, fp)
    with pytest.raises(ValueError, match="n_levels"):
        CdiConfig(n_levels=4)


# ---------------------------------------------------------------------- claims, figures
def rows_and_scaffolds(modes: dict[str, list[float]]):
    rows: list[SimpleNamespace] = []
    scaffolds: dict[int, dict[str, float]] = {}
    for arch, values in modes.items():
        for v in values:
            member = len(rows)
            rows.append(SimpleNamespace(member=member, task="cdi", arch=arch, activation="tanh", passed=True))
            scaffolds[member] = {"modes_90": v}
    return rows, scaffolds


def test_modes_claim_verdicts():
    def verdict(modes):
        (claim,) = extra_claims(*rows_and_scaffolds(modes))
        assert claim.claim == "cdi_modes"
        return claim

    fewer = verdict({"vanilla": [1, 1, 2, 1, 1, 1], "gru": [3, 4, 5], "lstm": [2, 6, 4], "ugrnn": [3, 3]})
    assert fewer.verdict == "pass" and fewer.value < verdicts.ALPHA and fewer.n == 14
    assert fewer.detail["median_vanilla"] == 1 and fewer.detail["median_gated"] == 3.5
    assert verdict({"vanilla": [3, 4, 5], "gru": [1, 2, 3]}).verdict == "fail"  # vanilla median >= gated
    assert verdict({"vanilla": [1, 2, 3], "gru": [2, 3, 4]}).verdict == "inconclusive"  # fewer, not significant
    thin = verdict({"vanilla": [1], "gru": [3, 4, 5]})
    assert thin.verdict == "inconclusive" and math.isnan(thin.value)
    rows, scaffolds = rows_and_scaffolds({"vanilla": [1, 1], "gru": [3, 3]})
    rows[0].passed = False  # failed networks do not count
    assert extra_claims(rows, scaffolds)[0].n == 3
    assert extra_claims([], {}) == []


def test_figures_draw_spectra_modes_and_line_scores(tmp_path):
    rows, scaffolds = rows_and_scaffolds({"vanilla": [1, 1], "gru": [3, 4]})
    for number in scaffolds.values():
        number.update({"spectrum": [1.0, 0.5, 0.2], "response_curve": [0.5, 0.9, 1.0], "line_pc1": 0.8,
                       "curve_r2": 0.95})
    ctx = FigureContext(rows, scaffolds, lambda s: None, lambda s: None, lambda s: None, tmp_path)
    lines = SPEC.figures(ctx) if SPEC.figures else []
    for name in ("cdi_spectra", "cdi_mode_curves", "cdi_line_scores"):
        assert (tmp_path / f"{name}.png").exists() and any(f"figures/{name}.png" in line for line in lines)
    assert "| gru | 3.5 | 2 |" in lines and "| vanilla | 1 | 2 |" in lines
