"""Population training: per-member optimisation, isolation of divergence, early stop."""

import torch

from universality.cells import make_cell
from universality.population import Population
from universality.tasks import make_task
from universality.training import DIVERGED, FAILED, TRAINED, TrainConfig, train


def population(lrs, seeds=None, arch="gru", task="flipflop", hidden=8):
    seeds = list(range(len(lrs))) if seeds is None else seeds
    return Population.create(make_cell(arch), make_task(task), hidden, seeds, lr=lrs)


def test_training_is_deterministic():
    config = TrainConfig(steps=20, batch_size=8, eval_every=10)
    a, b = population([3e-3, 1e-2]), population([3e-3, 1e-2])
    ra, rb = train(a, config), train(b, config)
    assert ra.loss == rb.loss
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k])


def test_a_diverging_member_changes_nothing_for_the_others():
    config = TrainConfig(steps=30, batch_size=8, eval_every=10)
    normal = population([3e-3, 3e-3, 3e-3])
    absurd = population([3e-3, 1e35, 3e-3])
    r_normal, r_absurd = train(normal, config), train(absurd, config)
    assert r_absurd.status[1] == DIVERGED and not r_absurd.passed[1]
    assert r_absurd.steps[1] < config.steps
    for k in normal.params:
        for i in (0, 2):
            assert torch.equal(normal.params[k][i], absurd.params[k][i]), (k, i)
        assert torch.isfinite(absurd.params[k][1]).all()  # frozen at its last finite values
    assert [r_normal.loss[i] for i in (0, 2)] == [r_absurd.loss[i] for i in (0, 2)]


def test_l2_shrinks_weights_per_member():
    pop = Population.create(make_cell("vanilla"), make_task("flipflop"), 8, [0, 0], l2=[0.0, 1.0], lr=1e-2)
    train(pop, TrainConfig(steps=40, batch_size=8, eval_every=40, lr_schedule="constant"))
    norm = pop.params["weight_hh"].flatten(1).norm(dim=1)
    assert norm[1] < 0.5 * norm[0]


def test_learns_flipflop_and_stops_early():
    """A small GRU population learns the 3-bit flip-flop and each member stops when it passes."""
    pop = population([1e-2, 1e-2], hidden=16)
    before = train(population([1e-2, 1e-2], hidden=16), TrainConfig(steps=1, batch_size=32))
    result = train(pop, TrainConfig(steps=600, batch_size=32, eval_every=50))
    assert result.status == [TRAINED, TRAINED], result
    assert all(result.passed) and all(s < 600 for s in result.steps)
    assert all(s >= pop.task.pass_threshold for s in result.score)
    assert max(result.loss) < min(before.loss) / 5


def test_unfinished_members_are_marked_failed():
    result = train(population([1e-3]), TrainConfig(steps=2, batch_size=4))
    assert result.status == [FAILED] and result.passed == [False]


def test_cosine_schedule_decays_to_the_floor():
    config = TrainConfig(steps=101, min_lr_fraction=0.1)
    assert config.lr_factor(1) == 1.0
    assert abs(config.lr_factor(51) - 0.55) < 1e-12
    assert abs(config.lr_factor(101) - 0.1) < 1e-12
    assert TrainConfig(lr_schedule="constant").lr_factor(500) == 1.0
