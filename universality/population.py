"""A population: one cell, stacked parameters [P, ...], a linear readout and a member table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .cells import Cell, Params
from .cells.fused import Workspace
from .tasks import Task

READOUT_WEIGHT = "readout.weight"  # [P, O, H]
READOUT_BIAS = "readout.bias"  # [P, O]


@dataclass(frozen=True)
class Member:
    """One network's row in the member table."""

    task: str
    arch: str
    activation: str
    hidden: int
    l2: float
    lr: float
    seed: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _check_members(cell: Cell, task: Task, hidden: int, members: Sequence[Member]) -> None:
    if not members:
        raise ValueError("a population needs at least one member")
    if hidden < 1:
        raise ValueError(f"hidden size must be a positive integer, got {hidden}")
    for m in members:
        if (m.task, m.arch, m.activation, m.hidden) != (task.name, cell.arch, cell.activation, hidden):
            raise ValueError(
                f"member {m} does not belong to a population of {cell.arch}/{cell.activation}, "
                f"hidden {hidden}, task {task.name}"
            )
        if not (m.lr > 0 and m.l2 >= 0):
            raise ValueError(f"member {m}: learning rate must be > 0 and l2 >= 0")


class Population:
    """P networks of one architecture and size, run in lockstep.

    ``params`` holds the cell's stacked parameters plus ``readout.weight [P, O, H]``
    and ``readout.bias [P, O]``; the readout reads the first H entries of the state.
    """

    def __init__(self, cell: Cell, task: Task, hidden_size: int, members: Sequence[Member], params: Params) -> None:
        _check_members(cell, task, hidden_size, members)
        self.cell = cell
        self.task = task
        self.hidden_size = hidden_size
        self.members = list(members)
        self.params = params
        for name, value in params.items():
            if value.shape[0] != len(self.members):
                raise ValueError(f"parameter {name} has {value.shape[0]} members, expected {len(self.members)}")

    @classmethod
    def create(
        cls,
        cell: Cell,
        task: Task,
        hidden_size: int,
        seeds: Sequence[int],
        l2: float | Sequence[float] = 0.0,
        lr: float | Sequence[float] = 3e-3,
        device: str | torch.device = "cpu",
    ) -> Population:
        """One member per seed (scalars broadcast; sequences give one value per member).

        A member's initial parameters depend only on its own seed.
        """
        n = len(seeds)
        l2s = [float(l2)] * n if isinstance(l2, float | int) else [float(v) for v in l2]
        lrs = [float(lr)] * n if isinstance(lr, float | int) else [float(v) for v in lr]
        if len(l2s) != n or len(lrs) != n:
            raise ValueError(f"l2 and lr must be scalars or have one value per seed ({n})")
        members = [
            Member(task.name, cell.arch, cell.activation, hidden_size, a, b, int(s))
            for s, a, b in zip(seeds, l2s, lrs, strict=True)
        ]
        _check_members(cell, task, hidden_size, members)
        per_member = [cls._init_member(cell, task, hidden_size, m.seed) for m in members]
        params = {k: torch.stack([p[k] for p in per_member]).to(device) for k in per_member[0]}
        return cls(cell, task, hidden_size, members, params)

    @staticmethod
    def _init_member(cell: Cell, task: Task, hidden: int, seed: int) -> Params:
        gen = torch.Generator().manual_seed(seed)
        params = cell.init_params(task.input_size, hidden, gen)
        params[READOUT_WEIGHT] = torch.randn(task.output_size, hidden, generator=gen) / hidden**0.5
        params[READOUT_BIAS] = torch.zeros(task.output_size)
        return params

    # ------------------------------------------------------------------ shape facts
    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        return f"Population({self.cell!r}, task={self.task.name}, H={self.hidden_size}, P={len(self)})"

    @property
    def state_size(self) -> int:
        return self.cell.state_size(self.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(iter(self.params.values())).device

    @property
    def cell_params(self) -> Params:
        """The cell's parameters (no readout)."""
        return {k: v for k, v in self.params.items() if not k.startswith("readout.")}

    # ------------------------------------------------------------------ dynamics
    def initial_state(self, batch_size: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """Zeros ``[P, B, S]``."""
        return torch.zeros(len(self), batch_size, self.state_size, device=self.device, dtype=dtype)

    def step(self, x: Tensor, state: Tensor, params: Params | None = None) -> Tensor:
        """F(state, x): ``x [P, B, I], state [P, B, S] -> [P, B, S]``."""
        return self.cell.step(self.cell_params if params is None else params, x, state)

    def readout(self, states: Tensor, params: Params | None = None) -> Tensor:
        """``states [P, ..., S] -> outputs [P, ..., O]`` from the first H state entries."""
        p = self.params if params is None else params
        h = states[..., : self.hidden_size]
        flat = h.reshape(len(self), -1, self.hidden_size)
        weight, bias = p[READOUT_WEIGHT], p[READOUT_BIAS].unsqueeze(1)
        if weight.shape[1] == 1:
            # A one-column bmm takes a different BLAS path for P = 1 than for P > 1, so a
            # member's output would depend on its shard-mates; this form does not.
            out = (flat * weight).sum(-1, keepdim=True) + bias
        else:
            out = torch.baddbmm(bias, flat, weight.transpose(1, 2))
        return out.reshape(*h.shape[:-1], out.shape[-1])

    def run(self, inputs: Tensor, state: Tensor | None = None, params: Params | None = None) -> tuple[Tensor, Tensor]:
        """Run on ``inputs [B, T, I]`` (shared by all members) or ``[P, B, T, I]``.

        Returns ``states [P, B, T, S]`` and ``outputs [P, B, T, O]``. ``state`` is the
        initial state ``[P, B, S]`` (default zeros); ``params`` overrides
        ``self.params``.
        """
        states, outputs = self.run_time_major(self.as_time_major(inputs), state, params)
        return states.transpose(1, 2).contiguous(), outputs.transpose(1, 2).contiguous()

    def run_time_major(
        self, inputs: Tensor, state: Tensor | None = None, params: Params | None = None,
        workspace: Workspace | None = None,
    ) -> tuple[Tensor, Tensor]:
        """:meth:`run` in the cells' layout: ``inputs [P, T, B, I]`` -> ``states [P, T, B, S]``,
        ``outputs [P, T, B, O]`` (what training differentiates: no transposes on the way).
        ``workspace`` lets successive calls reuse buffers (see :class:`Workspace`)."""
        p = self.params if params is None else params
        cell_p = {k: v for k, v in p.items() if not k.startswith("readout.")}
        h = self.initial_state(inputs.shape[2], inputs.dtype) if state is None else state
        states = self.cell.scan(cell_p, inputs, h, workspace)
        return states, self.readout(states, p)

    def as_time_major(self, inputs: Tensor) -> Tensor:
        """``[B, T, I]`` or ``[P, B, T, I]`` -> ``[P, T, B, I]`` on the population's device and dtype."""
        if inputs.dim() == 3:
            inputs = inputs.unsqueeze(0).expand(len(self), *inputs.shape)
        if inputs.dim() != 4 or inputs.shape[0] != len(self) or inputs.shape[-1] != self.task.input_size:
            raise ValueError(
                f"inputs must be [B, T, I] or [P, B, T, I] with P={len(self)}, I={self.task.input_size}; "
                f"got {tuple(inputs.shape)}"
            )
        dtype = next(iter(self.cell_params.values())).dtype
        return inputs.to(device=self.device, dtype=dtype).transpose(1, 2)

    # ------------------------------------------------------------------ bookkeeping
    def select_view(self, members: slice) -> Population:
        """The members in ``members`` (a slice), sharing this population's parameter storage:
        in-place updates of one are updates of the other."""
        params = {k: v[members] for k, v in self.params.items()}
        return Population(self.cell, self.task, self.hidden_size, self.members[members], params)

    def select(self, indices: Sequence[int]) -> Population:
        """The sub-population of ``indices`` (a copy)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long, device=self.device)
        params = {k: v.index_select(0, idx).clone() for k, v in self.params.items()}
        return Population(self.cell, self.task, self.hidden_size, [self.members[i] for i in indices], params)

    @classmethod
    def concat(cls, populations: Sequence[Population]) -> Population:
        """Members of several populations of the same cell, task and size, in order."""
        first = populations[0]
        def key(p: Population) -> tuple[object, ...]:
            return type(p.cell), p.cell.arch, p.cell.activation, p.task.config(), p.hidden_size

        if any(key(p) != key(first) for p in populations):
            raise ValueError("concat: populations must share cell, task and hidden size")
        params = {k: torch.cat([p.params[k] for p in populations]) for k in first.params}
        return cls(first.cell, first.task, first.hidden_size, [m for p in populations for m in p.members], params)

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Population:
        """A copy on ``device`` (optionally cast to ``dtype``)."""
        params = {k: v.to(device=device, dtype=dtype or v.dtype) for k, v in self.params.items()}
        return Population(self.cell, self.task, self.hidden_size, self.members, params)

    def with_members(self, members: Sequence[Member]) -> Population:
        """The same parameters with an updated member table."""
        return Population(self.cell, self.task, self.hidden_size, members, self.params)

