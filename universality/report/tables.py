"""One table renderer, for the terminal and for Markdown, and the tables built on it.

A table is a tuple of :class:`Column` and a sequence of items; each column turns an item
into its cell text. :func:`render` lays them out in either style:

* ``"markdown"``: ``| a | b |`` (an empty title is ``| |``), a ``|---|---|`` rule, one
  ``| x | y |`` line per item;
* ``"terminal"``: each cell padded to its column's ``width`` (right-aligned when
  ``right``), joined by each column's ``gap`` (one space by default); the header is the
  column titles laid out the same way.

Cells are formatted by :func:`number` and :func:`interval`, which share one test for a
missing value (:func:`missing`: ``None`` or NaN). The claim tables (:func:`claim_table`
with :data:`CLAIMS_MARKDOWN`, :data:`CLAIMS_TERMINAL`, :data:`CHECK_MARKDOWN`,
:data:`CHECK_TERMINAL`) take :class:`~universality.claims.Claim` rows (``claims.json``
rows through ``Claim.from_dict``); :func:`pass_rates` groups member rows for the
pass-rate tables (:data:`PASS_RATES_TERMINAL`, the report's training table).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from ..claims.verdicts import Claim

Style = Literal["markdown", "terminal"]
T = TypeVar("T")


@dataclass(frozen=True)
class Column(Generic[T]):
    """One column: its ``header``, how an item becomes its ``cell`` text, and, in the
    terminal, its ``width`` (0: as is), alignment (``right``) and the ``gap`` before it."""

    header: str
    cell: Callable[[T], str]
    width: int = 0
    right: bool = False
    gap: str = " "

    def pad(self, text: str) -> str:
        return text.rjust(self.width) if self.right else text.ljust(self.width)


def render(columns: Sequence[Column[T]], items: Iterable[T], style: Style) -> list[str]:
    """The table's lines (header first) in ``style`` (module docstring)."""
    rows = [[c.cell(item) for c in columns] for item in items]
    if style == "markdown":
        header = "|" + "".join(f" {c.header} |" if c.header else " |" for c in columns)
        return [header, "|" + "---|" * len(columns),
                *("| " + " | ".join(row) + " |" for row in rows)]

    def line(cells: Sequence[str]) -> str:
        return "".join((c.gap if i else "") + c.pad(text) for i, (c, text) in enumerate(zip(columns, cells,
                                                                                            strict=True)))

    return [line([c.header for c in columns]), *(line(row) for row in rows)]


# ---------------------------------------------------------------------------- cells
def missing(value: Any) -> bool:
    """Whether ``value`` is absent: ``None`` or a float NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value: float | None) -> str:
    """``value`` to 3 significant digits, ``n/a`` when :func:`missing`."""
    return "n/a" if missing(value) else f"{value:.3g}"


def interval(low: float | None, high: float | None) -> str:
    """``[low, high]`` to 2 decimals, empty when ``low`` is :func:`missing`."""
    return "" if missing(low) else f"[{low:.2f}, {high:.2f}]"


# ---------------------------------------------------------------------------- claims
def detail_text(claim: Claim) -> str:
    """A claim's ``detail`` as ``key=value`` pairs (numbers by :func:`number`, lists space-
    separated), the long entries (``modes``, ``criteria``) left out and ``other_metrics``
    flattened."""
    def shown(value: Any) -> str:
        if isinstance(value, float):
            return number(value)
        if isinstance(value, list):
            return " ".join(str(v) for v in value) or "none"
        return str(value)

    text = ", ".join(f"{k}={shown(v)}" for k, v in claim.detail.items()
                     if k not in ("modes", "criteria", "other_metrics"))
    if "other_metrics" in claim.detail:
        text += ", " + ", ".join(f"{k}={number(v)}" for k, v in claim.detail["other_metrics"].items())
    return text


def _reason(claim: Claim) -> str:
    return str(claim.detail.get("reason", ""))


#: Every claim column by key: (header, cell, terminal width, right-aligned).
CLAIM_COLUMNS: dict[str, Column[Claim]] = {
    "claim": Column("claim", lambda c: c.claim, 24),
    "group": Column("group", lambda c: c.group, 16),
    "task": Column("task", lambda c: c.group, 9),  # check rows: the group is the task
    "check": Column("check", lambda c: c.claim, 34),
    "value": Column("value", lambda c: number(c.value), 7, right=True),
    "ci": Column("95% CI", lambda c: interval(c.ci_low, c.ci_high), 14, right=True),
    "threshold": Column("threshold", lambda c: c.threshold),
    "n": Column("n", lambda c: str(c.n), 4, right=True),
    "verdict": Column("verdict", lambda c: c.verdict.upper(), 12, gap="  "),
    "details": Column("details", detail_text),
    "reason": Column("reason", _reason),
}
#: The report's and the reference summary's claims table (Markdown).
CLAIMS_MARKDOWN = ("claim", "group", "value", "ci", "threshold", "n", "verdict", "details")
#: ``run`` and ``report``'s claims table (terminal).
CLAIMS_TERMINAL = ("claim", "group", "value", "ci", "n", "verdict", "threshold")
#: ``check``'s verdict table in check.md (Markdown).
CHECK_MARKDOWN = ("task", "check", "value", "ci", "threshold", "n", "verdict", "reason")
#: ``check``'s verdict table (terminal).
CHECK_TERMINAL = ("task", "check", "value", "ci", "verdict", "reason")


def claim_table(claims: Iterable[Claim], columns: Sequence[str], style: Style) -> list[str]:
    """The lines of a table of ``claims`` with the :data:`CLAIM_COLUMNS` named in ``columns``
    (e.g. :data:`CLAIMS_MARKDOWN`) in ``style``."""
    return render([CLAIM_COLUMNS[key] for key in columns], claims, style)


# ---------------------------------------------------------------------------- training
class MemberLike(Protocol):
    """What :func:`pass_rates` reads of a member row."""

    @property
    def task(self) -> str: ...
    @property
    def arch(self) -> str: ...
    @property
    def activation(self) -> str: ...
    @property
    def passed(self) -> bool: ...


M = TypeVar("M", bound=MemberLike)


def pass_rates(rows: Iterable[M]) -> dict[tuple[str, str, str], list[M]]:
    """Member rows grouped by ``(task, arch, activation)``, in sorted order: the groups of
    every pass-rate table."""
    groups: dict[tuple[str, str, str], list[M]] = {}
    for r in rows:
        groups.setdefault((r.task, r.arch, r.activation), []).append(r)
    return dict(sorted(groups.items()))


Group = tuple[tuple[str, str, str], Sequence[Any]]
#: ``run``'s pass-rate table (terminal) over :func:`pass_rates` groups.
PASS_RATES_TERMINAL: tuple[Column[Group], ...] = (
    Column("task", lambda g: g[0][0], 9),
    Column("arch", lambda g: g[0][1], 8),
    Column("act", lambda g: g[0][2], 5),
    Column("passed", lambda g: f"{sum(r.passed for r in g[1])}/{len(g[1])}"),
)
