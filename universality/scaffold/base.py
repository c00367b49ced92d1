"""The scaffold strategy: what each task's scaffold module owns, and the registry's contract.

A task's scaffold module subclasses the abstract :class:`ScaffoldSpec` once (its instance
registered in ``universality.scaffold.SCAFFOLDS``), which owns:

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
* its **typed numbers** (``numbers``: a frozen dataclass of the key numbers that claims and
  figures read); :meth:`ScaffoldSpec.read` turns a member's stored numbers into a
  :class:`StoredScaffold` and refuses numbers whose criteria or fields are not the spec's;
* whether it reads slow points (``slow_points``: the analysis then keeps them in the
  stored fixed points, e.g. the flip-flop's slow-point memories);
* **what scaffold a network has, in words** (:meth:`ScaffoldSpec.classify`: a kind label
  and a phrase from a member's typed numbers; the ``universal_kind`` is exactly the
  canonical members, the other kinds say why a member is not canonical) and
  :meth:`ScaffoldSpec.describe`, the :class:`Outcome` of a group (``universality check``).

It writes no report: a task's figures live in ``universality.report.figures`` and its own
claims beyond the rates in ``universality.claims.rules``.

Both signatures must not depend on the coordinates of the state space: they are built from
counts, labels defined through the readout, eigenvalues and projections normalised to be
invariant to invertible changes of coordinates, so permuting hidden units or conjugating
the dynamics leaves them unchanged. Analysis, claims, report and ``check`` loop over the
registry.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

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


def l1_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L1 (cityblock) distance between signature rows: ``u [N, D], v [M, D] -> [N, M]``."""
    u, v = np.atleast_2d(np.asarray(u, dtype=np.float64)), np.atleast_2d(np.asarray(v, dtype=np.float64))
    if u.shape[1] != v.shape[1]:
        raise ValueError(f"signatures must share a length; got {u.shape[1]} and {v.shape[1]}")
    return cdist(u, v, "cityblock")


@dataclass(frozen=True)
class StoredScaffold:
    """One member's scaffold as stored, typed: ``canonical``, ``criteria`` (every criterion
    of its task's spec -> met; empty for a diverged member, which has no scaffold) and
    ``numbers`` (the spec's ``numbers`` dataclass; None when diverged)."""

    canonical: bool
    criteria: Mapping[str, bool]
    numbers: Any
    diverged: bool = False

    def met(self, criterion: str) -> bool:
        """Whether the member meets ``criterion`` (False for a diverged member); a name its
        spec does not define raises ``KeyError``."""
        if self.diverged:
            return False
        return self.criteria[criterion]


@dataclass(frozen=True)
class Outcome:
    """What a group of networks' scaffold is: the most common ``kind`` (ties: the universal
    kind first, then alphabetical), whether it is the task's ``universal`` (canonical)
    scaffold, ``count`` of ``n`` networks of that kind, every kind -> count (``kinds``) and
    one sentence ``reason`` (the kind's phrase with the count, e.g. "memories held on a
    3-dimensional continuum of marginally stable states (neutral dimension 3), not 8 isolated
    attractors (12/16 networks)")."""

    kind: str
    universal: bool
    count: int
    n: int
    kinds: dict[str, int]
    reason: str


