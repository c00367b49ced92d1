"""asv benchmarks: fixed points of P members x K candidates, batched LM vs the classic loop.

The population is a GRU flip-flop population (H = 16) with deterministic, strong recurrent
weights (orthogonal blocks, gain 2.0: one to three fixed points per member, plus slow regions) instead of
trained ones, to keep setup cheap. Candidates: K states from the members' trajectories
plus noise (``sample_initial_states``). ``Batched`` solves everything in one call to
:func:`find_fixed_points` (gradient phase, float64 Levenberg-Marquardt to the ``fixed``
tolerance 1e-10, and the second round between stable points); ``BatchedLMOnly`` without
the gradient phase and the second round (what recall costs).
``Classic`` is FixedPointFinder's approach (Golub & Sussillo 2018): one network at a
time, Adam (eps 0.01) on the *mean* q with one adaptive learning rate shared by all
candidates (initial 1.0), stopping when mean q < tol_q = 1e-12 or |dq| < tol_dq * lr
with tol_dq = 1e-20, at most 5000 iterations. It runs in float64 here (FixedPointFinder
uses float32), which only helps it; adaptive gradient clipping is omitted.

The initial states are given (drawn without conditions, so without the hold candidates
that ``sample_initial_states`` adds at conditions): the timings are of the search; the
holds' cost is in docs/performance.md.

Every benchmark runs with one torch thread: on the 2-core development VM small ops with
2 threads were far slower than with 1.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from universality.cells import GRU
from universality.dynamics import FixedPointConfig, find_fixed_points, sample_initial_states
from universality.population import Population
from universality.tasks import make_task

from .common import grid

HIDDEN, GAIN = 16, 2.0
LM_ONLY = FixedPointConfig(gradient_iters=0, max_pairs=0)


def make_population(members: int, device: str = "cpu") -> Population:
    """A GRU flip-flop population with strong deterministic recurrent weights (no training)."""
    return Population.create(GRU(gain=GAIN), make_task("flipflop"), HIDDEN, list(range(members)), device=device)


def classic_fixed_points(
    population: Population,
    condition: Tensor,
    initial_states: Tensor,
    tol_q: float = 1e-12,
    tol_dq: float = 1e-20,
    max_iters: int = 5000,
    lr: float = 1.0,
) -> tuple[Tensor, list[int]]:
    """FixedPointFinder-style search, one member at a time: ``condition [I]``,
    ``initial_states [P, K, S]`` -> final states ``[P, K, S]`` (float64) and iterations."""
    out, iterations = [], []
    for m in range(len(population)):
        member = population.select([m])
        params = {k: v.double() for k, v in member.cell_params.items()}
        h = initial_states[m : m + 1].clone().double().requires_grad_(True)
        x = condition.double().to(h.device).expand(1, h.shape[1], -1)
        opt = torch.optim.Adam([h], lr=lr, eps=0.01)
        rate, history = lr, [math.inf]
        it = 0
        for it in range(1, max_iters + 1):  # noqa: B007
            q = 0.5 * (member.step(x, h, params) - h).square().sum(-1)
            loss = q.mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            value = float(loss.detach())
            if value < tol_q or abs(history[-1] - value) < tol_dq * rate:
                break
            # Adaptive rate: shrink after a worse step, grow after 5 monotone improvements.
            if value > history[-1]:
                rate = max(rate * 0.95, 1e-3)
            elif len(history) >= 5 and all(a > b for a, b in zip(history[-5:], history[-4:] + [value], strict=True)):
                rate = rate / 0.95
            history.append(value)
            for group in opt.param_groups:
                group["lr"] = rate
        out.append(h.detach())
        iterations.append(it)
    return torch.cat(out), iterations


def certified_fraction(population: Population, condition: Tensor, states: Tensor, tol: float = 1e-10) -> float:
    """Fraction of ``states [P, K, S]`` whose float64 max-norm residual is <= ``tol``."""
    params = {k: v.double() for k, v in population.cell_params.items()}
    h = states.double().to(population.device)
    x = condition.double().to(h.device).expand(len(population), h.shape[1], -1)
    with torch.no_grad():
        residual = (population.step(x, h, params) - h).abs().amax(-1)
    return float((residual <= tol).double().mean())


class _Setup:
    params: tuple[list, ...] = (grid([1, 64, 512], [1]), grid([256, 1024], [64]), ["cpu", "cuda"])
    param_names = ["members", "candidates", "device"]
    timeout = 1200.0
    number, repeat, warmup_time = 1, 1, 0.0

    def setup(self, members: int, candidates: int, device: str) -> None:
        torch.set_num_threads(1)
        if device == "cuda" and not torch.cuda.is_available():
            raise NotImplementedError("CUDA is not available")
        self.population = make_population(members, device)
        self.condition = self.population.task.conditions().to(device)
        self.initial = sample_initial_states(self.population, FixedPointConfig(n_initial=candidates))


class Batched(_Setup):
    """All members x candidates in one :func:`find_fixed_points` call."""

    def time_solve(self, members: int, candidates: int, device: str) -> None:
        find_fixed_points(self.population, self.condition, self.initial)

    def peakmem_solve(self, members: int, candidates: int, device: str) -> None:
        find_fixed_points(self.population, self.condition, self.initial)


class BatchedLMOnly(_Setup):
    """:func:`find_fixed_points` without its recall work (no gradient phase, no round of
    seeds between stable points): ``Batched`` minus this is what recall costs."""

    def time_solve(self, members: int, candidates: int, device: str) -> None:
        find_fixed_points(self.population, self.condition, self.initial, LM_ONLY)


class Classic(_Setup):
    """FixedPointFinder-style baseline, one network at a time (skipped for P = 512)."""

    def setup(self, members: int, candidates: int, device: str) -> None:
        if members > 64:
            raise NotImplementedError("the per-network baseline takes too long at this size")
        super().setup(members, candidates, device)

    def time_solve(self, members: int, candidates: int, device: str) -> None:
        classic_fixed_points(self.population, self.condition[0], self.initial)

    def peakmem_solve(self, members: int, candidates: int, device: str) -> None:
        classic_fixed_points(self.population, self.condition[0], self.initial)
