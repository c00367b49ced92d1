"""The architecture zoo (examples/zoo): each cell's update equation, a property of it that a
wrong implementation would break, and each cell run through the project as a user cell."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jacrev

from examples.zoo import ZOO
from examples.zoo.antisymmetric import AntisymmetricRNN
from examples.zoo.cornn import CoRNN
from examples.zoo.ctrnn import CTRNN01, CTRNN02
from examples.zoo.lipschitz import LipschitzRNN
from examples.zoo.lru import LRU, R_MAX, R_MIN
from examples.zoo.minlstm import MinLSTM
from examples.zoo.selective_ssm import DT_MAX, DT_MIN, SelectiveSSM
from universality import Population, TrainConfig, make_task, train
from universality.cells import ModuleCell, cell_from_spec, cell_spec
from universality.dynamics import step_jacobians

N_IN, H = 3, 6


def build(factory, seed=0):
    torch.manual_seed(seed)
    return factory(N_IN, H).double()


def jacobian(cell, x, state):
    """d state' / d state at one (x, state) pair, ``[S, S]``."""
    return jacrev(lambda s: cell(x[None], s[None])[0])(state)


def states(n, size, seed=1):
    return torch.randn(n, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2


# ------------------------------------------------------------------ minLSTM
def test_minlstm_is_its_equation():
    cell = build(MinLSTM)
    x, h = torch.randn(5, N_IN, dtype=torch.float64), states(5, H)
    f = torch.sigmoid(x @ cell.forget.weight.T + cell.forget.bias)
    i = torch.sigmoid(x @ cell.input.weight.T + cell.input.bias)
    h_tilde = x @ cell.candidate.weight.T + cell.candidate.bias
    expected = f / (f + i) * h + i / (f + i) * h_tilde
    torch.testing.assert_close(cell(x, h), expected)


def test_minlstm_at_a_fixed_input_has_the_constant_jacobian_f_prime():
    """d h'/d h = diag(f') whatever h (a gate reading h, or a missing normalisation, fails)."""
    cell = build(MinLSTM)
    x = torch.randn(N_IN, dtype=torch.float64)
    f_norm, i_norm = cell.gates(x)
    torch.testing.assert_close(f_norm + i_norm, torch.ones(H, dtype=torch.float64))
    assert ((f_norm > 0) & (f_norm < 1)).all()
    for h in states(3, H):
        torch.testing.assert_close(jacobian(cell, x, h), torch.diag(f_norm))
    h_star = cell.candidate(x)  # the one fixed point at this input: h~(x)
    torch.testing.assert_close(cell(x[None], h_star[None])[0], h_star)


# ------------------------------------------------------------------ selective SSM
def test_selective_ssm_is_its_equation():
    cell = build(SelectiveSSM)
    x, h = torch.randn(5, N_IN, dtype=torch.float64), states(5, H)
    delta = torch.log1p(torch.exp(x @ cell.dt.weight.T + cell.dt.bias))  # softplus
    a = torch.exp(-delta * torch.exp(cell.A_log))
    expected = a * h + delta * (x @ cell.B.weight.T + cell.B.bias)
    torch.testing.assert_close(cell(x, h), expected)


def test_selective_ssm_has_a_constant_diagonal_contracting_jacobian_set_by_the_input():
    cell = build(SelectiveSSM)
    assert (torch.exp(cell.A_log) >= 1).all()  # A = -exp(A_log) <= -1 at initialisation (S4D-real)
    delta0 = torch.nn.functional.softplus(cell.dt.bias)  # the step at x = 0: Mamba's initial range
    assert ((delta0 >= DT_MIN * 0.999) & (delta0 <= DT_MAX * 1.001)).all()
    jacobians = []
    for x in (torch.zeros(N_IN, dtype=torch.float64), torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64)):
        a, _ = cell.coefficients(x)
        assert ((a > 0) & (a < 1)).all()
        for h in states(3, H):
            torch.testing.assert_close(jacobian(cell, x, h), torch.diag(a))
        jacobians.append(torch.diag(a))
    assert not torch.allclose(jacobians[0], jacobians[1])  # selective: the input sets the decay


# ------------------------------------------------------------------ LRU
def test_lru_step_is_complex_multiplication_on_re_im():
    cell = build(LRU)
    assert cell.state_size == 2 * H
    x, s = torch.randn(5, N_IN, dtype=torch.float64), states(5, 2 * H)
    h = torch.complex(s[:, :H], s[:, H:])
    lam = torch.exp(-torch.exp(cell.nu_log) + 1j * torch.exp(cell.theta_log))
    B = torch.complex(cell.B_re, cell.B_im)
    expected = lam * h + torch.exp(cell.gamma_log) * (x.to(B.dtype) @ B.T)
    out = cell(x, s)
    torch.testing.assert_close(out[:, :H], expected.real)  # real part first: the readout reads Re h
    torch.testing.assert_close(out[:, H:], expected.imag)


