"""Training steps of a user's cell (``ModuleCell``) against the equivalent built-in cell.

The user's cell is a leaky tanh RNN written as a ``torch.nn.Module`` (as
``examples/leaky_rnn.py``: ``h' = (1 - a) h + a tanh(W_in x + b + W_rec h)``, a = 0.5),
stepped through :class:`~universality.cells.ModuleCell`; the built-in is the vanilla tanh
cell (fused kernels, analytic backward) at the same size: P members, H hidden units,
batch 64, the flip-flop task (64 steps), one thread, CPU. The leaky update costs one
multiply-add per unit more than the vanilla step; everything else is the same work.

``time_train_step`` times ``STEPS`` training steps of either cell; ``track_module_over_builtin``
times both in the same process, back to back, best of ``REPEATS``, and reports
module time / built-in time (the ratio docs/performance.md records).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from universality.cells import Cell, ModuleCell, make_cell
from universality.population import Population
from universality.tasks import make_task
from universality.training import TrainConfig, train

from .common import THREADS, grid, setup_device

BATCH = 64
N_TIME = 64
#: Each timed call takes this many steps, so one-off costs of a ``train`` call are amortised.
STEPS = 4
REPEATS = 5


class LeakyRNN(nn.Module):
    """``examples/leaky_rnn.py``'s cell, defined here so the suite does not import examples/."""

    alpha = 0.5

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.orthogonal_(self.rec.weight, gain=0.9)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * h + self.alpha * torch.tanh(self.inp(x) + self.rec(h))


def _cell(name: str) -> Cell:
    return ModuleCell(LeakyRNN) if name == "module" else make_cell("vanilla")


def _population(cell: str, p: int, h: int) -> Population:
    return Population.create(_cell(cell), make_task("flipflop", n_time=N_TIME), h, list(range(p)))


def _config() -> TrainConfig:
    return TrainConfig(steps=STEPS, batch_size=BATCH, eval_every=10**9, eval_batch_size=1)


def _seconds(pop: Population, config: TrainConfig) -> float:
    start = time.perf_counter()
    train(pop, config)
    return time.perf_counter() - start


class ModuleCellTrainStep:
    """``STEPS`` training steps of the leaky module cell or the built-in vanilla cell."""

    params = (["module", "vanilla"], grid([16, 64], [16]), grid([16, 64], [64]))
    param_names = ["cell", "P", "H"]
    timeout = 300

    def setup(self, cell: str, p: int, h: int) -> None:
        setup_device("cpu")
        self.pop = _population(cell, p, h)
        self.config = _config()
        train(self.pop, self.config)  # warm-up

    def time_train_step(self, cell: str, p: int, h: int) -> None:
        train(self.pop, self.config)

    def track_threads(self, cell: str, p: int, h: int) -> int:
        return THREADS


class ModuleOverBuiltin:
    """Seconds per training step of the module cell / of the built-in cell, measured back
    to back in one process (best of ``REPEATS`` each): the ratio to read off."""

    params = (grid([16, 64], [16]), grid([16, 64], [64]))
    param_names = ["P", "H"]
    timeout = 300

    def setup(self, p: int, h: int) -> None:
        setup_device("cpu")
        self.config = _config()
        self.pops = {name: _population(name, p, h) for name in ("module", "vanilla")}
        for pop in self.pops.values():
            train(pop, self.config)  # warm-up

    def track_module_over_builtin(self, p: int, h: int) -> float:
        best = {name: float("inf") for name in self.pops}
        for _ in range(REPEATS):
            for name, pop in self.pops.items():
                best[name] = min(best[name], _seconds(pop, self.config))
        return best["module"] / best["vanilla"]

    track_module_over_builtin.unit = "ratio"  # type: ignore[attr-defined]
