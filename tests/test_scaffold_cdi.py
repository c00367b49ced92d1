"""The cdi scaffold on hand-built context-gated systems with known line attractors.

Expected values come from the systems' construction (eigenvalues, pulse integrals,
angles), never from the code under test; each threshold of the criteria has a case on
either side of it.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

from universality.cells.base import Cell, Params
from universality.claims import verdicts
from universality.claims.rules import cdi_modes
from universality.dynamics import FixedPointConfig, FixedPoints, eigendecompose, find_fixed_points
from universality.population import Member, Population
from universality.report.figures import FigureContext
from universality.report.figures import cdi as cdi_figures
from universality.run.layout import RunLayout
from universality.scaffold.base import StoredScaffold
from universality.scaffold.cdi import (
    CRITERIA,
    MIN_DISTINCT,
    SPEC,
    UNSHARED,
    CdiConfig,
    CdiNumbers,
    Timescales,
    compute,
    context_flags,
    curve_fit,
    distance,
    dynamics_distance,
    hold_test,
    line_statistics,
    response_modes,
)
from universality.tasks import make_task

TASK = make_task("cdi")  # inputs: u0, u1, context 0, context 1; target gain TASK.scale
GAIN: float = TASK.scale  # type: ignore[attr-defined]
R: float = TASK.output_range  # type: ignore[attr-defined]  # = 1: |scale| * max_stimulus * mean_max
T = TASK.n_time
#: tau* from its definition: the time constant that keeps 0.8 over one trial.
TAU_STAR = T / math.log(1.25)
#: the slow-mode cutoff from its definition: a mode keeping 0.2 over one trial.
TAU_SLOW = T / math.log(5)
F64 = torch.float64
HEADLINE = ("hold", "one_dimensional", "selection")


class GatedLinear(Cell):
    """h' = A h + sum_c x_ctx_c (B_c g(u) + b_c): context c selects the input matrix ``B [P, 2,
    S, G]`` acting on the sensory features ``g(u) = u`` (G = 2) and adds its constant drive
    ``b_c`` (``cb [P, 2, S]``)."""

    arch = "gatedlinear"

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        raise NotImplementedError

    def features(self, u: Tensor) -> Tensor:
        return u

    def drive(self, params: Params, x: Tensor) -> Tensor:
        gated = torch.einsum("p...c,pcsi,p...i->p...s", x[..., 2:], params["B"], self.features(x[..., :2]))
        return gated + torch.einsum("p...c,pcs->p...s", x[..., 2:], params["cb"])

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        return drive + torch.einsum("pbs,pts->pbt", state, params["A"])


class GatedRelu(GatedLinear):
    """h' = relu(A h + drive): a piecewise-linear network."""

    arch = "gatedrelu"

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        return torch.relu(super().recur(params, drive, state))


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
    (at the probe amplitudes, steps of 1/6, it zig-zags: sin turns by 2.83 rad a step)."""

    arch = "scatteredplane"

    def features(self, u: Tensor) -> Tensor:
        return torch.cat([u, torch.sin(17 * u)], -1)


def gated_population(a: Tensor, b_in: Tensor, readout: Tensor, cell: Cell | None = None,
                     **extra: Tensor) -> Population:
    """``a [P, S, S]``, ``b_in [P, 2, S, G]``, ``readout [P, 1, S]`` (float64) as a population."""
    p, s = a.shape[:2]
    cell = GatedLinear() if cell is None else cell
    members = [Member(TASK.name, cell.arch, cell.activation, s, 0.0, 1e-3, i) for i in range(p)]
    params = {"A": a, "B": b_in, "b": torch.zeros(p, s, dtype=F64), "cb": torch.zeros(p, 2, s, dtype=F64),
              "readout.weight": readout, "readout.bias": torch.zeros(p, 1, dtype=F64), **extra}
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


def headline(sc) -> dict[str, bool]:
    return {name: sc.criteria[name] for name in HEADLINE}


# ---------------------------------------------------------------------- the one time scale
def test_every_time_scale_derives_from_tau_star():
    times = Timescales(T)
    assert times.tau_star == pytest.approx(TAU_STAR, rel=1e-12)
    assert times.hold_bounds(T) == pytest.approx((0.8, 1.25), rel=1e-12)
    assert times.rate == pytest.approx(1 / TAU_STAR, rel=1e-12)
    assert times.tolerance == pytest.approx(0.2, rel=1e-12)
    assert times.tau_slow == pytest.approx(TAU_SLOW, rel=1e-12)


# ---------------------------------------------------------------------- lines
def test_linear_line_attractor_is_canonical():
    (sc,) = scaffold(diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0]))
    n = sc.numbers
    assert sc.canonical and sc.task == "cdi"
    assert sc.criteria == {"hold": True, "one_dimensional": True, "selection": True, "integrates": True,
                           "pc1_line": True}
    for c in range(2):
        # a pulse integrating to v stays at v: kept 1, gain 1; the other stream drives nothing
        assert n[f"kept_min_ctx{c}"] == pytest.approx(1.0, abs=1e-9)
        assert n[f"kept_max_ctx{c}"] == pytest.approx(1.0, abs=1e-9)
        assert n[f"gain_ctx{c}"] == pytest.approx(1.0, abs=1e-6)  # the float32 probe amplitudes
        assert n[f"moved_ctx{c}"] == 0
        # 13 values v = R linspace(-1, 1, 13), all held, all slow
        assert n[f"n_distinct_ctx{c}"] == 13
        assert n[f"readout_span_ctx{c}"] == pytest.approx(2.0, rel=1e-6)
        assert n[f"signs_ctx{c}"] == 2
        assert n[f"curve_r2_ctx{c}"] > 1 - 1e-9 and n[f"line_pc1_ctx{c}"] > 1 - 1e-9
        assert n[f"tangent_cos_ctx{c}"] == pytest.approx(1.0, abs=1e-9)
        assert n[f"top_eig_ctx{c}"] == pytest.approx(1.0, abs=1e-12)
        assert n[f"second_eig_ctx{c}"] == pytest.approx(0.5, abs=1e-12)
        assert n[f"n_slow_ctx{c}"] == 1 and n[f"n_unstable_ctx{c}"] == 0
        # W P_s B e_rel = GAIN: the slow mode integrates at exactly the task's gain
        assert n[f"selection_relevant_ctx{c}"] == pytest.approx(1.0, rel=1e-9)
        assert n[f"selection_irrelevant_ctx{c}"] < 1e-12
        assert n[f"selection_sign_ctx{c}"] == 1
        assert n[f"modes_90_ctx{c}"] == 1
    np.testing.assert_allclose(n["spectrum"], [1.0, 0.5, 0.3], atol=1e-12)
    # topology per context: a curve (dimension 1), both signs, no fast-growing mode, selection +1
    np.testing.assert_array_equal(sc.topology, [1, 2, 0, 1] * 2)
    # dynamics per context: kept points, |lambda_1|, |lambda_2|, log10 ratio (clipped at 2) / 4,
    # modes_90 / 10, 1 slow mode of 4
    np.testing.assert_allclose(sc.dynamics, [1, 1.0, 0.5, 0.5, 0.1, 0.25] * 2, atol=1e-12)


@pytest.mark.parametrize(("tau", "sign", "holds"), [
    (T, -1, False),  # leaks to 1/e over a trial
    (0.9 * TAU_STAR, -1, False),
    (1.1 * TAU_STAR, -1, True),
    (5 * T, -1, True),  # keeps exp(-0.2) = 0.82
    (T, +1, False),  # grows to e over a trial
    (0.9 * TAU_STAR, +1, False),
    (1.1 * TAU_STAR, +1, True),
])
def test_leaky_and_growing_lines_change_verdict_at_tau_star(tau, sign, holds):
    """A line ``lambda = exp(sign / tau)``: the hold test, the drift rule (so the line) and
    ``integrates`` all change verdict at tau = tau*, and the kept fraction is lambda^T."""
    lam = math.exp(sign / tau)
    (sc,) = scaffold(diagonal_integrator([lam, 0.5, 0.3], [1.0, 0.0, 0.0]))
    n = sc.numbers
    for c in range(2):
        assert n[f"kept_min_ctx{c}"] == pytest.approx(lam**T, rel=1e-9)
        assert n[f"kept_max_ctx{c}"] == pytest.approx(lam**T, rel=1e-9)
        assert n[f"top_eig_ctx{c}"] == pytest.approx(lam, rel=1e-12)
        assert n[f"selection_sign_ctx{c}"] == 1  # the line's mode is slow either way (tau >= T > T / ln 5)
    assert sc.criteria["hold"] == sc.criteria["one_dimensional"] == sc.criteria["integrates"] == holds
    assert sc.canonical == holds
    if not holds:  # the drift rule keeps the rest point only: no extended slow set
        assert n["n_distinct_ctx0"] == 1 and sc.topology[0] == 0


def test_curved_line_attractor_is_one_dimensional_where_pc1_is_not():
    k2 = torch.tensor([[0.0, 2.0, 0.0]], dtype=F64)
    k3 = torch.tensor([[0.0, 0.0, 1.5]], dtype=F64)
    base = diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0])
    pop = gated_population(base.params["A"], base.params["B"], base.params["readout.weight"], CurvedLinear(),
                           k2=k2, k3=k3)
    (sc,) = scaffold(pop)
    n = sc.numbers
    # ground truth: the points lie on (y, 2 y^2, 1.5 y^3), y = v at the 13 probe values
    y = np.linspace(-1, 1, 13)
    curve = np.stack([y, 2 * y**2, 1.5 * y**3], 1)
    share = np.linalg.svd(curve - curve.mean(0), compute_uv=False) ** 2
    assert share[0] / share.sum() < 0.8  # a strongly curved line
    for c in range(2):
        assert n[f"line_pc1_ctx{c}"] < 0.9
        assert n[f"curve_r2_ctx{c}"] > 1 - 1e-9
        # the local tangent (a chord over neighbouring points) against the exact tangent
        # (1, 4 y, 4.5 y^2): the chord of a curve this bent still lies within a few degrees
        assert n[f"tangent_cos_ctx{c}"] > 0.99
        assert n[f"top_eig_ctx{c}"] == pytest.approx(1.0, abs=1e-9)
    assert sc.canonical and not sc.criteria["pc1_line"]


def test_piecewise_linear_relu_line_attractor_passes():
    """h' = relu(A h + drive), A = [[1, -1], [-1, 1]]: y = h_1 - h_2 is integrated exactly
    along two half-lines (y e_1 for y > 0, -y e_2 for y < 0) bent at a right angle; on each
    the Jacobian diag(active) A has the eigenvalue 1 along the piece and 0 across it."""
    a = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]], dtype=F64)
    b_in = torch.zeros(1, 2, 2, 2, dtype=F64)
    for ctx in range(2):
        b_in[0, ctx, :, ctx] = GAIN * torch.tensor([1.0, -1.0], dtype=F64)
    (sc,) = scaffold(gated_population(a, b_in, torch.tensor([[[1.0, -1.0]]], dtype=F64), GatedRelu()))
    n = sc.numbers
    assert headline(sc) == {"hold": True, "one_dimensional": True, "selection": True}
    # an independent cubic fit (numpy) of the bent line at the 13 probe values: bent, yet a curve
    y = np.linspace(-1, 1, 13)
    h = np.stack([np.maximum(y, 0), np.maximum(-y, 0)], 1)
    residual = sum(((np.polyval(np.polyfit(y, h[:, k], 3), y) - h[:, k]) ** 2).sum() for k in range(2))
    r2 = 1 - residual / ((h - h.mean(0)) ** 2).sum()
    assert 0.9 < r2 < 0.999
    for c in range(2):
        assert n[f"kept_min_ctx{c}"] == pytest.approx(1.0, abs=1e-9) and n[f"kept_max_ctx{c}"] == pytest.approx(1.0)
        assert n[f"curve_r2_ctx{c}"] == pytest.approx(r2, abs=0.02)  # the search may add points on the line
        assert n[f"tangent_cos_ctx{c}"] == pytest.approx(1.0, abs=1e-9)  # away from the bend: along the piece
        assert n[f"line_pc1_ctx{c}"] < 0.9  # the old straightness test fails the bent line


def test_scattered_plane_attractor_holds_but_is_not_one_dimensional():
    b_in = torch.zeros(1, 2, 3, 4, dtype=F64)
    for ctx in range(2):
        b_in[0, ctx, 0, ctx] = GAIN  # the relevant stream moves h_1 = y ...
        b_in[0, ctx, 1, 2 + ctx] = GAIN  # ... and h_2 by sin(17 u): scattered over the plane
    pop = gated_population(diag([1.0, 1.0, 0.5]), b_in, torch.tensor([[[1.0, 0.0, 0.0]]], dtype=F64),
                           ScatteredPlane())
    (sc,) = scaffold(pop)
    n = sc.numbers
    assert sc.criteria["hold"] and sc.criteria["selection"] and not sc.criteria["one_dimensional"]
    assert not sc.canonical
    for c in range(2):
        assert n[f"readout_span_ctx{c}"] >= 1 and n[f"n_distinct_ctx{c}"] >= MIN_DISTINCT  # extended ...
        assert n[f"curve_r2_ctx{c}"] < 0.9 and n[f"dimension_ctx{c}"] == 2  # ... but no curve
        assert n[f"n_slow_ctx{c}"] == 2  # both plane modes are slow
    assert sc.topology[0] == sc.topology[4] == 2


def test_irrelevant_stream_may_move_the_output_by_a_fifth_of_the_value():
    """In context c the irrelevant stream drives a fast unit (lambda = 0) read out with weight
    1 at gain k: during its pulse (amplitude v / (scale D) = v) the output moves by k |v|."""
    def system(k: float) -> Population:
        b_in = torch.zeros(1, 2, 2, 2, dtype=F64)
        for ctx in range(2):
            b_in[0, ctx, 0, ctx] = GAIN  # the line integrates the relevant stream
            b_in[0, ctx, 1, 1 - ctx] = k  # the fast unit follows the irrelevant one
        return gated_population(diag([1.0, 0.0]), b_in, torch.tensor([[[1.0, 1.0]]], dtype=F64))

    for k, held in ((0.15, True), (0.25, False)):
        (sc,) = scaffold(system(k))
        assert sc.numbers["moved"] == pytest.approx(k, rel=1e-6)
        assert sc.criteria["hold"] == held
        assert sc.criteria["selection"]  # the slow mode carries none of the irrelevant input


def test_irrelevant_stream_is_judged_against_the_resting_output():
    """A readout offset that no stream causes (0.05 R: 0.3 of the smallest judged value R/6,
    more than the 0.2 the stream may move) is not the irrelevant stream's doing: the line
    still holds. The same offset beside a stream that moves the output by 0.25 |v| fails."""
    def system(k: float, offset: float) -> Population:
        b_in = torch.zeros(1, 2, 2, 2, dtype=F64)
        for ctx in range(2):
            b_in[0, ctx, 0, ctx] = GAIN
            b_in[0, ctx, 1, 1 - ctx] = k
        return gated_population(diag([1.0, 0.0]), b_in, torch.tensor([[[1.0, 1.0]]], dtype=F64),
                                **{"readout.bias": torch.full((1, 1), offset * R, dtype=F64)})

    for k, held in ((0.0, True), (0.25, False)):
        (sc,) = scaffold(system(k, 0.05))
        assert sc.numbers["moved"] == pytest.approx(k, rel=1e-6, abs=1e-9)
        assert sc.criteria["hold"] == held


def test_hold_test_judges_every_level_from_the_floor_up_both_signs():
    """Synthetic probe outputs: every level kept exactly, but one. A level at 1/6 R (above the
    floor 0.15 R) that leaks fails the context; one at 1/7 R (below it) is not judged."""
    times = Timescales(T)
    d, hold = 50, T

    def outputs(values: Tensor, bad: int, kept: float) -> Tensor:
        out = torch.zeros(1, 1, 2, len(values), d + hold, dtype=F64)
        out[0, 0, 0, :, :d] = values[:, None]  # the relevant output during the stimulus
        out[0, 0, 0, :, d:] = values[:, None]
        out[0, 0, 0, bad, -1] = kept * values[bad]
        return out

    for n_levels, bad, judged in ((13, 5, True), (13, 7, True), (15, 6, False), (15, 8, False)):
        values = R * torch.linspace(-1, 1, n_levels, dtype=F64)
        assert abs(values[bad]) == pytest.approx(R / 6 if n_levels == 13 else R / 7)
        result = hold_test(outputs(values, bad, 0.5), values, d, R, times)
        assert bool(result["held"]) is not judged
        assert hold_test(outputs(values, bad, 0.81), values, d, R, times)["held"].item()
        assert hold_test(outputs(values, bad, 1.26), values, d, R, times)["held"].item() is not judged


def test_a_context_without_slow_points_is_missing_not_zero():
    """Context 1 adds a constant drive 0.02 e_1 per step: every state drifts, nothing is slow
    (the drift moves |y - y0| = |v| <= R in 50 steps, far faster than tau*), and its output
    runs away during the hold. Its dynamics entries are marked missing, and a network missing
    a context is compared on the other one only."""
    pop = diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0])
    pop.params["cb"][0, 1, 0] = 0.02
    (sc,) = scaffold(pop)
    n = sc.numbers
    assert n["n_points_ctx0"] > 0 and n["n_points_ctx1"] == 0
    assert not sc.criteria["hold"] and not sc.criteria["one_dimensional"] and not sc.canonical
    assert math.isnan(n["top_eig_ctx1"]) and math.isnan(n["modes_90_ctx1"])
    np.testing.assert_array_equal(sc.topology[4:], [0, 0, 0, 0])
    np.testing.assert_allclose(sc.dynamics[6:], 0)
    assert sc.dynamics[0] == 1 and sc.dynamics[6] == 0
    (full,) = scaffold(diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0.0, 0.0]))
    # context 0 is the same system in both: distance 0, context 1 not compared
    assert dynamics_distance(sc.dynamics, full.dynamics)[0, 0] == pytest.approx(0, abs=1e-12)


def test_dynamics_distance_compares_shared_contexts_only():
    line = [1.0, 1.0, 0.5, 0.5, 0.1, 0.25]
    other = [1.0, 0.9, 0.5, 0.25, 0.1, 0.25]  # L1 difference 0.35
    none = [0.0] * 6
    rows = np.array([line + line, other + other, line + none, none + other, none + none])
    d = dynamics_distance(rows, rows)
    assert d[0, 1] == pytest.approx(0.35)  # both contexts shared: the mean of 0.35 and 0.35
    assert d[0, 2] == pytest.approx(0.0)  # only context 0 shared, where they agree
    assert d[1, 3] == pytest.approx(0.0)
    assert d[2, 3] == UNSHARED and d[4, 4] == UNSHARED and d[0, 4] == UNSHARED  # nothing shared
    assert SPEC.dynamics_distance is dynamics_distance


# ---------------------------------------------------------------------- thresholds of the line, on synthetic points
def synthetic_line(points: Tensor, slow_dir: Tensor, fast_dir: Tensor, lam_slow: float = 1.0,
                   lam_fast: float = 0.5) -> dict[str, Tensor]:
    """``points [N, 2]`` (readout h_1) with a Jacobian whose right eigenvectors are ``slow_dir``
    (eigenvalue ``lam_slow``) and ``fast_dir`` (``lam_fast``) at every point, zero drift, and
    the relevant channel driving ``slow_dir``: line_statistics' ``[1, 2, ...]`` numbers."""
    n = len(points)
    v = torch.stack([slow_dir, fast_dir], 1).to(F64)
    jac = v @ torch.diag(torch.tensor([lam_slow, lam_fast], dtype=F64)) @ torch.linalg.inv(v)
    b = torch.zeros(2, 2, 4, dtype=F64)
    b[0, :, 0] = b[1, :, 1] = GAIN * slow_dir
    return line_statistics(points[None, None].expand(1, 2, n, 2), torch.ones(1, 2, n, dtype=torch.bool),
                           torch.zeros(1, 2, n, 2, dtype=F64), jac.expand(1, 2, n, 2, 2),
                           b[None, :, None].expand(1, 2, n, 2, 4), torch.tensor([[[1.0, 0.0]]], dtype=F64),
                           torch.zeros(1, 2, 2, dtype=F64), Timescales(T), R, 1.5 * R / 6, GAIN)


