"""Adapter: any single-network ``torch.nn.Module`` cell as a population cell.

The protocol for a user cell (document of record; README repeats it):

* ``factory(input_size, hidden_size) -> nn.Module`` (a class or a function);
* ``module(x [B, I], state [B, S]) -> new state [B, S]``;
* optional integer attribute ``state_size`` (default: ``hidden_size``); the
  readout reads the first ``hidden_size`` entries of the state.

Member parameters are stacked with ``torch.func.stack_module_state`` and the step
is ``vmap(functional_call(...))`` over the population axis, so every analysis
(training, fixed points, Jacobians) works unchanged.

A sequence (:meth:`ModuleCell.scan`, what training and running use) enters ``vmap`` and
``functional_call`` once for all its steps, not once per step: the same operations on the
same tensors, so the same numbers bit for bit as stepping :meth:`ModuleCell.recur`, without
the per-step cost of swapping the members' parameters into the module and wrapping every
input (docs/performance.md, "User cells").
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from . import fused
from .base import Cell, Params


class _Sequence(nn.Module):
    """The user's module stepped over a sequence: ``drive [T, B, D], state [B, S] ->
    states [T, B, S]`` (parameters are the user module's, under the prefix ``cell.``)."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, drive: Tensor, state: Tensor) -> Tensor:
        states = []
        for d in drive.unbind(0):
            state = self.cell(d, state)
            states.append(state)
        return torch.stack(states)


class ModuleCell(Cell):
    """Wraps ``factory(input_size, hidden_size) -> nn.Module`` (see module docstring)."""

    def __init__(self, factory: Callable[[int, int], nn.Module], arch: str | None = None) -> None:
        self.factory = factory
        self.arch = arch or str(getattr(factory, "__name__", "custom"))
        self.activation = "custom"
        self._template: nn.Module | None = None
        self._sizes: tuple[int, int] | None = None
        self._sequence: _Sequence | None = None  # wraps _template (see scan)

    def __repr__(self) -> str:
        return f"ModuleCell({self.arch})"

    def _build(self, input_size: int, hidden_size: int) -> nn.Module:
        module = self.factory(input_size, hidden_size)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"{self.arch}: factory(input_size, hidden_size) must return a torch.nn.Module, "
                f"got {type(module).__name__}"
            )
        if self._template is None or self._sizes != (input_size, hidden_size):
            self._template = module
            self._sizes = (input_size, hidden_size)
            self._sequence = None
        return module

    def state_size(self, hidden_size: int) -> int:
        template = self._template
        if template is None:
            template = self._build(1, hidden_size)
        size = getattr(template, "state_size", hidden_size)
        if not isinstance(size, int) or size < hidden_size:
            raise ValueError(
                f"{self.arch}.state_size must be an int >= hidden_size ({hidden_size}), got {size!r}"
            )
        return size

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._build(input_size, hidden_size)
        return {name: p.detach().to(torch.float32).clone() for name, p in module.named_parameters()}

    def drive(self, params: Params, x: Tensor) -> Tensor:
        return x

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        if self._template is None:
            raise RuntimeError(f"{self.arch}: call init_params before stepping the cell")
        template = self._template

        def one(p: Params, x: Tensor, h: Tensor) -> Tensor:
            return functional_call(template, p, (x, h))

        out: Tensor = vmap(one)(params, drive, state)
        return out

    def scan(self, params: Params, x: Tensor, state: Tensor, workspace: fused.Workspace | None = None) -> Tensor:
        """:meth:`Cell.scan_stepwise`'s result, bit for bit, with one ``vmap`` of one
        ``functional_call`` around the whole sequence instead of one per step."""
        if self._template is None:
            raise RuntimeError(f"{self.arch}: call init_params before stepping the cell")
        if self._sequence is None or self._sequence.cell is not self._template:
            self._sequence = _Sequence(self._template)
        sequence = self._sequence
        prefixed = {f"cell.{name}": value for name, value in params.items()}

        def one(p: Params, xs: Tensor, h: Tensor) -> Tensor:
            return functional_call(sequence, p, (xs, h))

        out: Tensor = vmap(one)(prefixed, self.drive(params, x), state)
        return out
