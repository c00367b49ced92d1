"""Population training: per-member optimisation, isolation of divergence, early stop."""

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from universality.cells import make_cell
from universality.population import Population
from universality.tasks import make_task
from universality.tasks.base import Task, Trials, masked_mse
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


def test_one_member_equals_torch_adam_with_the_same_clipping():
    """The hand-written per-member Adam + clipping is torch.optim.Adam + clip_grad_norm_."""
    task = make_task("flipflop", n_time=12)
    config = TrainConfig(steps=15, batch_size=6, eval_every=1000, clip=0.05, lr_schedule="cosine", seed=4)
    pop = Population.create(make_cell("gru"), task, 6, [7], l2=0.01, lr=2e-2).to("cpu", torch.float64)
    ref = {k: v.clone().requires_grad_(True) for k, v in pop.params.items()}
    train(pop, config)

    opt = torch.optim.Adam(list(ref.values()), lr=2e-2)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: config.lr_factor(s + 1))
    twin = Population(pop.cell, task, 6, pop.members, ref)
    gen = torch.Generator().manual_seed(config.seed)
    for _ in range(config.steps):
        trials = task.sample(config.batch_size, gen)
        _, outputs = twin.run(trials.inputs)
        penalty = sum(v.pow(2).sum() for k, v in ref.items() if "weight" in k)
        loss = task.loss(outputs, trials).sum() + 0.01 * penalty
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(ref.values()), config.clip)
        opt.step()
        schedule.step()
    for k, v in ref.items():
        torch.testing.assert_close(pop.params[k], v.detach(), rtol=1e-9, atol=1e-12)


def test_a_member_trains_the_same_alone_as_with_shard_mates_that_stop_earlier():
    """Compaction: members that passed or diverged leave the working set, and that changes
    nothing, bit for bit, for the members still training."""
    config = TrainConfig(steps=300, batch_size=16, eval_every=20, max_restarts=1)
    seeds, lrs = [0, 1, 2], [1e-2, 1e35, 2e-2]
    together = population(lrs, seeds=seeds, hidden=12)
    result = train(together, config)
    assert result.status[1] == DIVERGED
    assert result.steps[0] != result.steps[2], "the test needs members that leave at different steps"
    for i in (0, 2):
        alone = population([lrs[i]], seeds=[seeds[i]], hidden=12)
        r_alone = train(alone, config)
        assert (r_alone.status[0], r_alone.steps[0]) == (result.status[i], result.steps[i])
        for k in alone.params:
            assert torch.equal(alone.params[k][0], together.params[k][i]), (k, i)


def test_divergence_restarts_at_half_the_learning_rate_then_gives_up(caplog):
    config = TrainConfig(steps=30, batch_size=8, eval_every=10, max_restarts=2)
    with caplog.at_level("WARNING", logger="universality.training"):
        result = train(population([3e-3, 1e35]), config)
    assert result.restarts == [0, 2]
    restarts = [r.getMessage() for r in caplog.records if "checkpoint at lr" in r.getMessage()]
    assert [m.rsplit("lr ", 1)[1] for m in restarts] == ["5e+34", "2.5e+34"]
    assert result.status[1] == DIVERGED
    no_restart = train(population([3e-3, 1e35]), TrainConfig(steps=30, batch_size=8, eval_every=10, max_restarts=0))
    assert no_restart.restarts == [0, 0] and no_restart.status[1] == DIVERGED
    assert no_restart.steps[1] <= result.steps[1]


def test_a_restart_recovers_a_member_whose_learning_rate_was_too_high():
    """A ReLU network that diverges at its learning rate restarts at half of it, again and
    again, until it trains with finite loss."""
    def relu_population(lrs):
        return Population.create(make_cell("vanilla", "relu"), make_task("flipflop"), 8, [0] * len(lrs), lr=lrs)

    base = dict(steps=40, batch_size=8, eval_every=10, lr_schedule="constant")
    lrs = [10.0**k for k in range(0, 36, 5)]
    tried = train(relu_population(lrs), TrainConfig(**base, max_restarts=0))
    bad = [lr for lr, s in zip(lrs, tried.status, strict=True) if s == DIVERGED]
    assert bad and bad != lrs, tried.status  # some learning rates diverge, some do not
    again = train(relu_population([min(bad)]), TrainConfig(**base, max_restarts=40))
    assert again.restarts[0] >= 1 and again.status[0] != DIVERGED
    assert all(torch.isfinite(torch.tensor(again.loss)))


