"""Population-batched RNN cells: one step function per architecture."""

from __future__ import annotations

from .activations import ACTIVATIONS as ACTIVATIONS
from .activations import Activation as Activation
from .base import Cell as Cell
from .base import Params as Params
from .gru import GRU as GRU
from .lstm import LSTM as LSTM
from .module import ModuleCell as ModuleCell
from .spec import cell_from_spec as cell_from_spec
from .spec import cell_spec as cell_spec
from .ugrnn import UGRNN as UGRNN
from .vanilla import Vanilla as Vanilla

CELLS: dict[str, type[Cell]] = {c.arch: c for c in (Vanilla, GRU, LSTM, UGRNN)}


def make_cell(arch: str, activation: str = "tanh") -> Cell:
    """The built-in cell ``arch`` (vanilla, gru, lstm, ugrnn) with ``activation``."""
    try:
        cls = CELLS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(CELLS)}") from None
    return cls(activation)  # type: ignore[call-arg]
