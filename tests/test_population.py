"""Population: construction, determinism, running, selection."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from universality.cells import make_cell
from universality.population import Population
from universality.tasks import make_task

ARCHS = ["vanilla", "gru", "lstm", "ugrnn"]


def make(arch="gru", seeds=(0, 1, 2), task="flipflop", hidden=8, activation="tanh"):
    return Population.create(make_cell(arch, activation), make_task(task), hidden, list(seeds))


@pytest.mark.parametrize("arch", ARCHS)
def test_same_seed_same_population_bit_for_bit(arch):
    a, b = make(arch), make(arch)
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k])
    # a member's initialisation depends on its own seed only
    c = make(arch, seeds=(7, 1))
    for k in a.params:
        assert torch.equal(a.params[k][1], c.params[k][1])
        assert not torch.equal(a.params[k][0], c.params[k][0]) or "bias" in k


@pytest.mark.parametrize("arch", ARCHS)
def test_run_equals_stepping_and_readout(arch):
    pop = make(arch)
    trials = pop.task.sample(4, torch.Generator().manual_seed(0))
    states, outputs = pop.run(trials.inputs)
    p, b, t = len(pop), 4, pop.task.n_time
    assert states.shape == (p, b, t, pop.state_size)
    assert outputs.shape == (p, b, t, pop.task.output_size)
    h = pop.initial_state(b)
    for step in range(3):
        h = pop.step(trials.inputs[:, step].expand(p, b, -1), h)
        torch.testing.assert_close(states[:, :, step], h)
    w, bias = pop.params["readout.weight"], pop.params["readout.bias"]
    hid = states[..., : pop.hidden_size]
    expected = torch.einsum("pbth,poh->pbto", hid, w) + bias[:, None, None, :]
    torch.testing.assert_close(outputs, expected, atol=1e-5, rtol=1e-5)
    # per-member inputs [P, B, T, I] give the same answer as shared ones
    states4, _ = pop.run(trials.inputs.expand(p, *trials.inputs.shape))
    torch.testing.assert_close(states4, states)


@given(perm=st.permutations(range(4)))
def test_select_permutes_members_and_results(perm):
    pop = make("vanilla", seeds=(0, 1, 2, 3), hidden=4)
    trials = pop.task.sample(2, torch.Generator().manual_seed(1))
    states, _ = pop.run(trials.inputs)
    sub = pop.select(perm)
    assert [m.seed for m in sub.members] == [pop.members[i].seed for i in perm]
    sub_states, _ = sub.run(trials.inputs)
    torch.testing.assert_close(sub_states, states[list(perm)])


def test_bad_inputs_are_refused():
    pop = make()
    with pytest.raises(ValueError, match="inputs must be"):
        pop.run(torch.zeros(2, 5, 7))
    with pytest.raises(ValueError, match="hidden size"):
        make(hidden=0)
    with pytest.raises(ValueError, match="at least one member"):
        make(seeds=())
    with pytest.raises(ValueError, match="one value per seed"):
        Population.create(make_cell("gru"), make_task("flipflop"), 4, [0, 1], lr=[1e-3])
