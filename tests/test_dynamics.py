"""Fixed points and linearisation: exact answers on hand-made systems, certificates,
dedup and permutation properties, and the trained 3-bit flip-flop scaffold."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, linear_sum_assignment
from torch import nn

from universality.cells import ModuleCell, make_cell
from universality.cells.base import Cell
from universality.dynamics import (
    FixedPointConfig,
    FixedPoints,
    deduplicate,
    find_fixed_points,
    jacobians,
    sample_initial_states,
)
from universality.population import Member, Population
from universality.run.catalog import RunStore
from universality.tasks import make_task
from universality.training import TrainConfig, train

TASK = make_task("flipflop")  # I = O = 3


def population(cell: Cell, hidden: int, params: dict[str, torch.Tensor], task=TASK) -> Population:
    p = next(iter(params.values())).shape[0]
    members = [Member(task.name, cell.arch, cell.activation, hidden, 0.0, 1e-3, s) for s in range(p)]
    gen = torch.Generator().manual_seed(123)
    params = dict(params)
    params["readout.weight"] = torch.randn(p, task.output_size, hidden, generator=gen)
    params["readout.bias"] = torch.zeros(p, task.output_size)
    return Population(cell, task, hidden, members, params)


class Affine(Cell):
    """h' = A h + B x + b (float64 parameters)."""

    arch = "affine"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        return torch.einsum("p...i,psi->p...s", x, params["B"]) + params["b"].view(
            params["b"].shape[0], *([1] * (x.dim() - 2)), -1
        )

    def recur(self, params, drive, state):
        return drive + torch.einsum("pbs,pts->pbt", state, params["A"])


class DiagonalTanh(Cell):
    """h'_j = tanh(w_j h_j + u_j . x): independent bistable units when w_j > 1."""

    arch = "diagtanh"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        return torch.einsum("p...i,psi->p...s", x, params["U"])

    def recur(self, params, drive, state):
        return torch.tanh(params["w"].unsqueeze(1) * state + drive)