def test_members_still_improving_at_the_step_limit_continue():
    task_pop = lambda lrs: population(lrs, hidden=8)  # noqa: E731
    config = TrainConfig(steps=20, batch_size=16, eval_every=5, improve_window=1, min_improvement=0.01,
                         extend_steps=15, lr_schedule="constant")
    result = train(task_pop([3e-2, 1e-9]), config)
    assert result.steps[0] > 20 and result.status[0] in (TRAINED, FAILED)
    assert result.steps[1] == 20 and result.status[1] == FAILED  # lr 1e-9 does not improve by 1%
    plain = train(task_pop([3e-2, 1e-9]), TrainConfig(steps=20, batch_size=16, eval_every=5, lr_schedule="constant"))
    assert plain.steps == [20, 20]
    assert TrainConfig(steps=10).lr_factor(25) == TrainConfig(steps=10).lr_factor(10)


@pytest.mark.parametrize("task_name", ["flipflop", "sine", "cdi"])
@pytest.mark.parametrize("arch", ["vanilla", "gru", "lstm", "ugrnn"])
def test_a_members_arithmetic_does_not_depend_on_the_population_size(task_name, arch):
    """Bit for bit, every task (one and several outputs) and cell: the property that lets
    compaction shrink the working set down to a single member."""
    config = TrainConfig(steps=3, batch_size=8, eval_every=100)
    task = make_task(task_name)
    alone = Population.create(make_cell(arch, "relu"), task, 6, [5], lr=1e-2)
    crowd = Population.create(make_cell(arch, "relu"), task, 6, [5, 6, 7], lr=1e-2)
    train(alone, config)
    train(crowd, config)
    for k in alone.params:
        assert torch.equal(alone.params[k][0], crowd.params[k][0]), k


def test_training_in_member_chunks_changes_nothing(monkeypatch):
    """Large populations run forward/backward in chunks of members (cache-sized); the
    chunks are an execution detail: the same weights, bit for bit."""
    import universality.training as training

    config = TrainConfig(steps=12, batch_size=8, eval_every=5)
    whole = population([1e-2, 2e-2, 1e35, 3e-3, 5e-3], seeds=[0, 1, 2, 3, 4])
    r_whole = train(whole, config)
    monkeypatch.setattr(training, "CHUNK_ELEMENTS", 2 * config.batch_size * 8)  # two members per chunk
    chunked = population([1e-2, 2e-2, 1e35, 3e-3, 5e-3], seeds=[0, 1, 2, 3, 4])
    r_chunked = train(chunked, config)
    assert r_chunked.status == r_whole.status and r_chunked.steps == r_whole.steps
    for k in whole.params:
        assert torch.equal(whole.params[k], chunked.params[k]), k


def test_min_steps_holds_back_fast_learners():
    """No member stops as trained before ``min_steps``; without it, one would."""
    config = TrainConfig(steps=600, batch_size=32, eval_every=50)
    free = train(population([1e-2, 1e-2], hidden=16), config)
    assert min(free.steps) < 300, "the test needs a member that passes before step 300"
    held = train(population([1e-2, 1e-2], hidden=16), TrainConfig(steps=600, batch_size=32, eval_every=50,
                                                                   min_steps=300))
    assert all(s >= 300 for s, st in zip(held.steps, held.status, strict=True) if st == TRAINED)
    assert TRAINED in held.status


@dataclass(frozen=True)
class CoinTask(Task):
    """Each batch is easy (targets 0) or impossible (targets 100), by one coin its generator
    draws: a network of small outputs meets the target exactly on the easy batches."""

    name: ClassVar[str] = "coin"
    n_time: int = 4
    pass_threshold: float = 25.0

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 1

    def sample_inputs(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(1, generator=generator).expand(batch_size, self.n_time, 1).clone()

    def target(self, inputs: torch.Tensor) -> torch.Tensor:
        return 100.0 * (inputs >= 0.5).float()

    def score(self, outputs: torch.Tensor, trials: Trials) -> torch.Tensor:
        return masked_mse(outputs, trials.targets, trials.mask)

    def conditions(self) -> torch.Tensor:
        return torch.zeros(1, 1)

    def condition_labels(self) -> list[str]:
        return ["zero"]


def test_confirmation_on_fresh_batches():
    """With ``confirm`` fresh held-out batches, a member that meets the target on the fixed
    held-out batch stops only once the fresh ones agree: never earlier than without, and
    later for some trial streams."""
    later = 0
    for seed in range(12):
        runs = []
        for confirm in (0, 2):
            pop = Population.create(make_cell("gru"), CoinTask(), 4, [seed], lr=1e-12)
            runs.append(train(pop, TrainConfig(steps=40, batch_size=4, eval_every=10, seed=seed, confirm=confirm)))
        plain, confirmed = runs
        if confirmed.status[0] == TRAINED:
            assert plain.status[0] == TRAINED and confirmed.steps[0] >= plain.steps[0]
        later += plain.status[0] == TRAINED and (confirmed.status[0] != TRAINED or confirmed.steps[0] > plain.steps[0])
    assert later > 0
