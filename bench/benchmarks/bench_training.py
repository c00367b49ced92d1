"""Training steps of a population vs the same networks trained one at a time.

Parameters: P members, H hidden units, device. The baseline is what a user would
write without this package: P separate ``torch.nn.GRU`` + ``Linear`` modules, each
with its own Adam, stepped in a Python loop. ``track_fraction_of_gemm`` reports the
model FLOP/s of the population step as a fraction of a large float32 GEMM measured
in the same run (the roofline of this machine).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from universality.cells import make_cell
from universality.population import Population
from universality.tasks import make_task
from universality.training import TrainConfig, train

from .common import THREADS, gemm_flops_per_second, grid, setup_device, sync

BATCH = 64
N_TIME = 64
#: Each timed call takes this many steps (both benchmarks), so one-off costs of a
#: ``train`` call (buffers, the final evaluation) are amortised as in a real run.
STEPS = 4


def _population(p: int, h: int, device: torch.device) -> Population:
    task = make_task("flipflop", n_time=N_TIME)
    return Population.create(make_cell("gru"), task, h, list(range(p)), device=device)


def _model_flops(p: int, h: int, i: int = 3, o: int = 3) -> float:
    """Forward + backward (~3x forward) multiply-adds x2 of a GRU population step."""
    forward = 2 * p * BATCH * N_TIME * (3 * h * (h + i) + o * h)
    return 3.0 * forward


class PopulationTrainStep:
    params = (grid([1, 16, 256], [1, 16]), grid([32, 128], [32]), ["cpu", "cuda"])
    param_names = ["P", "H", "device"]
    timeout = 300

    def setup(self, p: int, h: int, device: str) -> None:
        self.device = setup_device(device)
        self.pop = _population(p, h, self.device)
        self.config = TrainConfig(steps=STEPS, batch_size=BATCH, eval_every=10**9, eval_batch_size=1)
        train(self.pop, self.config)  # warm-up

    def time_train_step(self, p: int, h: int, device: str) -> None:
        train(self.pop, self.config)
        sync(self.device)

    def track_fraction_of_gemm(self, p: int, h: int, device: str) -> float:
        start = time.perf_counter()
        train(self.pop, self.config)
        sync(self.device)
        seconds = time.perf_counter() - start
        return STEPS * _model_flops(p, h) / seconds / gemm_flops_per_second(self.device)

    track_fraction_of_gemm.unit = "fraction"  # type: ignore[attr-defined]

    def track_threads(self, p: int, h: int, device: str) -> int:
        return THREADS


class _Net(nn.Module):
    def __init__(self, h: int) -> None:
        super().__init__()
        self.rnn = nn.GRU(3, h, batch_first=True)
        self.out = nn.Linear(h, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0])


class LoopTrainStep:
    """Baseline: P networks as separate torch.nn modules, one Adam step each in a loop."""

    params = (grid([1, 16, 256], [1, 16]), grid([32, 128], [32]), ["cpu", "cuda"])
    param_names = ["P", "H", "device"]
    timeout = 600

    def setup(self, p: int, h: int, device: str) -> None:
        self.device = setup_device(device)
        torch.manual_seed(0)
        self.nets = [_Net(h).to(self.device) for _ in range(p)]
        self.opts = [torch.optim.Adam(n.parameters(), lr=1e-3) for n in self.nets]
        self.task = make_task("flipflop", n_time=N_TIME)
        self.gen = torch.Generator().manual_seed(0)

    def time_train_step(self, p: int, h: int, device: str) -> None:
        for _ in range(STEPS):
            trials = self.task.sample(BATCH, self.gen).to(self.device)
            for net, opt in zip(self.nets, self.opts, strict=True):
                loss = ((net(trials.inputs) - trials.targets) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                opt.step()
        sync(self.device)