def flags(stats: dict[str, Tensor]) -> dict[str, bool | int]:
    per = {k: v[0].tolist() for k, v in stats.items()} | {"held": [True, True]}
    return context_flags(per, 0, Timescales(T))


Y = torch.linspace(-1, 1, 41, dtype=F64)
E1, E2 = torch.tensor([1.0, 0.0], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)


@pytest.mark.parametrize(("degrees", "one_dimensional"), [(40, True), (50, False)])
def test_tangent_within_45_degrees_of_the_slow_eigenvector(degrees, one_dimensional):
    """A straight line along e_1 whose slow eigenvector is turned by ``degrees``: the local
    tangent (e_1) makes exactly that angle with the slow right-eigenspace."""
    angle = math.radians(degrees)
    slow = torch.tensor([math.cos(angle), math.sin(angle)], dtype=F64)
    stats = synthetic_line(torch.stack([Y, 0 * Y], 1), slow, E2)
    assert stats["tangent_cos"][0, 0].item() == pytest.approx(math.cos(angle), abs=1e-9)
    assert flags(stats)["one_dimensional"] == one_dimensional


@pytest.mark.parametrize(("factor", "slow"), [(0.8, False), (1.25, True)])
def test_slow_modes_keep_more_than_a_fifth_over_a_trial(factor, slow):
    """The line's own mode has time constant ``factor * T / ln 5``: slow (the tangent lies in the
    slow subspace, the selection sees the input) only above the cutoff."""
    lam = math.exp(-1 / (factor * TAU_SLOW))
    stats = synthetic_line(torch.stack([Y, 0 * Y], 1), E1, E2, lam_slow=lam, lam_fast=0.3)
    assert stats["n_slow"][0, 0].item() == int(slow)
    assert stats["tangent_cos"][0, 0].item() == pytest.approx(float(slow), abs=1e-9)
    assert stats["selection_relevant"][0, 0].item() == pytest.approx(float(slow), abs=1e-9)