class AffineModule(nn.Module):
    """A user cell: h' = W h + U x + b."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.rec = nn.Linear(hidden_size, hidden_size)
        self.inp = nn.Linear(input_size, hidden_size, bias=False)

    def forward(self, x, h):
        return self.rec(h) + self.inp(x)


def match(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max |a_i - b_pi(i)| under the best assignment (multisets of vectors or complex numbers)."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    cost = np.abs(a[:, None, :] - b[None, :, :]).max(-1)
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols]


def random_population(arch: str, p: int, hidden: int, seed: int, scale: float = 0.5) -> Population:
    """A built-in cell with perturbed weights and biases (richer than the initialisation)."""
    pop = Population.create(make_cell(arch), TASK, hidden, list(range(seed, seed + p)))
    gen = torch.Generator().manual_seed(seed)
    pop.params = {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in pop.params.items()}
    return pop


# ---------------------------------------------------------------------- exact answers
def test_a_defective_jacobian_is_linearised_with_non_finite_left_eigenvectors():
    # member 1: A a nilpotent 3x3 Jordan block (one eigenvector for the triple eigenvalue 0:
    # the eigenvector matrix is exactly singular, as at saturated ReLU LSTM points); member 0
    # a diagonal A. The search must report both fixed points, not raise.
    s, i = 3, 3
    a = torch.stack([torch.diag(torch.tensor([0.9, 0.5, 0.1], dtype=torch.float64)),
                     torch.diag(torch.ones(s - 1, dtype=torch.float64), 1)])
    params = {"A": a, "B": torch.zeros(2, s, i, dtype=torch.float64), "b": torch.zeros(2, s, dtype=torch.float64)}
    init = torch.randn(2, 16, s, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fp = find_fixed_points(population(Affine(), s, params), conditions=torch.zeros(1, i), initial_states=init)
    assert fp.mask.sum(-1).eq(1).all() and fp.fixed[fp.mask].all()
    assert fp.points[:, 0, 0].abs().max() < 1e-9  # h* = 0 in both
    eye = torch.eye(s, dtype=torch.complex128)
    torch.testing.assert_close(fp.left[0, 0, 0] @ fp.right[0, 0, 0], eye)
    assert fp.left[1, 0, 0].isnan().all() and fp.eigenvalues[1, 0, 0].abs().max() < 1e-12
    assert fp.index[1, 0, 0] == 0


@pytest.mark.parametrize("radius", [0.7, 1.6])
def test_affine_map_has_the_solved_fixed_point_and_eig_a(radius):
    p, s, i, c = 3, 5, 3, 2
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(p, s, s, generator=gen, dtype=torch.float64)
    a = radius * a / torch.linalg.eigvals(a).abs().amax(-1)[:, None, None]
    params = {"A": a, "B": torch.randn(p, s, i, generator=gen, dtype=torch.float64),
              "b": torch.randn(p, s, generator=gen, dtype=torch.float64)}
    pop = population(Affine(), s, params)
    cond = torch.randn(c, i, generator=gen, dtype=torch.float64)
    init = 3 * torch.randn(p, 64, s, generator=gen, dtype=torch.float64)
    fp = find_fixed_points(pop, conditions=cond, initial_states=init)
    assert fp.mask.sum(-1).eq(1).all() and fp.fixed[fp.mask].all()
    assert fp.status_counts[..., 0].eq(64).all()  # every candidate certified
    eye = torch.eye(s, dtype=torch.float64)
    for m in range(p):
        expected = torch.linalg.solve(eye - a[m], (cond @ params["B"][m].T + params["b"][m]).T).T  # [C, S]
        torch.testing.assert_close(fp.points[m, :, 0], expected, atol=1e-9, rtol=0)
        eig = torch.linalg.eigvals(a[m]).numpy()
        for k in range(c):
            assert match(fp.eigenvalues[m, k, 0].numpy(), eig).max() < 1e-9
            torch.testing.assert_close(fp.jacobian[m, k, 0], a[m])
            torch.testing.assert_close(fp.input_jacobian[m, k, 0], params["B"][m])
            assert fp.index[m, k, 0] == int((np.abs(eig) > 1).sum())
    # left/right eigenvectors: J R = R diag(lambda), L R = I
    j, lam = fp.jacobian[:, :, 0].to(torch.complex128), fp.eigenvalues[:, :, 0]
    r, left = fp.right[:, :, 0], fp.left[:, :, 0]
    torch.testing.assert_close(j @ r, r * lam.unsqueeze(-2))
    torch.testing.assert_close(left @ r, torch.eye(s, dtype=torch.complex128).expand_as(r))
    torch.testing.assert_close(left @ j, lam.unsqueeze(-1) * left)


def test_module_cell_affine_map():
    cell = ModuleCell(AffineModule)
    pop = Population.create(cell, TASK, 4, [0, 1])
    fp = find_fixed_points(pop, conditions=torch.tensor([[0.5, -1.0, 0.0]]), config=FixedPointConfig(n_initial=16))
    for m in range(2):
        w, u, b = (pop.params[k][m].double() for k in ("rec.weight", "inp.weight", "rec.bias"))
        expected = torch.linalg.solve(torch.eye(4, dtype=torch.float64) - w, u @ fp.conditions[0] + b)
        assert fp.counts[m, 0] == 1
        torch.testing.assert_close(fp.points[m, 0, 0], expected, atol=1e-9, rtol=0)
        torch.testing.assert_close(fp.jacobian[m, 0, 0], w)


def tanh_roots(w: float, u: float) -> list[float]:
    """The three roots of tanh(w h + u) = h (w > 1, small u), by bracketing."""
    g = lambda h: np.tanh(w * h + u) - h  # noqa: E731
    hc = np.arctanh(np.sqrt(1 - 1 / w)) / w  # g' = 0 at +-hc - u/w
    edges = [-1.5, -hc - u / w, hc - u / w, 1.5]
    return [brentq(g, lo, hi, xtol=1e-15) for lo, hi in itertools.pairwise(edges)]


def diagonal_tanh(p: int = 2):
    w = torch.tensor([[1.5, 2.0, 3.0], [2.5, 1.8, 4.0]], dtype=torch.float64)[:p]
    u = 0.1 * torch.tensor([[[1.0, 0, 0], [0, -1.0, 0], [0, 0, 0.5]]], dtype=torch.float64).expand(p, 3, 3)
    return population(DiagonalTanh(), 3, {"w": w, "U": u.clone()}), w, u


def test_diagonal_tanh_has_all_27_points_with_their_indices():
    pop, w, u = diagonal_tanh()
    cond = torch.tensor([[0.0, 0.0, 0.0], [0.4, 0.3, -0.2]], dtype=torch.float64)
    init = 1.2 * (2 * torch.rand(2, 2, 512, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 1)
    fp = find_fixed_points(pop, conditions=cond, initial_states=init)
    for m in range(2):
        for c in range(2):
            drive = (u[m] @ cond[c]).tolist()
            roots = [tanh_roots(float(w[m, j]), drive[j]) for j in range(3)]
            expected = np.array(list(itertools.product(*roots)))
            index = np.array([sum(k == 1 for k in ks) for ks in itertools.product(range(3), repeat=3)])
            keep = fp.mask[m, c]
            assert keep.sum() == 27
            found = fp.points[m, c][keep].numpy()
            cost = np.abs(expected[:, None] - found[None]).max(-1)
            rows, cols = linear_sum_assignment(cost)
            assert cost[rows, cols].max() < 1e-10
            np.testing.assert_array_equal(fp.index[m, c][keep].numpy()[cols], index[rows])
            assert (fp.index[m, c][keep] == 0).sum() == 8
            # the diagonal Jacobian is w (1 - h'^2) per unit
            lam = w[m].numpy() * (1 - found**2)
            assert match(np.sort(fp.eigenvalues[m, c][keep].real.numpy(), -1), np.sort(lam, -1)).max() < 1e-9


def test_saddle_search_finds_all_27_points_from_states_near_the_8_attractors():
    pop, w, u = diagonal_tanh(1)
    cond = torch.zeros(1, 3, dtype=torch.float64)
    roots = [tanh_roots(float(w[0, j]), 0.0) for j in range(3)]
    attractors = torch.tensor(list(itertools.product(*[(r[0], r[2]) for r in roots])), dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    init = (attractors.repeat(8, 1) + 0.01 * torch.randn(64, 3, generator=gen, dtype=torch.float64)).unsqueeze(0)
    # Without the pair round every candidate falls back into its own attractor: the saddles
    # come from the search between stable points, not from the noise.
    alone = find_fixed_points(pop, conditions=cond, initial_states=init, config=FixedPointConfig(max_pairs=0))
    assert alone.counts.item() == 8
    fp = find_fixed_points(pop, conditions=cond, initial_states=init)
    keep = fp.mask[0, 0]
    assert keep.sum() == 27 and fp.fixed[0, 0][keep].all()
    expected = np.array(list(itertools.product(*roots)))
    index = np.array([sum(k == 1 for k in ks) for ks in itertools.product(range(3), repeat=3)])
    found = fp.points[0, 0][keep].numpy()
    cost = np.abs(expected[:, None] - found[None]).max(-1)
    rows, cols = linear_sum_assignment(cost)
    assert cost[rows, cols].max() < 1e-10
    np.testing.assert_array_equal(fp.index[0, 0][keep].numpy()[cols], index[rows])
    assert (fp.neutral_dim[0, 0][keep] == 0).all()


class SlowEscape(Cell):
    """h' = h + c h (A^2 - h^2) + U x per unit: attractors at +-A, a weakly unstable point at
    0 (multiplier 1 + c A^2) whose neighbourhood the state leaves only slowly."""

    arch = "slowescape"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        return torch.einsum("p...i,psi->p...s", x, params["U"])

    def recur(self, params, drive, state):
        c, a = params["c"].unsqueeze(1), params["a"].unsqueeze(1)
        return state + c * state * (a.square() - state.square()) + drive


def test_hold_seeds_an_attractor_reached_only_after_the_trials():
    """One unit, attractors at +-10, an unstable point at 0 with multiplier 1.03; flip-flop
    pulses on bit 0 kick the state by +-1e-3. On the trials |h| stays below 0.02, so the
    noisy candidates (sigma 0.5) lie within |h| < 2 (measured: -1.95 to 1.78), inside the
    basin of 0 of the Newton iteration on the cubic (|h| < A / sqrt(5) = 4.5) and below
    the maximum of q (|h| = A / sqrt(3)), where the gradient phase descends towards 0:
    without holds only 0 is found (asserted: the trial-state candidates alone miss both
    attractors; holds of 1 or 100 steps miss them too). A 500-step hold at zero input
    carries the kicked states to +-10 (|h| grows 1.03-fold per step from ~1e-3)."""
    a, c = 10.0, 0.03 / 100
    params = {"U": torch.tensor([[[1e-3, 0.0, 0.0]]]), "c": torch.tensor([[c]]), "a": torch.tensor([[a]])}
    pop = population(SlowEscape(), 1, params)
    without = find_fixed_points(pop, config=FixedPointConfig(hold_fraction=0.0))
    assert without.counts.item() == 1 and abs(without.points[0, 0, 0, 0].item()) < 1e-10
    assert without.index[0, 0, 0].item() == 1
    fp = find_fixed_points(pop)
    keep = fp.mask[0, 0]
    found = sorted(fp.points[0, 0][keep][:, 0].tolist())
    assert len(found) == 3 and fp.fixed[0, 0][keep].all()
    np.testing.assert_allclose(found, [-a, 0.0, a], atol=1e-10)
    assert sorted(fp.index[0, 0][keep].tolist()) == [0, 0, 1]


def test_hold_starts_spread_to_a_rarely_visited_region():
    """Farthest-point sampling: 200 states at one place and 2 at another, far away; the
    second start is in the rare region (a uniform draw of 2 would miss it 98% of the time)."""
    from universality.dynamics.fixed_points import _farthest_points

    gen = torch.Generator().manual_seed(0)
    common = 0.01 * torch.randn(200, 4, generator=gen, dtype=torch.float64)
    rare = 3.0 + 0.01 * torch.randn(2, 4, generator=gen, dtype=torch.float64)
    pool = torch.cat([common, rare])[None, None]  # [1, 1, 202, 4]
    pool[0, 0, 5] = math.nan  # a diverged state is never picked
    starts = _farthest_points(pool, 3)[0, 0]
    assert torch.isfinite(starts).all()
    assert (starts[:, 0] > 2).sum() == 1 and (starts[:, 0] < 1).sum() == 2


class LineTimesBistable(Cell):
    """h'_0 = h_0 (every h_0 is fixed: a neutral line), h'_j = tanh(w_j h_j) for j > 0, plus U x."""

    arch = "line"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        return torch.einsum("p...i,psi->p...s", x, params["U"])

    def recur(self, params, drive, state):
        return torch.cat([state[..., :1], torch.tanh(params["w"].unsqueeze(1)[..., 1:] * state[..., 1:])], -1) + drive


def test_a_line_of_fixed_points_is_one_continuum_not_copies():
    p, k = 2, 64
    params = {"A": torch.diag(torch.tensor([1.0, 0.5, -0.3], dtype=torch.float64)).expand(p, 3, 3).clone(),
              "B": torch.zeros(p, 3, 3, dtype=torch.float64), "b": torch.zeros(p, 3, dtype=torch.float64)}
    pop = population(Affine(), 3, params)  # fixed points: the whole h_0 axis
    init = torch.randn(p, k, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fp = find_fixed_points(pop, initial_states=init)
    assert fp.counts.eq(1).all()
    assert fp.neutral_dim[fp.mask].eq(1).all()
    assert torch.equal(fp.cluster_size[fp.mask], fp.status_counts[:, 0, 0])  # every candidate (and pair seed)
    # LM steps have no component along the null direction: every candidate keeps its h_0,
    # so the continuum's extent is the spread of the initial h_0 (along the line).
    spread = init[..., 0].amax(-1) - init[..., 0].amin(-1)
    torch.testing.assert_close(fp.extent[:, 0, 0], spread, atol=1e-8, rtol=0)
    assert fp.summary()[0]["continua"] == 1
    assert (spread > 100 * fp.config["tol_unique"]).all()  # so without merging: copies along the line
    # A rotated line: its eigenvalue 1 comes out as 1 +- rounding, and the continuum's index
    # leaves its neutral mode out (0 here, and 1 with an unstable mode added).
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    for diag, index in (([1.0, 0.5, -0.3], 0), ([1.0, 1.7, -0.3], 1)):
        params["A"] = (q @ torch.diag(torch.tensor(diag, dtype=torch.float64)) @ q.T).expand(p, 3, 3).clone()
        fp = find_fixed_points(population(Affine(), 3, params), initial_states=init)
        assert fp.counts.eq(1).all() and fp.neutral_dim[fp.mask].eq(1).all()
        assert fp.index[fp.mask].eq(index).all()
        assert (fp.eigenvalues[fp.mask].abs() > 1).sum(-1).eq(index + 1).all()  # |1 + 9e-16| counted by a plain count


def test_parallel_lines_are_separate_continua_with_their_indices():
    w = torch.tensor([[0.0, 3.0]], dtype=torch.float64)  # unit 0 neutral, unit 1 bistable
    pop = population(LineTimesBistable(), 2, {"w": w, "U": torch.zeros(1, 2, 3, dtype=torch.float64)})
    init = 2 * torch.rand(1, 96, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1
    fp = find_fixed_points(pop, conditions=torch.zeros(1, 3), initial_states=init)
    keep = fp.mask[0, 0]
    assert keep.sum() == 3  # the lines h_1 = -a, 0, a
    assert fp.neutral_dim[0, 0][keep].eq(1).all() and (fp.extent[0, 0][keep] > 0.5).all()
    assert sorted(fp.index[0, 0][keep].tolist()) == [0, 0, 1]
    assert fp.cluster_size[0, 0][keep].sum() == fp.status_counts[0, 0, 0]


#: Three 32-unit flip-flop networks of an earlier reference population (a small run store):
#: members on which the Levenberg-Marquardt search alone once missed roots.
RECALL_RUN = Path(__file__).resolve().parent / "data" / "recall_networks"


def gradient_search_roots(pop: Population, init: torch.Tensor, iters: int = 3000) -> list[torch.Tensor]:
    """An independent search (bench/recall_reference.py): float64 Adam on each candidate's q
    (lr 1e-2), 8 Newton steps, roots certified at residual 1e-10 with sigma_min(J - I) >= 1e-8,
    deduplicated at 1e-3; per member ``[n, S]``, at zero input."""
    params = {k: v.double() for k, v in pop.cell_params.items()}
    x = torch.zeros(*init.shape[:2], pop.task.input_size, dtype=torch.float64)
    h = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([h], lr=1e-2)
    for _ in range(iters):
        opt.zero_grad()
        (0.5 * (pop.step(x, h, params) - h).square().sum()).backward()
        opt.step()
    h, eye = h.detach(), torch.eye(init.shape[-1], dtype=torch.float64)
    for _ in range(8):
        f, jac, _ = jacobians(pop, h, x, params)
        step = torch.linalg.lstsq(jac - eye, (h - f).unsqueeze(-1)).solution.squeeze(-1)
        h = torch.where(torch.isfinite(step).all(-1, keepdim=True), h + step, h)
    f, jac, _ = jacobians(pop, h, x, params)
    residual = (f - h).abs().amax(-1).nan_to_num(math.inf)
    certified = (residual <= 1e-10) & (torch.linalg.svdvals(jac - eye)[..., -1] >= 1e-8)
    rep, _ = deduplicate(h, certified, residual, 1e-3)
    return [h[m][rep[m]] for m in range(len(h))]


@pytest.mark.parametrize("shard, rows", [("flipflop-vanilla-tanh-h32", [0, 1]), ("flipflop-gru-relu-h32", [0])])
def test_every_root_a_gradient_search_certifies_on_reference_networks_is_found(shard, rows):
    """Members where the LM search alone missed roots (vanilla/tanh seeds 0 and 1: index-2
    and index-3 saddles; GRU/ReLU seed 6: a stable point), same initial states for both searches."""
    torch.set_num_threads(1)
    pop = RunStore(RECALL_RUN).load_population(shard).select(rows)
    init = sample_initial_states(pop, FixedPointConfig(n_initial=512))
    roots = gradient_search_roots(pop, init)
    fp = find_fixed_points(pop, conditions=torch.zeros(1, 3), initial_states=init)
    for m, found in enumerate(roots):
        ours = fp.points[m, 0][fp.mask[m, 0]]
        assert len(found) >= 16  # the reference search itself works
        missed = (torch.cdist(found, ours, p=math.inf) >= 1e-3).all(-1)
        assert not missed.any(), f"{shard} seed {pop.members[m].seed}: {int(missed.sum())} of {len(found)} roots missed"


@pytest.mark.parametrize("arch", ["vanilla", "gru", "lstm", "ugrnn"])
def test_jacobians_agree_with_finite_differences(arch):
    pop = random_population(arch, p=2, hidden=4, seed=3)
    cond = torch.tensor([[0.0, 0.0, 0.0], [0.5, -0.5, 1.0]])
    fp = find_fixed_points(pop, conditions=cond, config=FixedPointConfig(n_initial=64, include_slow=True))
    assert fp.mask.any(-1).all()
    s, eps = pop.state_size, 1e-6
    params = {k: v.double() for k, v in pop.cell_params.items()}
    for m, c in itertools.product(range(2), range(2)):
        h0, x0 = fp.points[:, c, :1].clone(), fp.conditions[c].expand(2, 1, 3).clone()
        h0[m, 0] = fp.points[m, c, 0]
        fd = torch.zeros(s, s, dtype=torch.float64)
        for k in range(s):
            e = torch.zeros_like(h0)
            e[m, 0, k] = eps
            fd[:, k] = (pop.step(x0, h0 + e, params) - pop.step(x0, h0 - e, params))[m, 0] / (2 * eps)
        torch.testing.assert_close(fp.jacobian[m, c, 0], fd, atol=1e-8, rtol=1e-6)
        fdx = torch.zeros(s, 3, dtype=torch.float64)
        for k in range(3):
            e = torch.zeros_like(x0)
            e[m, 0, k] = eps
            fdx[:, k] = (pop.step(x0 + e, h0, params) - pop.step(x0 - e, h0, params))[m, 0] / (2 * eps)
        torch.testing.assert_close(fp.input_jacobian[m, c, 0], fdx, atol=1e-8, rtol=1e-6)


def assert_stability_matches_simulation(pop: Population, fp: FixedPoints, steps: int) -> None:
    """A 1e-7 kick off a stable point decays; off an unstable point it grows 10x."""
    params = {k: v.double() for k, v in pop.cell_params.items()}
    keep = fp.mask & fp.fixed
    p, c, n, s = fp.points.shape
    gen = torch.Generator().manual_seed(0)
    kick = torch.randn(p, c, n, s, generator=gen, dtype=torch.float64)
    h0 = fp.points + 1e-7 * kick / kick.abs().amax(-1, keepdim=True)
    x = fp.conditions[None, :, None].expand(p, c, n, -1).reshape(p, c * n, -1)
    h = h0.reshape(p, c * n, s)
    for _ in range(steps):
        h = pop.step(x, h, params)
    dist = (h.view(p, c, n, s) - fp.points).abs().amax(-1)
    radius = fp.eigenvalues.abs().amax(-1)
    stable = keep & (radius < 1 - 1e-3)
    unstable = keep & (radius > 1 + 1e-3)
    assert stable.any() and unstable.any()
    assert (dist[stable] < 1e-7).all()
    assert (dist[unstable] > 1e-6).all()


def test_stability_matches_simulation_diagonal_tanh():
    pop, _, _ = diagonal_tanh()
    init = 2 * torch.rand(2, 256, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1
    fp = find_fixed_points(pop, conditions=torch.zeros(1, 3), initial_states=init)
    assert_stability_matches_simulation(pop, fp, steps=60)


# ---------------------------------------------------------------------- properties
small_systems = st.tuples(
    st.sampled_from(["vanilla", "gru", "lstm"]), st.integers(1, 3), st.integers(2, 5), st.integers(0, 10_000)
)


@settings(max_examples=8)
@given(system=small_systems, include_slow=st.booleans())
def test_certificates_hold_when_reevaluated(system, include_slow):
    arch, p, hidden, seed = system
    pop = random_population(arch, p, hidden, seed, scale=1.0)
    config = FixedPointConfig(n_initial=32, include_slow=include_slow, seed=seed)
    fp = find_fixed_points(pop, conditions=torch.zeros(1, 3), config=config)
    params = {k: v.double() for k, v in pop.cell_params.items()}
    x = torch.zeros(p, fp.points.shape[2], 3, dtype=torch.float64)
    h = fp.points[:, 0]
    r = pop.step(x, h, params) - h
    residual = r.abs().amax(-1)
    certified = fp.fixed[:, 0]
    assert (residual[certified] <= config.tol_fixed * (1 + 1e-6) + 1e-15).all()
    assert (fp.residual[:, 0][certified] <= config.tol_fixed).all()
    for m, n in certified.nonzero().tolist():
        jac = torch.autograd.functional.jacobian(
            lambda v, m=m: pop.step(x[m : m + 1, :1], v.view(1, 1, -1), {k: t[m : m + 1] for k, t in params.items()})
            .flatten(), h[m, n])
        sigma = torch.linalg.svdvals(jac - torch.eye(jac.shape[0], dtype=torch.float64))[-1]
        torch.testing.assert_close(fp.sigma_min[m, 0, n], sigma, atol=1e-9, rtol=1e-7)
    if not include_slow:
        assert (fp.fixed == fp.mask).all()
    # every kept candidate is counted in exactly one cluster
    kept = fp.status_counts[..., 0] + (fp.status_counts[..., 1] if include_slow else 0)
    torch.testing.assert_close(fp.cluster_size.sum(-1), kept)


@settings(max_examples=8)
@given(system=small_systems, tol=st.floats(1e-3, 0.8))
def test_kept_points_are_farther_apart_than_the_tolerance(system, tol):
    arch, p, hidden, seed = system
    pop = random_population(arch, p, hidden, seed, scale=1.0)
    config = FixedPointConfig(n_initial=48, tol_unique=tol, include_slow=True, seed=seed)
    fp = find_fixed_points(pop, conditions=torch.tensor([[0.0, 0, 0], [1.0, 0, -1]]), config=config)
    for m, c in itertools.product(range(p), range(2)):
        pts = fp.points[m, c][fp.mask[m, c]]
        d = torch.cdist(pts, pts, p=float("inf")) + torch.eye(len(pts)) * 1e9
        assert (d >= tol).all()


@settings(max_examples=6)
@given(perm=st.permutations(range(4)), seed=st.integers(0, 1000))
def test_permuting_members_permutes_results(perm, seed):
    pop = random_population("gru", 4, 4, seed, scale=1.0)
    config = FixedPointConfig(n_initial=48, seed=seed)
    a = find_fixed_points(pop, config=config)
    b = find_fixed_points(pop.select(perm), config=config)
    assert torch.equal(b.counts, a.counts[list(perm)])
    assert torch.equal(b.status_counts, a.status_counts[list(perm)])
    assert a.points.shape == b.points.shape
    for new, old in enumerate(perm):
        ma, mb = a.member(old), b.member(new)
        if len(ma["points"]) == 0:
            continue
        cost = np.abs(ma["points"][:, None] - mb["points"][None]).max(-1)
        rows, cols = linear_sum_assignment(cost)
        assert cost[rows, cols].max() < 1e-9
        for key in ("index", "cluster_size", "condition"):
            np.testing.assert_array_equal(ma[key][rows], mb[key][cols])
        np.testing.assert_allclose(ma["jacobian"][rows], mb["jacobian"][cols], atol=1e-8)


@settings(max_examples=4, deadline=None)
@given(bucket_size=st.integers(1, 6), seed=st.integers(0, 1000))
def test_member_buckets_change_nothing_but_speed(bucket_size, seed):
    pop = random_population("gru", 7, 4, seed, scale=1.0)
    one = find_fixed_points(pop, config=FixedPointConfig(n_initial=40, seed=seed, bucket_size=7))
    many = find_fixed_points(pop, config=FixedPointConfig(n_initial=40, seed=seed, bucket_size=bucket_size))
    assert torch.equal(one.status_counts, many.status_counts)
    # Members whose points are all isolated roots (residual / sigma_min bounds the distance
    # to the root) get the same points. A degenerate root (sigma_min ~ 1e-19, saturated units
    # at |h| ~ 20) is a continuum along which float rounding of a different batch moves the
    # candidates, and so how many representatives deduplication keeps on it.
    isolated = [m for m in range(len(pop))
                if (one.sigma_min[m][one.mask[m]] > 1e-6).all() and (many.sigma_min[m][many.mask[m]] > 1e-6).all()]
    assert isolated
    for name in ("mask", "index", "cluster_size"):
        assert torch.equal(getattr(one, name)[isolated], getattr(many, name)[isolated]), name
    torch.testing.assert_close(one.points[isolated], many.points[isolated], atol=1e-8, rtol=0)


def greedy_reference(points: np.ndarray, keep: np.ndarray, score: np.ndarray, tol: float):
    order = np.argsort(np.where(keep, score, np.inf), kind="stable")
    reps: list[int] = []
    size = np.zeros(len(points), dtype=int)
    for j in order:
        if not keep[j]:
            continue
        owner = next((i for i in reps if np.abs(points[i] - points[j]).max() < tol), None)
        if owner is None:
            reps.append(j)
            owner = j
        size[owner] += 1
    rep = np.zeros(len(points), dtype=bool)
    rep[reps] = True
    return rep, size


@given(seed=st.integers(0, 10_000), k=st.integers(1, 40), tol=st.floats(0.05, 1.0))
def test_deduplicate_is_exact_greedy_clustering(seed, k, tol):
    gen = torch.Generator().manual_seed(seed)
    points = torch.rand(3, k, 2, generator=gen, dtype=torch.float64)
    keep = torch.rand(3, k, generator=gen) < 0.8
    score = torch.rand(3, k, generator=gen, dtype=torch.float64)
    rep, size = deduplicate(points, keep, score, tol)
    for g in range(3):
        ref_rep, ref_size = greedy_reference(points[g].numpy(), keep[g].numpy(), score[g].numpy(), tol)
        np.testing.assert_array_equal(rep[g].numpy(), ref_rep)
        np.testing.assert_array_equal(size[g].numpy(), ref_size)


def test_deduplicate_chain_keeps_the_far_end():
    points = torch.tensor([[[0.0], [0.6], [1.2]]], dtype=torch.float64)
    rep, size = deduplicate(points, torch.ones(1, 3, dtype=torch.bool), torch.tensor([[0.0, 1.0, 2.0]]), 1.0)
    assert rep.tolist() == [[True, False, True]] and size.tolist() == [[2, 0, 1]]


# ---------------------------------------------------------------------- trained flip-flop
@pytest.fixture(scope="module")
def flipflop_gru() -> Population:
    task = make_task("flipflop", pass_threshold=0.999)
    pop = Population.create(make_cell("gru"), task, 16, [0, 1], lr=1e-2)
    result = train(pop, TrainConfig(steps=600, batch_size=32, eval_every=50, lr_schedule="constant"))
    assert all(result.passed), result
    return pop


def test_trained_flipflop_gru_has_eight_memories(flipflop_gru):
    pop = flipflop_gru
    fp = find_fixed_points(pop, config=FixedPointConfig(n_initial=512))
    for m, row in enumerate(fp.summary()):
        assert row["stable"] == 8, row
        stable = fp.points[m, 0][fp.mask[m, 0] & (fp.index[m, 0] == 0)]
        out = pop.readout(stable.float().expand(len(pop), -1, -1))[m]
        patterns = {tuple(v) for v in torch.sign(out).int().tolist()}
        assert patterns == set(itertools.product([-1, 1], repeat=3))
    assert_stability_matches_simulation(pop, fp, steps=600)


def test_summary_member_and_save_load_roundtrip(flipflop_gru, tmp_path):
    pop = flipflop_gru
    fp = find_fixed_points(pop, config=FixedPointConfig(n_initial=64))
    summary = fp.summary()
    json.dumps(summary)
    assert [r["count"] for r in summary] == fp.counts.sum(-1).tolist()
    one = fp.member(1)
    assert len(one["points"]) == summary[1]["count"] and one["eigenvalues"].dtype == np.complex128
    assert set(one) >= {"points", "residual", "sigma_min", "q", "cluster_size", "index", "eigenvalues",
                        "right", "left", "jacobian", "input_jacobian", "condition"}
    fp.save(tmp_path / "fp.safetensors")
    back = FixedPoints.load(tmp_path / "fp.safetensors")
    assert back.config == fp.config
    for name, value in fp._tensors().items():
        assert torch.equal(getattr(back, name), value), name
    np.testing.assert_array_equal(back.timescales.numpy(), fp.timescales.numpy())


def test_a_map_without_fixed_points_gives_empty_results(tmp_path):
    p, s = 2, 3
    params = {"A": torch.eye(s, dtype=torch.float64).expand(p, s, s).clone(),
              "B": torch.zeros(p, s, 3, dtype=torch.float64), "b": torch.ones(p, s, dtype=torch.float64)}
    pop = population(Affine(), s, params)  # h' = h + 1
    fp = find_fixed_points(pop, initial_states=torch.randn(p, 8, s, dtype=torch.float64))
    assert fp.points.shape == (p, 1, 0, s)
    assert fp.status_counts[..., 2].eq(16).all()  # 8 candidates, each tried twice (descended q, then raw)
    assert fp.summary()[0]["count"] == 0 and len(fp.member(1)["points"]) == 0
    fp.save(tmp_path / "empty.safetensors")
    assert FixedPoints.load(tmp_path / "empty.safetensors").points.shape == (p, 1, 0, s)


def test_select_expand_and_empty_keep_fields_and_dtypes(flipflop_gru):
    fp = find_fixed_points(flipflop_gru, config=FixedPointConfig(n_initial=32))
    rows = [2, 0]
    wide = fp.select([1, 0]).expand(rows, 4)  # member 1 -> row 2, member 0 -> row 0
    for name, value in fp._tensors().items():
        if name == "conditions":
            continue
        big = getattr(wide, name)
        assert big.dtype == value.dtype and big.shape == (4, *value.shape[1:]), name
        assert torch.equal(big[2], value[1]) and torch.equal(big[0], value[0]), name
        assert not big[[1, 3]].any(), name
    assert wide.summary()[1]["count"] == 0
    empty = FixedPoints.empty(3, fp.conditions, flipflop_gru.state_size, fp.config)
    for name, value in fp._tensors().items():
        got = getattr(empty, name)
        assert got.dtype == value.dtype and got.dim() == value.dim(), name
    assert empty.counts.shape == (3, 1) and empty.summary()[2]["count"] == 0
    with pytest.raises(ValueError, match="distinct rows"):
        fp.expand([0, 0, 1], 4)


def test_bad_inputs_are_refused():
    pop = random_population("gru", 2, 3, 0)
    with pytest.raises(ValueError, match="conditions"):
        find_fixed_points(pop, conditions=torch.zeros(1, 2))
    with pytest.raises(ValueError, match="initial_states"):
        find_fixed_points(pop, initial_states=torch.zeros(3, 4, 3))
    with pytest.raises(ValueError, match="tol_fixed"):
        FixedPointConfig(tol_fixed=0.0)


def test_population_jacobians_helper_matches_step():
    pop = random_population("lstm", 2, 3, 1)
    h = torch.randn(2, 5, pop.state_size, dtype=torch.float64)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    f, jh, jx = jacobians(pop, h, x)
    params = {k: v.double() for k, v in pop.cell_params.items()}
    torch.testing.assert_close(f, pop.step(x, h, params))
    assert jh.shape == (2, 5, 6, 6) and jx.shape == (2, 5, 6, 3)
