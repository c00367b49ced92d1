"""The scaffold protocol: one signature per member per task, and distances between them.

A task's scaffold module provides a :class:`ScaffoldSpec`:

* ``compute(population, fixed_points, config) -> list[Scaffold]`` (one per member, in
  member order), from the population (to simulate, read out, linearise) and the
  :class:`~universality.dynamics.FixedPoints` found at the task's ``conditions()``;
* ``distance(U [N, D], V [M, D]) -> [N, M]``: the topology distance between members'
  ``vector``s, vectorised over both sets.

A :class:`Scaffold`'s ``vector`` must not depend on the coordinates of the state space:
it is built from counts, labels defined through the readout, eigenvalues and
projections normalised to be invariant to invertible changes of coordinates, so
permuting hidden units or conjugating the dynamics leaves it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Scaffold:
    """One member's computational scaffold on one task.

    ``canonical``: the task's universal structure is present (flip-flop: the labelled
    hypercube; sine: an unstable oscillatory point and a limit cycle per input whose
    linearised frequency tracks the target; cdi: a line attractor per context).
    ``numbers``: the task's key numbers (JSON-able scalars). ``vector [D]``: the
    coordinate-free descriptor compared by the task's topology distance.
    """

    task: str
    canonical: bool
    numbers: dict[str, Any]
    vector: np.ndarray

    def as_dict(self) -> dict[str, Any]:
        """``{"canonical": ..., **numbers}`` (JSON-able)."""
        return {"canonical": bool(self.canonical), **self.numbers}


@dataclass(frozen=True)
class ScaffoldSpec:
    """How one task's scaffold is computed and compared."""

    task: str
    compute: Callable[..., list[Scaffold]]
    distance: Callable[[np.ndarray, np.ndarray], np.ndarray]


def distance_matrix(
    spec: ScaffoldSpec | Callable[[np.ndarray, np.ndarray], np.ndarray],
    items: Sequence[Scaffold] | np.ndarray,
) -> np.ndarray:
    """``[N, N]`` topology distances: ``spec``'s distance (or any vectorised distance
    ``(U [N, D], V [M, D]) -> [N, M]``) between scaffolds or vectors ``[N, D]``,
    symmetrised with a zero diagonal."""
    fn = spec.distance if isinstance(spec, ScaffoldSpec) else spec
    vectors = np.stack([s.vector for s in items]) if not isinstance(items, np.ndarray) else items
    out = np.asarray(fn(vectors, vectors), dtype=np.float64)
    out = (out + out.T) / 2
    np.fill_diagonal(out, 0.0)
    return out