@pytest.mark.parametrize(("width", "present"), [(0.9, False), (1.1, True)])
def test_a_line_must_span_the_range_R(width, present):
    y = width / 2 * Y
    stats = synthetic_line(torch.stack([y, 0 * y], 1), E1, E2)
    assert stats["readout_span"][0, 0].item() == pytest.approx(width)
    assert flags(stats)["present"] == flags(stats)["one_dimensional"] == present


@pytest.mark.parametrize(("r2", "one_dimensional"), [(0.88, False), (0.92, True)])
def test_curve_must_explain_90_percent(r2, one_dimensional):
    """A ribbon: the line's points y e_1 at +-a e_2, a independent of y, so the best curve in y
    leaves exactly a^2 of variance: R^2 = var(y) / (var(y) + a^2)."""
    y = torch.linspace(-1, 1, 21, dtype=F64)
    var = float(y.var(unbiased=False))
    a = math.sqrt(var * (1 - r2) / r2)
    ribbon = torch.cat([torch.stack([y, a + 0 * y], 1), torch.stack([y, -a + 0 * y], 1)])
    stats = synthetic_line(ribbon, E1, E2)
    assert stats["curve_r2"][0, 0].item() == pytest.approx(r2, abs=1e-12)
    assert flags(stats)["one_dimensional"] == one_dimensional