def test_lru_eigenvalues_lie_inside_the_unit_disc_from_the_ring_init():
    cell = build(LRU)
    lam_re, lam_im = cell.eigenvalues()
    modulus = torch.sqrt(lam_re**2 + lam_im**2)
    assert ((modulus >= R_MIN - 1e-9) & (modulus <= R_MAX + 1e-9)).all()
    torch.testing.assert_close(torch.exp(cell.gamma_log), torch.sqrt(1 - modulus**2))  # normalised input
    x = torch.randn(N_IN, dtype=torch.float64)
    eig = torch.linalg.eigvals(jacobian(cell, x, states(1, 2 * H)[0]))
    lam = torch.complex(lam_re, lam_im)
    expected = torch.cat([lam, lam.conj()])
    assert torch.cdist(torch.view_as_real(eig), torch.view_as_real(expected)).min(dim=1).values.max() < 1e-9
    with torch.no_grad():  # any parameters, trained or not: |lambda| = exp(-exp(nu_log)) < 1
        cell.nu_log.copy_(torch.linspace(-20, 5, H, dtype=torch.float64))
    lam_re, lam_im = cell.eigenvalues()
    assert (lam_re**2 + lam_im**2 < 1).all()


# ------------------------------------------------------------------ coRNN
def test_cornn_step_solves_its_imex_equations():
    """y' = y + dt z'  and  z' = z + dt tanh(W y + W~ z + V x + b) - dt gamma y - dt eps z' (eq. 3)."""
    cell = build(CoRNN)
    assert cell.state_size == 2 * H
    x, s = torch.randn(5, N_IN, dtype=torch.float64), states(5, 2 * H)
    y, z = s[:, :H], s[:, H:]
    out = cell(x, s)
    y1, z1 = out[:, :H], out[:, H:]
    dt, gamma, eps = cell.dt, cell.gamma, cell.eps
    drive = torch.tanh(y @ cell.W.weight.T + z @ cell.W_z.weight.T + x @ cell.V.weight.T + cell.V.bias)
    torch.testing.assert_close(z1, z + dt * drive - dt * gamma * y - dt * eps * z1)  # implicit in the damping
    torch.testing.assert_close(y1, y + dt * z1)  # positions updated with the new velocity, first in the state


def test_cornn_without_coupling_is_a_damped_linear_oscillator():
    """W = W~ = 0 and no input: a damped oscillator whose step matrix has |eigenvalues| < 1."""
    cell = build(CoRNN)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
    J = jacobian(cell, torch.zeros(N_IN, dtype=torch.float64), states(1, 2 * H)[0])
    dt, gamma, eps = cell.dt, cell.gamma, cell.eps
    c = 1 / (1 + dt * eps)
    block = torch.tensor([[1 - dt * dt * gamma * c, dt * c], [-dt * gamma * c, c]], dtype=torch.float64)
    torch.testing.assert_close(J[0::H, 0::H], block)  # unit 0: (y_0, z_0)
    assert torch.linalg.eigvals(J).abs().max() < 1


# ------------------------------------------------------------------ antisymmetric RNN
def test_antisymmetric_rnn_is_its_equation_with_an_antisymmetric_recurrence():
    cell = build(AntisymmetricRNN)
    M = cell.recurrent_matrix()
    eye = torch.eye(H, dtype=torch.float64)
    torch.testing.assert_close(M + M.T, -2 * cell.gamma * eye)  # W - W^T antisymmetric, then the diffusion
    x, h = torch.randn(5, N_IN, dtype=torch.float64), states(5, H)
    W = cell.W
    expected = h + cell.eps * torch.tanh(h @ (W - W.T - cell.gamma * eye).T + x @ cell.inp.weight.T + cell.inp.bias)
    torch.testing.assert_close(cell(x, h), expected)


def test_antisymmetric_rnn_linearisation_at_zero_has_eigenvalues_one_plus_eps_times_imaginary_minus_gamma():
    cell = build(AntisymmetricRNN)
    with torch.no_grad():
        cell.inp.bias.zero_()
    zero = torch.zeros(H, dtype=torch.float64)
    eig = torch.linalg.eigvals(jacobian(cell, torch.zeros(N_IN, dtype=torch.float64), zero))
    torch.testing.assert_close(eig.real, torch.full((H,), 1 - cell.eps * cell.gamma, dtype=torch.float64))
    assert eig.imag.abs().max() > 1e-3  # a rotation, not a plain decay