class ScaffoldSpec(ABC):
    """How one task's scaffold is computed, compared, judged and read back (module
    docstring). Subclass once per task, setting the class attributes and the static
    methods ``compute``, ``distance`` and (optionally) ``dynamics_distance``."""

    task: ClassVar[str]
    criteria: ClassVar[tuple[Criterion, ...]]
    #: The key numbers claims and figures read (a frozen dataclass; fields are keys of
    #: :attr:`Scaffold.numbers`).
    numbers: ClassVar[type]
    #: Key of the task's rate claim (default ``<task>_scaffold``).
    claim: ClassVar[str] = ""
    slow_points: ClassVar[bool] = False
    #: The kind label :meth:`classify` gives exactly the canonical members.
    universal_kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not any(c.headline for c in cls.criteria):
            raise ValueError(f"scaffold {cls.task!r}: at least one headline criterion is needed")
        if not getattr(cls, "universal_kind", ""):
            raise ValueError(f"scaffold {cls.task!r}: universal_kind (the canonical members' kind) is needed")
        if not cls.claim:
            cls.claim = f"{cls.task}_scaffold"

    @staticmethod
    @abstractmethod
    def compute(population: Any, fixed_points: Any, config: Any = None) -> list[Scaffold]:
        """One :class:`Scaffold` per member, in member order."""

    @staticmethod
    @abstractmethod
    def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Topology distance between signature rows: ``u [N, D], v [M, D] -> [N, M]``."""

    @staticmethod
    def dynamics_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Dynamics distance between signature rows: ``u [N, D'], v [M, D'] -> [N, M]`` (L1)."""
        return l1_distance(u, v)

    def judge(self, met: Mapping[str, bool]) -> tuple[bool, dict[str, bool]]:
        """``(canonical, criteria)`` from a member's criterion -> met mapping, which must
        name every criterion of the spec."""
        missing = {c.name for c in self.criteria} - set(met)
        if missing:
            raise ValueError(f"scaffold {self.task!r}: criteria {sorted(missing)} not evaluated")
        criteria = {c.name: bool(met[c.name]) for c in self.criteria}
        return all(criteria[c.name] for c in self.criteria if c.headline), criteria

    def read(self, stored: Mapping[str, Any]) -> StoredScaffold:
        """A member's stored numbers (:meth:`Scaffold.as_dict`, or ``{"canonical": false,
        "diverged": true}``) as a :class:`StoredScaffold`. Raises ``ValueError`` when the
        stored criteria are not exactly the spec's or a field of ``numbers`` is missing
        (numbers written by another version of the scaffold)."""
        if stored.get("diverged"):
            return StoredScaffold(False, {}, None, diverged=True)
        names = [c.name for c in self.criteria]
        criteria = stored.get("criteria", {})
        if sorted(criteria) != sorted(names):
            raise ValueError(f"scaffold {self.task!r}: stored criteria {sorted(criteria)} are not the scaffold's "
                             f"{sorted(names)}; analyse the run again")
        fields = [f.name for f in dataclasses.fields(self.numbers)]
        absent = [f for f in fields if f not in stored]
        if absent:
            raise ValueError(f"scaffold {self.task!r}: stored numbers lack {absent}; analyse the run again")
        return StoredScaffold(bool(stored["canonical"]), {n: bool(criteria[n]) for n in names},
                              self.numbers(**{f: stored[f] for f in fields}))


    @abstractmethod
    def classify(self, scaffold: StoredScaffold) -> tuple[str, str]:
        """``(kind, phrase)`` of one non-diverged member from its typed numbers: the kind is
        :attr:`universal_kind` exactly when ``scaffold.canonical`` (so the description never
        disagrees with the scaffold claim); the other kinds say why the member is not
        canonical. The phrase is one clause of plain words (no count of networks)."""

    def describe(self, scaffolds: Sequence[StoredScaffold]) -> Outcome:
        """The :class:`Outcome` of a group of members (diverged ones skipped): the most
        common kind (ties: :attr:`universal_kind` first, then alphabetical) with the most
        common phrase among its members (ties: the first met) and the count; when other
        kinds occur, the reason names the runner-up and its count. Raises ``ValueError``
        when no member is left."""
        alive = [s for s in scaffolds if not s.diverged]
        if not alive:
            raise ValueError(f"scaffold {self.task!r}: no non-diverged network to describe")
        classified = [self.classify(s) for s in alive]
        for s, (kind, _) in zip(alive, classified, strict=True):
            if (kind == self.universal_kind) != s.canonical:
                raise ValueError(f"scaffold {self.task!r}: classify gave {kind!r} to a member whose canonical is "
                                 f"{s.canonical} (the universal kind {self.universal_kind!r} is exactly the "
                                 "canonical members)")
        kinds = Counter(kind for kind, _ in classified)
        order = sorted(kinds, key=lambda k: (-kinds[k], k != self.universal_kind, k))
        kind, n = order[0], len(classified)
        phrases = Counter(phrase for k, phrase in classified if k == kind)
        phrase = max(phrases, key=lambda p: phrases[p])  # the first met of the most common
        reason = f"{phrase} ({kinds[kind]}/{n} networks)"
        if len(order) > 1:
            runner = order[1]
            reason += f"; next most common: {runner.replace('_', ' ')} ({kinds[runner]}/{n})"
        return Outcome(kind, kind == self.universal_kind, kinds[kind], n, dict(sorted(kinds.items())), reason)


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