@pytest.mark.parametrize(("n_values", "present"), [(7, False), (8, True)])
def test_a_line_needs_eight_distinct_readout_values(n_values, present):
    """Points on a straight line over [-R, R] at ``n_values`` readout values (three copies of
    each): a cubic has 4 coefficients, so a line needs twice as many values."""
    y = torch.linspace(-1, 1, n_values, dtype=F64).repeat(3)
    stats = synthetic_line(torch.stack([y, 0 * y], 1), E1, E2)
    assert stats["n_distinct"][0, 0].item() == n_values
    assert flags(stats)["present"] == present
    assert stats["curve_r2"][0, 0].item() == pytest.approx(float(present), abs=1e-12)


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


def test_drift_rule_keeps_what_drifts_slower_than_tau_star_at_its_stored_value():
    """A drift of 0.9 |y| / tau* everywhere is kept; one of 1.1 |y| / tau* is not, except
    within DISTINCT R of y0 = 0 (one point, y = 0)."""
    points = torch.stack([Y, 0 * Y], 1)
    for factor, kept in ((0.9, 41), (1.1, 1)):
        n = len(Y)
        drift = (factor / TAU_STAR) * points
        jac = torch.diag(torch.tensor([1.0, 0.5], dtype=F64)).expand(1, 2, n, 2, 2)
        stats = line_statistics(points[None, None].expand(1, 2, n, 2), torch.ones(1, 2, n, dtype=torch.bool),
                                drift[None, None].expand(1, 2, n, 2), jac, torch.zeros(1, 2, n, 2, 4, dtype=F64),
                                torch.tensor([[[1.0, 0.0]]], dtype=F64), torch.zeros(1, 2, 2, dtype=F64),
                                Timescales(T), R, 1.5 * R / 6, GAIN)
        assert stats["n_points"][0].tolist() == [kept, kept]


