"""The fused recurrences: values and gradients equal autograd through the plain step."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from universality.cells import ACTIVATIONS, CELLS, make_cell
from universality.cells.fused import Workspace
from universality.population import Population
from universality.tasks import make_task

# P, T, B, H (T = 1 included)
shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(1, 7))


def perturbed_params(cell, p, i, h, gen):
    per = [cell.init_params(i, h, gen) for _ in range(p)]
    return {k: (torch.stack([q[k] for q in per]) + 0.3 * torch.randn(p, *per[0][k].shape, generator=gen)).double()
            for k in per[0]}


def grads(fn, params, x, h0, weight):
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    x, h0 = x.clone().requires_grad_(True), h0.clone().requires_grad_(True)
    states = fn(leaves, x, h0)
    loss = (states * weight).sum() + 0.5 * (states**2).sum()
    return states.detach(), torch.autograd.grad(loss, [*leaves.values(), x, h0])


@pytest.mark.parametrize("arch", sorted(CELLS))
@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
@given(shape=shapes, seed=st.integers(0, 2**31 - 1))
def test_fused_gradients_equal_autograd(arch, activation, shape, seed):
    p, t, b, h = shape
    cell = make_cell(arch, activation)
    gen = torch.Generator().manual_seed(seed)
    params = perturbed_params(cell, p, 2, h, gen)
    x = torch.randn(p, t, b, 2, generator=gen, dtype=torch.float64)
    h0 = 0.5 * torch.randn(p, b, cell.state_size(h), generator=gen, dtype=torch.float64)
    weight = torch.randn(p, t, b, cell.state_size(h), generator=gen, dtype=torch.float64)
    fused_states, fused = grads(cell.scan, params, x, h0, weight)
    plain_states, plain = grads(cell.scan_stepwise, params, x, h0, weight)
    torch.testing.assert_close(fused_states, plain_states, rtol=1e-12, atol=1e-12)
    for got, want in zip(fused, plain, strict=True):
        scale = want.abs().max().clamp(min=1e-300)
        assert (got - want).abs().max() <= 1e-10 * scale


@pytest.mark.parametrize("arch", sorted(CELLS))
def test_training_loss_gradient_with_per_member_l2_equals_autograd(arch):
    """The whole training loss (masked MSE + per-member L2) through Population.run_time_major."""
    task = make_task("flipflop", n_time=9)
    pop = Population.create(make_cell(arch, "relu"), task, 5, [0, 1, 2], l2=[0.0, 1e-2, 0.3]).to("cpu", torch.float64)
    trials = task.sample(4, torch.Generator().manual_seed(3))
    l2 = torch.tensor([m.l2 for m in pop.members], dtype=torch.float64)

    def loss_grads(plain):
        leaves = {k: v.clone().requires_grad_(True) for k, v in pop.params.items()}
        if plain:
            cell_p = {k: v for k, v in leaves.items() if not k.startswith("readout.")}
            x, h0 = pop.as_time_major(trials.inputs), pop.initial_state(4, torch.float64)
            states = pop.cell.scan_stepwise(cell_p, x, h0)
            outputs = pop.readout(states, leaves)
        else:
            _, outputs = pop.run_time_major(pop.as_time_major(trials.inputs), params=leaves)
        penalty = sum(v.pow(2).flatten(1).sum(1) for k, v in leaves.items() if "weight" in k)
        loss = task.loss(outputs.transpose(1, 2), trials) + l2 * penalty
        return torch.autograd.grad(loss.sum(), list(leaves.values()))

    for got, want in zip(loss_grads(False), loss_grads(True), strict=True):
        assert (got - want).abs().max() <= 1e-10 * want.abs().max()


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives_agree_with_autograd(name):
    act = ACTIVATIONS[name]
    x = torch.linspace(-3, 3, 61, dtype=torch.float64).requires_grad_(True)
    (want,) = torch.autograd.grad(act.fn(x).sum(), x)
    y = act.fn(x.detach())
    g = torch.randn(61, dtype=torch.float64)
    torch.testing.assert_close(act.derivative(y), want, rtol=0, atol=1e-15)
    torch.testing.assert_close(act.backward(g, y, torch.empty_like(g)), g * want, rtol=0, atol=1e-15)
    torch.testing.assert_close(act.fn_(x.detach().clone()), y)


def test_a_workspace_is_reused_and_a_stale_backward_is_refused():
    cell = make_cell("gru")
    gen = torch.Generator().manual_seed(0)
    params = {k: v.requires_grad_(True) for k, v in perturbed_params(cell, 2, 2, 3, gen).items()}
    x = torch.randn(2, 5, 4, 2, generator=gen, dtype=torch.float64)
    h0 = torch.zeros(2, 4, 3, dtype=torch.float64)
    ws = Workspace()
    first = cell.scan(params, x, h0, ws)
    expected = first.detach().clone()
    (g_first,) = torch.autograd.grad(first.sum(), params["weight_hh"])
    second = cell.scan(params, x, h0, ws)
    assert second.data_ptr() == first.data_ptr()  # the same buffer serves both calls
    torch.testing.assert_close(second, expected, rtol=0, atol=0)
    (g_second,) = torch.autograd.grad(second.sum(), params["weight_hh"])
    torch.testing.assert_close(g_second, g_first, rtol=0, atol=0)
    stale = cell.scan(params, x, h0, ws)
    cell.scan(params, x, h0, ws)  # overwrites the buffers `stale` saved for its backward
    with pytest.raises(RuntimeError, match="modified"):
        torch.autograd.grad(stale.sum(), params["weight_hh"])
