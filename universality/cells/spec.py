"""Cell specs: the string a catalog records to rebuild a cell."""

from __future__ import annotations

import importlib
from typing import Any

from .base import Cell
from .module import ModuleCell


def cell_spec(cell: Cell) -> str:
    """A string that rebuilds ``cell``: ``builtin:ARCH:ACTIVATION`` or ``module:MOD:ATTR``."""
    if isinstance(cell, ModuleCell):
        factory = cell.factory
        return f"module:{factory.__module__}:{factory.__qualname__}"
    return f"builtin:{cell.arch}:{cell.activation}"


def import_attr(module_name: str, attr: str) -> Any:
    """``module_name``'s attribute ``attr`` (dotted: ``Outer.Inner``), the module imported."""
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def cell_from_spec(spec: str) -> Cell:
    """The cell of :func:`cell_spec`'s ``spec``; ValueError for an unknown kind."""
    from . import make_cell

    kind, _, rest = spec.partition(":")
    if kind == "builtin":
        arch, _, activation = rest.partition(":")
        return make_cell(arch, activation)
    if kind == "module":
        module_name, _, attr = rest.partition(":")
        return ModuleCell(import_attr(module_name, attr))
    raise ValueError(f"unknown cell spec {spec!r}")