def test_points_without_left_eigenvectors_are_skipped_by_the_selection():
    """A defective Jacobian (a nilpotent Jordan block: the eigenvector matrix is exactly
    singular, as at saturated ReLU LSTM points) has no left eigenvectors, so its point has no
    selection gain. The median skips such points: on a line whose other points have gain 1,
    61 of 101 defective points must not turn the median into 0. The tangent needs only right
    eigenvectors, which a defective Jacobian has."""
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
                            torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=F64), torch.zeros(1, 2, 4, dtype=F64),
                            Timescales(T), R, 0.05, GAIN)
    assert stats["tangent_cos"][0].tolist() == pytest.approx([1.0, 1.0])
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
    assert nothing.numbers["moved"] == pytest.approx(1.0, rel=1e-6)  # ... that integrates the other stream too
    assert selective.canonical and not anti.canonical and not nothing.canonical
    assert not anti.criteria["hold"] and not nothing.criteria["hold"]
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
    """A non-normal A with eigenvalues (1, 0.9, 0.6, -0.4), random inputs and readout."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.eye(4, dtype=F64) + 0.3 * torch.randn(4, 4, generator=gen, dtype=F64)
    a = v @ torch.diag(torch.tensor([1.0, 0.9, 0.6, -0.4], dtype=F64)) @ torch.linalg.inv(v)
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
    assert s1.criteria == s2.criteria
    for key in ("kept_min", "kept_max", "moved", "curve_r2", "line_pc1", "tangent_cos", "top_eig", "second_eig",
                "selection_relevant", "selection_irrelevant", "modes_90", "readout_span"):
        assert s1.numbers[key] == pytest.approx(s2.numbers[key], rel=1e-7, abs=1e-9)
    assert s1.numbers["top_eig"] == pytest.approx(1.0, abs=1e-9)
    assert s1.numbers["n_points_ctx0"] == s2.numbers["n_points_ctx0"]


def test_signatures_are_nan_free_and_one_length():
    pops = [diagonal_integrator([1.0, 0.5, 0.3], [1.0, 0, 0]), diagonal_integrator([0.8, 0.5, 0.3], [1.0, 0, 0])]
    a, b_in, readout = (torch.cat([p.params[k] for p in pops]) for k in ("A", "B", "readout.weight"))
    result = scaffold(gated_population(a, b_in, readout), CdiConfig(chunk=1))  # one member per linearisation chunk
    assert [s.canonical for s in result] == [True, False]  # member order kept
    assert result[1].numbers["top_eig"] == pytest.approx(0.8)
    for sc in result:
        assert sc.topology.shape == (8,) and sc.dynamics.shape == (12,)
        assert np.isfinite(sc.topology).all() and np.isfinite(sc.dynamics).all()
        np.testing.assert_array_equal(sc.topology, np.round(sc.topology))  # discrete


def test_distance_is_a_vectorised_l1_metric():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    d = SPEC.distance(u, v)
    assert d.shape == (3, 5)
    np.testing.assert_allclose(d, [[np.abs(a - b).sum() for b in v] for a in u])
    np.testing.assert_allclose(distance(u, u).diagonal(), 0)
    assert SPEC.task == "cdi" and SPEC.compute is compute and SPEC.claim == "cdi_line_attractor"
    assert [c.name for c in SPEC.criteria if c.headline] == list(HEADLINE)


def test_conditions_must_be_the_contexts():
    pop = diagonal_integrator([1.0, 0.5], [1.0, 0.0])
    fp = find_fixed_points(pop, conditions=torch.tensor([[0.5, 0.0, 1.0, 0.0]]), config=FixedPointConfig(n_initial=4))
    with pytest.raises(ValueError, match="conditions"):
        compute(pop, fp)
    for bad in (4, 1):
        with pytest.raises(ValueError, match="n_levels"):
            CdiConfig(n_levels=bad)


# ---------------------------------------------------------------------- claims, figures
def rows_and_scaffolds(modes: dict[str, list[float]]):
    rows: list[SimpleNamespace] = []
    scaffolds: dict[int, StoredScaffold] = {}
    for arch, values in modes.items():
        for v in values:
            member = len(rows)
            rows.append(SimpleNamespace(member=member, task="cdi", arch=arch, activation="tanh", passed=True))
            numbers = CdiNumbers(modes_90=v, line_pc1=0.8, curve_r2=0.95, kept_min=0.9 - 0.1 * member, kept_max=1.0,
                                 moved=0.01, spectrum=[1.0, 0.5, 0.2], response_curve=[0.5, 0.9, 1.0])
            scaffolds[member] = StoredScaffold(True, {c.name: True for c in CRITERIA}, numbers)
    return rows, scaffolds


def test_modes_claim_verdicts():
    def verdict(modes):
        (claim,) = cdi_modes(*rows_and_scaffolds(modes))
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
    assert cdi_modes(rows, scaffolds)[0].n == 3
    assert cdi_modes([], {}) == []


def test_figures_draw_spectra_modes_line_scores_and_the_hold_table(tmp_path):
    rows, scaffolds = rows_and_scaffolds({"vanilla": [1, 1], "gru": [3, 4]})
    scaffolds[2] = StoredScaffold(True, {**scaffolds[2].criteria, "hold": False}, scaffolds[2].numbers)
    layout = RunLayout(tmp_path)
    layout.figures.mkdir(parents=True)
    ctx = FigureContext("cdi", rows, scaffolds, lambda s: None, lambda s: None, layout)
    lines = cdi_figures.figures(ctx)
    for name in ("cdi_spectra", "cdi_mode_curves", "cdi_line_scores"):
        assert layout.figure(f"{name}.png").exists() and any(f"(figures/{name}.png)" in line for line in lines)
    assert "| gru | 3.5 | 2 |" in lines and "| vanilla | 1 | 2 |" in lines
    # members 0, 1 are vanilla (kept_min 0.9, 0.8), 2, 3 gru (0.7, 0.6; member 2 does not hold)
    assert "| gru/tanh | 1/2 | 0.65 | 1 | 0.01 |" in lines and "| vanilla/tanh | 2/2 | 0.85 | 1 | 0.01 |" in lines