# ------------------------------------------------------------------ Lipschitz RNN
def test_lipschitz_rnn_beta_matrices_split_as_the_paper_says():
    cell = build(LipschitzRNN)
    eye = torch.eye(H, dtype=torch.float64)
    beta = cell.beta
    for M, gamma in ((cell.M_A, cell.gamma_A), (cell.M_W, cell.gamma_W)):
        A = cell.beta_matrix(M, gamma)
        torch.testing.assert_close((A + A.T) / 2, (1 - beta) * (M + M.T) - gamma * eye)
        torch.testing.assert_close((A - A.T) / 2, beta * (M - M.T))


def test_lipschitz_rnn_is_its_euler_step():
    cell = build(LipschitzRNN)
    x, h = torch.randn(5, N_IN, dtype=torch.float64), states(5, H)
    beta, eye = cell.beta, torch.eye(H, dtype=torch.float64)
    M_A, M_W = cell.M_A, cell.M_W
    A = (1 - beta) * (M_A + M_A.T) + beta * (M_A - M_A.T) - cell.gamma_A * eye
    W = (1 - beta) * (M_W + M_W.T) + beta * (M_W - M_W.T) - cell.gamma_W * eye
    expected = h + cell.eps * (h @ A.T + torch.tanh(h @ W.T + x @ cell.inp.weight.T + cell.inp.bias))
    torch.testing.assert_close(cell(x, h), expected)


# ------------------------------------------------------------------ CTRNN
@pytest.mark.parametrize(("factory", "alpha"), [(CTRNN01, 0.1), (CTRNN02, 0.2)])
def test_ctrnn_is_its_equation_and_decays_at_one_minus_alpha(factory, alpha):
    cell = build(factory)
    assert cell.alpha == alpha
    x, h = torch.randn(5, N_IN, dtype=torch.float64), states(5, H)
    expected = (1 - alpha) * h + alpha * torch.tanh(h @ cell.rec.weight.T + x @ cell.inp.weight.T + cell.inp.bias)
    torch.testing.assert_close(cell(x, h), expected)
    with torch.no_grad():
        for p in cell.parameters():
            p.zero_()
    h_t = h
    for _ in range(10):
        h_t = cell(x, h_t)
    torch.testing.assert_close(h_t, (1 - alpha) ** 10 * h)


# ------------------------------------------------------------------ through the project
def load(spec: str) -> ModuleCell:
    """The cell as ``universality check MODULE:ATTR`` loads it (protocol checked)."""
    try:
        from universality.report.check import load_cell
    except ImportError:  # moved by a refactor: the catalog's loader builds the same ModuleCell
        cell = cell_from_spec(f"module:{spec}")
        assert isinstance(cell, ModuleCell)
        return cell
    return load_cell(spec)


def test_the_zoo_lists_every_cell_once():
    assert len(set(ZOO.values())) == len(ZOO) == 8
    assert all(spec.startswith("examples.zoo.") and ":" in spec for spec in ZOO.values())


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_cell_trains_as_a_user_cell(name):
    torch.manual_seed(0)
    cell = load(ZOO[name])
    assert isinstance(cell, ModuleCell)
    assert cell_spec(cell) == f"module:{ZOO[name]}"  # the catalog can rebuild it
    task = make_task("flipflop", n_time=12)
    pop = Population.create(cell, task, 8, [0, 1], lr=1e-2)
    size = getattr(cell.factory(task.input_size, 8), "state_size", 8)
    assert pop.state_size == size
    before = {k: v.clone() for k, v in pop.cell_params.items()}
    result = train(pop, TrainConfig(steps=4, batch_size=8, eval_every=4, eval_batch_size=16))
    assert all(math.isfinite(v) for v in result.loss), result
    for i in range(2):
        assert any(not torch.equal(before[k][i], pop.params[k][i]) for k in before), f"member {i} did not change"
    trials = task.sample(4, torch.Generator().manual_seed(3))
    states_, outputs = pop.run(trials.inputs)
    assert states_.shape == (2, 4, task.n_time, size) and torch.isfinite(states_).all()
    assert torch.isfinite(outputs).all()
    pop64 = pop.to("cpu", torch.float64)  # the analyses step the cell in float64
    h = pop64.step(torch.zeros(2, 4, task.input_size, dtype=torch.float64), pop64.initial_state(4, torch.float64))
    assert h.dtype == torch.float64 and torch.isfinite(h).all()
    _, J, _ = step_jacobians(pop64.step, h, torch.zeros(2, 4, task.input_size, dtype=torch.float64))
    assert J.shape == (2, 4, size, size) and torch.isfinite(J).all()  # the fixed-point analyses linearise it
