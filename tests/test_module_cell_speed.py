"""ModuleCell's sequence path (one vmap of one functional_call per sequence) changes no number:
it equals stepping ``recur`` bit for bit, forward, gradients and training, and each member
equals its own plain ``nn.Module`` run in a loop."""

import torch
from torch import nn

from examples.leaky_rnn import LeakyRNN as Leaky
from universality.cells import ModuleCell
from universality.population import Population
from universality.tasks import make_task
from universality.training import TrainConfig, train


class TwoPart(nn.Module):
    """A cell with a state larger than H (``[h, c]``), a buffer, a tied weight and a nested module."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.state_size = 2 * hidden_size
        self.hidden_size = hidden_size
        self.body = nn.Sequential(nn.Linear(input_size + 2 * hidden_size, 2 * hidden_size), nn.Tanh())
        self.gate = nn.Linear(hidden_size, hidden_size)
        self.twin = self.gate  # tied: one parameter under two names
        self.register_buffer("scale", torch.linspace(0.5, 1.0, hidden_size))

    def forward(self, x, s):
        h, c = s[:, : self.hidden_size], s[:, self.hidden_size:]
        z = self.body(torch.cat([x, s], -1))
        c = torch.sigmoid(self.gate(h)) * c + self.scale * z[:, : self.hidden_size]
        h = torch.tanh(self.twin(c)) + z[:, self.hidden_size:]
        return torch.cat([h, c], -1)


def _stacked(cell, p, i, h, seed):
    gen = torch.Generator().manual_seed(seed)
    per = [cell.init_params(i, h, gen) for _ in range(p)]
    return per, {k: torch.stack([q[k] for q in per]) for k in per[0]}


def _scan_and_grads(cell, params, x, h0, stepwise):
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    run = cell.scan_stepwise if stepwise else cell.scan
    states = run(leaves, x, h0)
    loss = (states * torch.linspace(-1, 1, states.shape[-1])).sin().sum()
    return states, torch.autograd.grad(loss, list(leaves.values()))


def test_scan_equals_stepping_recur_bit_for_bit():
    for factory, p, b, h, t in ((Leaky, 3, 4, 5, 7), (TwoPart, 2, 3, 4, 6), (Leaky, 1, 1, 1, 1)):
        cell = ModuleCell(factory)
        _, params = _stacked(cell, p, 3, h, seed=1)
        s = cell.state_size(h)
        gen = torch.Generator().manual_seed(2)
        x, h0 = torch.randn(p, t, b, 3, generator=gen), torch.randn(p, b, s, generator=gen)
        fast, fast_grads = _scan_and_grads(cell, params, x, h0, stepwise=False)
        slow, slow_grads = _scan_and_grads(cell, params, x, h0, stepwise=True)
        assert fast.shape == (p, t, b, s)
        assert torch.equal(fast, slow), factory
        for a, c in zip(fast_grads, slow_grads, strict=True):
            assert torch.equal(a, c), factory
        with torch.no_grad():
            assert torch.equal(cell.scan(params, x, h0), slow)


def test_each_member_equals_its_own_module_run_in_a_loop():
    p, b, h, t = 3, 4, 5, 6
    for factory in (Leaky, TwoPart):
        cell = ModuleCell(factory)
        per, params = _stacked(cell, p, 3, h, seed=3)
        s = cell.state_size(h)
        gen = torch.Generator().manual_seed(4)
        x, h0 = torch.randn(p, t, b, 3, generator=gen), torch.randn(p, b, s, generator=gen)
        states, grads = _scan_and_grads(cell, params, x, h0, stepwise=False)
        for m in range(p):
            module = factory(3, h)
            module.load_state_dict(per[m], strict=False)  # the buffer keeps its own value
            state, out = h0[m], []
            for step in range(t):
                state = module(x[m, step], state)
                out.append(state)
            ref = torch.stack(out)
            torch.testing.assert_close(states[m], ref.detach(), atol=1e-6, rtol=1e-6)
            loss = (ref * torch.linspace(-1, 1, s)).sin().sum()
            ref_grads = torch.autograd.grad(loss, [dict(module.named_parameters())[k] for k in per[m]])
            for name, g, r in zip(per[m], grads, ref_grads, strict=True):
                torch.testing.assert_close(g[m], r, atol=1e-5, rtol=1e-5, msg=f"{factory.__name__}.{name}")


class _Stepwise(ModuleCell):
    """The path before: one vmap(functional_call) per step."""

    def scan(self, params, x, state, workspace=None):
        return self.scan_stepwise(params, x, state)


def test_training_a_population_is_the_same_as_on_the_stepwise_path():
    task = make_task("flipflop", n_time=12)
    config = TrainConfig(steps=6, batch_size=8, eval_every=3, eval_batch_size=16)
    results = {}
    for name, cell in (("fast", ModuleCell(Leaky)), ("slow", _Stepwise(Leaky, arch="Leaky"))):
        pop = Population.create(cell, task, 6, [0, 1, 2], l2=1e-3)
        results[name] = (train(pop, config), pop.params)
    (fast, fast_params), (slow, slow_params) = results["fast"], results["slow"]
    assert fast.loss == slow.loss and fast.status == slow.status
    assert fast_params.keys() == slow_params.keys()
    for k in fast_params:
        assert torch.equal(fast_params[k], slow_params[k]), k
