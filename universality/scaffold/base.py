"""The scaffold protocol: what each task's scaffold module owns, and the registry's contract.

A task's scaffold module provides one :class:`ScaffoldSpec` (registered in
``universality.scaffold.SCAFFOLDS``), which owns:

* ``compute(population, fixed_points, config=None) -> list[Scaffold]`` (one per member, in
  member order) from the population (to simulate, read out, linearise) and the
  :class:`~universality.dynamics.FixedPoints` found at the task's ``conditions()``;
* a **topology signature** (``Scaffold.topology [D]``) with *discrete* content only:
  counts of fixed points per input or context, their stability indices, the memory graph,
  flags (complex-unstable, limit cycle present, the cycle winds around the point, line
  present and one-dimensional, selection sign). ``distance(U [N, D], V [M, D]) -> [N, M]``
  compares them (the topology distance of the universality claim);
* a **dynamics signature** (``Scaffold.dynamics [D']``) with the continuous linearisation
  numbers (eigenvalue moduli and angles, frequency ratios, selection gains, response
  modes), compared by ``dynamics_distance`` (the individuality of linear dynamics);
* its **per-network criteria** (``criteria``: name, statement with thresholds, reason);
  each :class:`Scaffold` says which it meets (``Scaffold.criteria``), and ``canonical`` is
  the conjunction of the criteria marked ``headline``;
* its task-specific **claims** beyond the per-criterion rates (``extra_claims``, e.g. the
  cdi modes rank test), and its **figures** (``figures``);
* whether it reads slow points (``slow_points``: the analysis then keeps them in the
  stored fixed points, e.g. the flip-flop's slow-point memories).

Both signatures must not depend on the coordinates of the state space: they are built from
counts, labels defined through the readout, eigenvalues and projections normalised to be
invariant to invertible changes of coordinates, so permuting hidden units or conjugating
the dynamics leaves them unchanged. Claims, report and ``check`` loop over the registry:
adding a task is one module plus its registry entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

Distance = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Criterion:
    """One per-network criterion of a task's scaffold.

    ``name``: key in :attr:`Scaffold.criteria`; ``statement``: what a network must show,
    thresholds included; ``reason``: why the measurement is faithful to the paper and why
    these thresholds (written before looking at the numbers they judge); ``headline``: part
    of ``canonical`` (the task's scaffold claim); other criteria are reported beside it.
    """

    name: str
    statement: str
    reason: str
    headline: bool = True


@dataclass(frozen=True)
class Scaffold:
    """One member's computational scaffold on one task.

    ``criteria``: per-network criterion name -> met (see the spec's ``criteria``);
    ``canonical``: every headline criterion met. ``numbers``: the task's key numbers
    (JSON-able). ``topology [D]``: the discrete signature; ``dynamics [D']``: the continuous
    linearisation signature (both coordinate-free, NaN-free).
    """

    task: str
    canonical: bool
    criteria: dict[str, bool]
    numbers: dict[str, Any]
    topology: np.ndarray
    dynamics: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        """``{"canonical": ..., "criteria": {...}, **numbers}`` (JSON-able)."""
        return {"canonical": bool(self.canonical), "criteria": {k: bool(v) for k, v in self.criteria.items()},
                **self.numbers}


@dataclass(frozen=True)
class FigureContext:
    """What a task's ``figures`` hook may read: the passed members' rows (``MemberRow``:
    ``member``, ``shard``, ``idx``, ``arch``, ``activation``, ``hidden``), their scaffold
    numbers by member id (``Scaffold.as_dict()``), loaders by shard name, and the folder
    to draw into. The hook returns the report's Markdown lines (image links, tables)."""

    passed: Sequence[Any]
    scaffolds: Mapping[int, dict[str, Any]]
    fixed_points: Callable[[str], Any]  # shard -> FixedPoints
    states: Callable[[str], Any]  # shard -> probe states [P, B, T, S]
    task: Callable[[str], Any]  # shard -> the shard's Task
    folder: Path


def l1_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L1 (cityblock) distance between signature rows: ``u [N, D], v [M, D] -> [N, M]``."""
    u, v = np.atleast_2d(np.asarray(u, dtype=np.float64)), np.atleast_2d(np.asarray(v, dtype=np.float64))
    if u.shape[1] != v.shape[1]:
        raise ValueError(f"signatures must share a length; got {u.shape[1]} and {v.shape[1]}")
    return cdist(u, v, "cityblock")


@dataclass(frozen=True)
class ScaffoldSpec:
    """How one task's scaffold is computed, compared, judged and drawn (module docstring)."""

    task: str
    compute: Callable[..., list[Scaffold]]
    distance: Distance
    criteria: tuple[Criterion, ...]
    dynamics_distance: Distance = l1_distance
    extra_claims: Callable[[Sequence[Any], Mapping[int, dict[str, Any]]], list[Any]] | None = None
    figures: Callable[[FigureContext], list[str]] | None = None
    claim: str = field(default="")
    slow_points: bool = False

    def __post_init__(self) -> None:
        if not any(c.headline for c in self.criteria):
            raise ValueError(f"scaffold {self.task!r}: at least one headline criterion is needed")
        if not self.claim:
            object.__setattr__(self, "claim", f"{self.task}_scaffold")

    def judge(self, met: Mapping[str, bool]) -> tuple[bool, dict[str, bool]]:
        """``(canonical, criteria)`` from a member's criterion -> met mapping, which must
        name every criterion of the spec."""
        missing = {c.name for c in self.criteria} - set(met)
        if missing:
            raise ValueError(f"scaffold {self.task!r}: criteria {sorted(missing)} not evaluated")
        criteria = {c.name: bool(met[c.name]) for c in self.criteria}
        return all(criteria[c.name] for c in self.criteria if c.headline), criteria


def distance_matrix(fn: ScaffoldSpec | Distance, items: Sequence[Scaffold] | np.ndarray,
                    signature: str = "topology") -> np.ndarray:
    """``[N, N]`` distances between scaffolds' ``signature`` (``topology`` with the spec's
    ``distance``, ``dynamics`` with its ``dynamics_distance``) or between rows ``[N, D]``
    with any vectorised distance ``(U [N, D], V [M, D]) -> [N, M]``; symmetrised with a
    zero diagonal."""
    if isinstance(fn, ScaffoldSpec):
        fn = fn.distance if signature == "topology" else fn.dynamics_distance
    rows = items if isinstance(items, np.ndarray) else np.stack([getattr(s, signature) for s in items])
    out = np.asarray(fn(rows, rows), dtype=np.float64)
    out = (out + out.T) / 2
    np.fill_diagonal(out, 0.0)
    return out
