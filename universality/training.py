"""Training a whole population at once.

Every member has its own Adam state, learning rate, L2 coefficient, gradient-norm
clip and early stop. Member losses are summed before one backward pass; since members
share no parameters, each member's gradient is exactly the gradient of its own loss.
A member whose loss or gradient becomes non-finite is frozen at its last finite
parameters and marked ``diverged``; nothing of it reaches the other members.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from .population import Population

log = logging.getLogger(__name__)

TRAINED, FAILED, DIVERGED = "trained", "failed", "diverged"
STATUSES = (TRAINED, FAILED, DIVERGED)


@dataclass(frozen=True)
class TrainConfig:
    """Training settings shared by all members (lr and l2 live in the member table)."""

    steps: int = 3000
    batch_size: int = 64
    clip: float = 1.0  # per-member global gradient-norm clip
    eval_every: int = 100
    eval_batch_size: int = 256
    lr_schedule: str = "cosine"  # "cosine" (decay to min_lr_fraction * lr at `steps`) or "constant"
    min_lr_fraction: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    seed: int = 0  # trial stream (training batches and held-out set)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if not 0 < self.min_lr_fraction <= 1:
            raise ValueError(f"min_lr_fraction must lie in (0, 1], got {self.min_lr_fraction}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("Adam betas must lie in [0, 1)")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lr_factor(self, step: int) -> float:
        """Multiplier of every member's learning rate at ``step`` (1-based)."""
        if self.lr_schedule == "constant":
            return 1.0
        cos = 0.5 * (1 + math.cos(math.pi * (step - 1) / max(self.steps - 1, 1)))
        return self.min_lr_fraction + (1 - self.min_lr_fraction) * cos


@dataclass
class TrainResult:
    """Per-member outcome: ``status`` (trained/failed/diverged), held-out ``loss`` and
    ``score``, ``passed``, and the number of ``steps`` taken."""

    status: list[str]
    loss: list[float]
    score: list[float]
    passed: list[bool]
    steps: list[int]
    seconds: float
    restarts: list[int] = field(default_factory=list)  # per member: restarts after divergence


Progress = Callable[[int, int, int], None]  # (step, n_active, n_trained)


def l2_penalty(population: Population, params: dict[str, Tensor]) -> Tensor:
    """Sum of squared weights (matrices, not biases) per member: ``[P]``."""
    total = torch.zeros(len(population), device=population.device)
    for name, value in params.items():
        if "weight" in name:
            total = total + value.pow(2).flatten(1).sum(1)
    return total


def evaluate(population: Population, trials_seed: int, batch_size: int) -> tuple[Tensor, Tensor]:
    """Held-out ``(loss [P], score [P])`` on a fixed seeded batch."""
    trials = population.task.sample(batch_size, torch.Generator().manual_seed(trials_seed))
    with torch.no_grad():
        _, outputs = population.run(trials.inputs)
        trials_dev = trials.to(population.device)
        return population.task.loss(outputs, trials_dev), population.task.score(outputs, trials_dev)


def train(population: Population, config: TrainConfig = TrainConfig(), progress: Progress | None = None) -> TrainResult:
    """Train ``population`` in place; return each member's outcome."""
    start = time.perf_counter()
    task, p_count, dev = population.task, len(population), population.device
    lr = torch.tensor([m.lr for m in population.members], device=dev)
    l2 = torch.tensor([m.l2 for m in population.members], device=dev)
    params = {k: v.detach().clone() for k, v in population.params.items()}
    m1 = {k: torch.zeros_like(v) for k, v in params.items()}
    m2 = {k: torch.zeros_like(v) for k, v in params.items()}
    active = torch.ones(p_count, dtype=torch.bool, device=dev)
    status = [FAILED] * p_count
    steps_taken = [config.steps] * p_count
    gen = torch.Generator().manual_seed(config.seed)
    eval_seed = config.seed + 1_000_003

    def shape(per_member: Tensor, like: Tensor) -> Tensor:
        return per_member.view(-1, *([1] * (like.dim() - 1)))

    for step in range(1, config.steps + 1):
        trials = task.sample(config.batch_size, gen).to(dev)
        leaves = {k: v.requires_grad_(True) for k, v in params.items()}
        _, outputs = population.run(trials.inputs, params=leaves)
        loss = task.loss(outputs, trials) + l2 * l2_penalty(population, leaves)
        grads = torch.autograd.grad(loss.sum(), list(leaves.values()))
        params = {k: v.detach() for k, v in leaves.items()}

        finite = torch.isfinite(loss)
        sq_norm = torch.zeros(p_count, device=dev)
        for g in grads:
            sq_norm = sq_norm + g.pow(2).flatten(1).sum(1)
        finite &= torch.isfinite(sq_norm)
        newly = active & ~finite
        if newly.any():
            for i in newly.nonzero().flatten().tolist():
                status[i], steps_taken[i] = DIVERGED, step
                log.warning("member %d diverged at step %d (non-finite loss or gradient)", i, step)
            active &= finite

        scale = torch.clamp(config.clip / (sq_norm.sqrt() + 1e-12), max=1.0)
        step_lr = lr * config.lr_factor(step)
        bc1 = 1 - config.beta1**step
        bc2 = 1 - config.beta2**step
        for (k, w), g in zip(params.items(), grads, strict=True):
            on = shape(active, w)
            g = torch.where(on, g * shape(scale, g), torch.zeros_like(g))
            m1[k] = torch.where(on, config.beta1 * m1[k] + (1 - config.beta1) * g, m1[k])
            m2[k] = torch.where(on, config.beta2 * m2[k] + (1 - config.beta2) * g * g, m2[k])
            update = shape(step_lr, w) * (m1[k] / bc1) / ((m2[k] / bc2).sqrt() + config.eps)
            params[k] = torch.where(on, w - update, w)

        if step % config.eval_every == 0 or step == config.steps:
            population.params = params
            _, score = evaluate(population, eval_seed, config.eval_batch_size)
            done = active & task.passed(score)
            for i in done.nonzero().flatten().tolist():
                status[i], steps_taken[i] = TRAINED, step
            active &= ~done
            if progress is not None:
                progress(step, int(active.sum()), status.count(TRAINED))
            if not active.any():
                break

    population.params = params
    loss_eval, score_eval = evaluate(population, eval_seed, config.eval_batch_size)
    passed = task.passed(score_eval)
    return TrainResult(
        status=status,
        loss=[_finite_or_nan(v) for v in loss_eval.tolist()],
        score=[_finite_or_nan(v) for v in score_eval.tolist()],
        passed=[bool(v) and s != DIVERGED for v, s in zip(passed.tolist(), status, strict=True)],
        steps=steps_taken,
        seconds=time.perf_counter() - start,
        restarts=[0] * p_count,
    )


def _finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else float("nan")
