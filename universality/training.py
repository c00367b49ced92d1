"""Training a whole population at once.

Every member has its own Adam state, learning rate, L2 coefficient, gradient-norm
clip and early stop. Member losses are summed before one backward pass; since members
share no parameters, each member's gradient is exactly the gradient of its own loss.

Only members still training cost compute: the optimiser works on a compacted *working
set* (the active members' parameters and Adam state gathered into dense tensors),
rebuilt whenever the active set changes. A member's arithmetic never depends on its
shard-mates, so its trajectory is the same bit for bit whether they still train or not.

**The stop rule** (one training standard for every architecture): a member stops as
``trained`` at the first evaluation, at or after ``min_steps``, where its score meets the
task's target (``Task.passed``) on the fixed held-out batch *and* on ``confirm`` fresh
held-out batches drawn for that evaluation. The target is the task's pass threshold, which
each task sets where only the intended computation meets it (docs/methods.md, "Training");
the minimum keeps fast learners from stopping at the first lucky crossing, the fresh batches
keep a member from stopping on the fixed batch's luck.

Two rules spend steps where they help (docs/methods.md, "Training"):

* **restart after divergence**: a member whose loss or gradient (or held-out loss) turns
  non-finite goes back to its last checkpoint (taken at every evaluation where its
  held-out loss was finite) with half its learning rate, at most ``max_restarts`` times;
  after that it is frozen at its last finite parameters and marked ``diverged``. Nothing
  of it reaches the other members;
* **extension while improving**: at the step limit, a member that has not passed but
  whose held-out loss fell by at least ``min_improvement`` (relative) over the last
  ``improve_window`` evaluations keeps training at the schedule's final learning rate,
  for at most ``extend_steps`` more steps, as long as that stays true.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor

from .cells import Params
from .cells.fused import Workspace
from .population import Population

log = logging.getLogger(__name__)

TRAINED, FAILED, DIVERGED = "trained", "failed", "diverged"

#: Seed offsets (added to ``TrainConfig.seed``) of the fixed held-out batch and of the fresh
#: confirmation batches (``CONFIRM_SEED + confirm * step + j`` for the j-th at ``step``).
HELD_OUT_SEED, CONFIRM_SEED = 1_000_003, 2_000_003

#: Members per forward/backward pass are chosen so that one step's slice of a per-gate
#: buffer (members x batch x state) holds about this many numbers (512 KiB in float32):
#: beyond it the step's elementwise work falls out of cache (docs/performance.md).
CHUNK_ELEMENTS = 2**17
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
    max_restarts: int = 3  # restarts from the last checkpoint at half the lr after a non-finite loss
    extend_steps: int = 0  # extra steps at most for members still improving at `steps`
    improve_window: int = 5  # evaluations over which "still improving" is judged
    min_improvement: float = 0.1  # relative drop of held-out loss over the window that counts
    min_steps: int = 0  # no member stops as trained before this step
    confirm: int = 0  # fresh held-out batches that must also meet the target before a member stops

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "eval_batch_size", "improve_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("max_restarts", "extend_steps", "min_steps", "confirm"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if not 0 < self.min_lr_fraction <= 1:
            raise ValueError(f"min_lr_fraction must lie in (0, 1], got {self.min_lr_fraction}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError("Adam betas must lie in [0, 1)")
        if not 0 < self.min_improvement < 1:
            raise ValueError(f"min_improvement must lie in (0, 1), got {self.min_improvement}")
        if self.min_steps > self.steps:
            raise ValueError(f"min_steps ({self.min_steps}) must not exceed steps ({self.steps})")

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lr_factor(self, step: int) -> float:
        """Multiplier of every member's learning rate at ``step`` (1-based; steps past
        ``steps``, in an extension, keep the final value)."""
        if self.lr_schedule == "constant":
            return 1.0
        step = min(step, self.steps)
        cos = 0.5 * (1 + math.cos(math.pi * (step - 1) / max(self.steps - 1, 1)))
        return self.min_lr_fraction + (1 - self.min_lr_fraction) * cos


@dataclass
class TrainResult:
    """Per-member outcome: ``status`` (trained/failed/diverged), held-out ``loss`` and
    ``score``, ``passed``, the number of ``steps`` taken, and ``restarts`` after divergence."""

    status: list[str]
    loss: list[float]
    score: list[float]
    passed: list[bool]
    steps: list[int]
    seconds: float
    restarts: list[int] = field(default_factory=list)


Progress = Callable[[int, int, int], None]  # (step, n_active, n_trained)


def l2_penalty(params: Params) -> Tensor:
    """Sum of squared weights (matrices, not biases) per member: ``[P]``."""
    weights = [v for k, v in params.items() if "weight" in k]
    total = torch.zeros(weights[0].shape[0], dtype=weights[0].dtype, device=weights[0].device)
    for w in weights:
        total = total + w.pow(2).flatten(1).sum(1)
    return total


def evaluate(population: Population, trials_seed: int, batch_size: int) -> tuple[Tensor, Tensor]:
    """Held-out ``(loss [P], score [P])`` on a fixed seeded batch."""
    trials = population.task.sample(batch_size, torch.Generator().manual_seed(trials_seed))
    with torch.no_grad():
        _, outputs = population.run(trials.inputs)
        trials_dev = trials.to(population.device)
        return population.task.loss(outputs, trials_dev), population.task.score(outputs, trials_dev)


@dataclass
class _State:
    """Optimisation state of members, ``[N, ...]`` per tensor: parameters, Adam moments,
    Adam step counts ``t [N]`` and learning rates ``lr [N]``."""

    params: Params
    m1: Params
    m2: Params
    t: Tensor
    lr: Tensor

    def gather(self, index: Tensor) -> _State:
        """The rows ``index`` as a new, dense state."""
        return _State(
            {k: v.index_select(0, index) for k, v in self.params.items()},
            {k: v.index_select(0, index) for k, v in self.m1.items()},
            {k: v.index_select(0, index) for k, v in self.m2.items()},
            self.t.index_select(0, index),
            self.lr.index_select(0, index),
        )

    def scatter(self, index: Tensor, rows: _State) -> None:
        """Write ``rows`` (one per entry of ``index``) into this state, in place."""
        for mine, theirs in ((self.params, rows.params), (self.m1, rows.m1), (self.m2, rows.m2)):
            for k, v in mine.items():
                v.index_copy_(0, index, theirs[k])
        self.t.index_copy_(0, index, rows.t)
        self.lr.index_copy_(0, index, rows.lr)

    def clone(self) -> _State:
        return self.gather(torch.arange(len(self.t), device=self.t.device))


def _shaped(per_member: Tensor, like: Tensor) -> Tensor:
    return per_member.view(-1, *([1] * (like.dim() - 1)))


class _Trainer:
    """One call of :func:`train`: the master state of all P members, the working set of
    the active ones, checkpoints, and each member's bookkeeping."""

    def __init__(self, population: Population, config: TrainConfig) -> None:
        self.pop, self.config = population, config
        p_count, dev = len(population), population.device
        params = {k: v.detach().clone() for k, v in population.params.items()}
        self.master = _State(
            params,
            {k: torch.zeros_like(v) for k, v in params.items()},
            {k: torch.zeros_like(v) for k, v in params.items()},
            torch.zeros(p_count, dtype=torch.float64, device=dev),  # bookkeeping in float64: the bias
            torch.tensor([m.lr for m in population.members], dtype=torch.float64, device=dev),  # corrections
        )
        self.checkpoint = self.master.clone()
        dtype = next(iter(params.values())).dtype
        self.l2 = torch.tensor([m.l2 for m in population.members], dtype=dtype, device=dev)
        self.status = [FAILED] * p_count
        self.steps = [config.steps] * p_count
        self.restarts = [0] * p_count
        self.history: list[list[float]] = [[] for _ in range(p_count)]  # held-out loss per evaluation
        self.active = list(range(p_count))
        self.workspaces: dict[int, Workspace] = {}  # one per chunk size
        self._gather()

    # ------------------------------------------------------------------ working set
    def _gather(self) -> None:
        self.index = torch.tensor(self.active, dtype=torch.long, device=self.pop.device)
        self.work = self.master.gather(self.index)
        if not self.active:
            return
        self.work_pop = Population(
            self.pop.cell, self.pop.task, self.pop.hidden_size, [self.pop.members[i] for i in self.active],
            self.work.params,
        )
        self.work_l2 = self.l2.index_select(0, self.index)
        n, size = len(self.active), self._chunk_size()
        bounds = [(lo, min(lo + size, n)) for lo in range(0, n, size)]
        self.chunks = [(lo, hi, self.work_pop.select_view(slice(lo, hi))) for lo, hi in bounds]

    def _chunk_size(self) -> int:
        """Members per forward/backward pass: as many as keep one step's slice of a
        per-gate buffer near ``CHUNK_ELEMENTS`` numbers (cache-sized; see docs/performance.md)."""
        per_member = self.config.batch_size * self.pop.state_size
        return max(1, CHUNK_ELEMENTS // per_member)

    def _scatter(self) -> None:
        self.master.scatter(self.index, self.work)

    # ------------------------------------------------------------------ one step
    def step(self, step: int, trials_gen: torch.Generator) -> None:
        """One optimisation step of every active member on a fresh batch."""
        cfg = self.config
        trials = self.pop.task.sample(cfg.batch_size, trials_gen).to(self.pop.device)
        inputs = self.work_pop.as_time_major(trials.inputs)
        grads = {k: torch.empty_like(v) for k, v in self.work.params.items()}
        loss = torch.empty(len(self.active), dtype=self.l2.dtype, device=self.l2.device)
        for lo, hi, chunk in self.chunks:
            leaves = {k: v.detach().requires_grad_(True) for k, v in chunk.params.items()}
            ws = self.workspaces.setdefault(hi - lo, Workspace())
            _, outputs = chunk.run_time_major(inputs[lo:hi], params=leaves, workspace=ws)
            part = self.pop.task.loss(outputs.transpose(1, 2), trials) + self.work_l2[lo:hi] * l2_penalty(leaves)
            for k, g in zip(leaves, torch.autograd.grad(part.sum(), list(leaves.values())), strict=True):
                grads[k][lo:hi] = g
            loss[lo:hi] = part.detach()
        sq_norm = sum((g.pow(2).flatten(1).sum(1) for g in grads.values()), torch.zeros_like(loss))
        finite = torch.isfinite(loss) & torch.isfinite(sq_norm)
        if bool(finite.all()):
            self._adam(grads, sq_norm, step)
            return
        # Rare path: keep the non-finite members' pre-step state, update the others.
        bad = (~finite).nonzero().flatten()
        before = self.work.gather(bad)
        grads = {k: torch.where(_shaped(finite, g), g, 0) for k, g in grads.items()}
        self._adam(grads, torch.where(finite, sq_norm, 0), step)
        self.work.scatter(bad, before)
        self._scatter()
        self._on_non_finite([self.active[i] for i in bad.tolist()], step)
        self._gather()

    def _adam(self, grads: Params, sq_norm: Tensor, step: int) -> None:
        """Clip each member's gradient to norm ``clip`` and take one Adam step in place
        (torch.optim.Adam's arithmetic, per-member learning rate and step count)."""
        cfg, w = self.config, self.work
        w.t.add_(1)
        scale = torch.clamp(cfg.clip / (sq_norm.sqrt() + 1e-6), max=1.0)  # clip_grad_norm_'s rule
        step_size = w.lr * cfg.lr_factor(step) / (1 - cfg.beta1**w.t)
        root_bc2 = (1 - cfg.beta2**w.t).sqrt()
        step_size, root_bc2 = step_size.to(sq_norm.dtype), root_bc2.to(sq_norm.dtype)
        for k, p in w.params.items():
            g = grads[k].mul_(_shaped(scale, p))
            m1, m2 = w.m1[k], w.m2[k]
            m1.mul_(cfg.beta1).add_(g, alpha=1 - cfg.beta1)
            m2.mul_(cfg.beta2).addcmul_(g, g, value=1 - cfg.beta2)
            denom = (m2.sqrt() / _shaped(root_bc2, p)).add_(cfg.eps)
            p.sub_(m1 / denom * _shaped(step_size, p))

    # ------------------------------------------------------------------ events (master state)
    def _on_non_finite(self, members: list[int], step: int) -> None:
        """Restart ``members`` from their checkpoints at half the lr, or mark them diverged
        (their master rows hold their last finite parameters)."""
        for i in members:
            if self.restarts[i] < self.config.max_restarts:
                self.restarts[i] += 1
                row = torch.tensor([i], device=self.pop.device)
                restored = self.checkpoint.gather(row)
                restored.lr = self.master.lr[row] * 0.5
                self.master.scatter(row, restored)
                log.warning(
                    "member %d: non-finite loss or gradient at step %d; restart %d from its checkpoint at lr %.3g",
                    i, step, self.restarts[i], float(restored.lr),
                )
            else:
                self.status[i], self.steps[i] = DIVERGED, step
                self.active.remove(i)
                log.warning("member %d diverged at step %d (non-finite after %d restarts)", i, step, self.restarts[i])

    def evaluate_and_update(self, step: int) -> None:
        """Held-out evaluation of the working set: passed members stop, non-finite ones
        restart or stop, the rest are checkpointed; at or past the step limit, members
        no longer improving stop as failed."""
        cfg = self.config
        loss, score = evaluate(self.work_pop, cfg.seed + HELD_OUT_SEED, cfg.eval_batch_size)
        self._scatter()
        meets = self.pop.task.passed(score) & (step >= cfg.min_steps)
        for j in range(cfg.confirm if bool(meets.any()) else 0):
            _, fresh = evaluate(self.work_pop, cfg.seed + CONFIRM_SEED + cfg.confirm * step + j, cfg.eval_batch_size)
            meets &= self.pop.task.passed(fresh)
        passed = meets.tolist()
        non_finite, keep = [], []
        for row, (i, value, ok) in enumerate(zip(self.active, loss.tolist(), passed, strict=True)):
            if not math.isfinite(value):
                non_finite.append(i)
                continue
            self.history[i].append(value)
            if ok:
                self.status[i], self.steps[i] = TRAINED, step
            elif step >= cfg.steps and not (step < cfg.steps + cfg.extend_steps and self._improving(i)):
                self.status[i], self.steps[i] = FAILED, step
            else:
                keep.append(row)
        rows = torch.tensor(keep, dtype=torch.long, device=self.pop.device)
        self.checkpoint.scatter(self.index.index_select(0, rows), self.work.gather(rows))
        self.active = sorted([self.active[r] for r in keep] + non_finite)
        self._on_non_finite(non_finite, step)
        self._gather()

    def _improving(self, i: int) -> bool:
        h, w = self.history[i], self.config.improve_window
        return len(h) > w and h[-1] < (1 - self.config.min_improvement) * h[-1 - w]


def train(population: Population, config: TrainConfig = TrainConfig(), progress: Progress | None = None) -> TrainResult:
    """Train ``population`` in place; return each member's outcome."""
    start = time.perf_counter()
    trainer = _Trainer(population, config)
    gen = torch.Generator().manual_seed(config.seed)
    last = config.steps + config.extend_steps
    for step in range(1, last + 1):
        trainer.step(step, gen)
        if step % config.eval_every == 0 or step == config.steps or step == last:
            trainer.evaluate_and_update(step)
            if progress is not None:
                progress(step, len(trainer.active), trainer.status.count(TRAINED))
        if not trainer.active:
            break
    for i in trainer.active:
        trainer.steps[i] = step
    population.params = trainer.master.params
    loss_eval, score_eval = evaluate(population, config.seed + HELD_OUT_SEED, config.eval_batch_size)
    passed = population.task.passed(score_eval)
    status = trainer.status
    return TrainResult(
        status=status,
        loss=[_finite_or_nan(v) for v in loss_eval.tolist()],
        score=[_finite_or_nan(v) for v in score_eval.tolist()],
        passed=[bool(v) and s != DIVERGED for v, s in zip(passed.tolist(), status, strict=True)],
        steps=trainer.steps,
        seconds=time.perf_counter() - start,
        restarts=trainer.restarts,
    )


def _finite_or_nan(value: float) -> float:
    return value if math.isfinite(value) else float("nan")
