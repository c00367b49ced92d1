"""``universality report``: claims, figures and a Markdown report of an analysed run.

Writes the run's ``report.md``, ``claims.json`` (a list of objects with ``claim``,
``group``, ``value``, ``ci_low``, ``ci_high``, ``threshold``, ``verdict`` (pass / fail /
inconclusive), ``passed`` (true only for pass), ``n``, ``detail``) and PNG figures, at the
paths of :class:`~universality.run.layout.RunLayout`. The report also shows the training
standard per group (final held-out score and steps of the passed networks) and every claim
recomputed on the error-matched subset (:func:`~universality.claims.error_matched`) beside
its verdict on all networks.

Tasks come in the order of the scaffold registry (``universality.scaffold.SCAFFOLDS``); a
run holding a task without a registered scaffold or figure module is refused.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..claims import THRESHOLDS, Claim, criteria_rates, error_matched, scaffold_claims, separability_claims
from ..run.cache import load_fixed_points, load_geometry, load_scaffolds, load_states, load_topology
from ..run.catalog import MemberRow, RunStore
from ..run.files import jsonable
from ..scaffold import SCAFFOLDS, StoredScaffold
from ..tasks import TASKS
from .tables import CLAIMS_MARKDOWN, Column, claim_table, interval, number, pass_rates, render


def collect(store: RunStore) -> tuple[list[MemberRow], dict[int, StoredScaffold], list[str]]:
    """Member rows, per-member stored scaffolds (by catalog id) and the tasks present, in
    the registry's order (``ValueError`` for a task without a registered scaffold)."""
    rows = store.members()
    unknown = sorted({r.task for r in rows} - set(SCAFFOLDS))
    if unknown:
        raise ValueError(f"{store.path}: tasks {unknown} have no scaffold registered in universality.scaffold."
                         f"SCAFFOLDS (registered: {sorted(SCAFFOLDS)})")
    scaffolds: dict[int, StoredScaffold] = {}
    for shard in store.shards():
        numbers, _ = load_scaffolds(store, shard)
        members = store.members(shard)
        if members:
            spec = SCAFFOLDS[members[0].task]
            scaffolds.update({r.member: spec.read(numbers[r.idx]) for r in members})
    tasks = [t for t in SCAFFOLDS if any(r.task == t for r in rows)]
    return rows, scaffolds, tasks


def evaluate(store: RunStore, n_permutations: int = 1000, members: set[int] | None = None) -> list[Claim]:
    """Every claim of :mod:`universality.claims` on an analysed run (optionally on a subset
    of member ids)."""
    rows, scaffolds, tasks = collect(store)
    if members is not None:
        rows = [r for r in rows if r.member in members]
    by_id = {r.member: r for r in rows}
    claims: list[Claim] = []
    for task in tasks:
        geo, topo = load_geometry(store, task), load_topology(store, task)
        ids = geo["members"].tolist()
        if "svcca" in geo:
            claims += separability_claims(task, ids, {k: v.numpy() for k, v in geo.items() if k != "members"},
                                          {k: v.numpy() for k, v in topo.items() if k != "members"}, by_id,
                                          n_permutations)
        claims += scaffold_claims(task, rows, scaffolds)
    return claims


def write_report(store: RunStore, n_permutations: int = 1000) -> Path:
    """Evaluate the claims, draw the figures and write the report; return its path."""
    from . import figures  # matplotlib only here

    layout = store.layout
    layout.figures.mkdir(parents=True, exist_ok=True)
    rows, scaffolds, tasks = collect(store)
    missing = [t for t in tasks if t not in figures.FIGURES]
    if missing:
        raise ValueError(f"tasks {missing} have no figure module registered in universality.report.figures.FIGURES")
    claims = evaluate(store, n_permutations)
    layout.claims_json.write_text(json.dumps([c.as_dict() for c in claims], indent=1, default=jsonable))

    lines = ["# Universality benchmark report", "", f"Run directory: `{store.path}`", ""]
    lines += claims_section(claims)
    lines += training_table(rows)
    lines += matched_table(claims, evaluate(store, n_permutations, members=error_matched(rows)[0]), rows)
    for task in tasks:
        lines += [f"## Task: {task}", ""]
        lines += criteria_table(task, rows, scaffolds)
        lines += _task_figures(store, task, rows, scaffolds)
    lines += _provenance(store)
    layout.report_md.write_text("\n".join(lines) + "\n")
    return layout.report_md


# ---------------------------------------------------------------------------- sections
def claims_section(claims: list[Claim]) -> list[str]:
    """The Markdown claims section: a heading, how to read it, one row per claim, the counts."""
    lines = ["## Claims", "",
             "Each claim, its measured value with its 95% interval, and a verdict: PASS when the interval lies "
             "on the claim's side of the threshold, FAIL when it lies wholly on the other side, INCONCLUSIVE when "
             "it straddles it or too few networks passed. The group rows of a rate claim are non-inferiority rows: "
             "PASS when the interval's lower end clears the threshold less the margin, FAIL only when the group "
             "is shown below the threshold after Holm correction across the claim's groups; its pooled row (group "
             "all) also fails when a group fails. Thresholds and their reasons: docs/claims.md "
             f"({json.dumps(THRESHOLDS)}); per-network criteria: the scaffold modules. Computed over members "
             "that passed their task; excluded members are counted per group.", ""]
    lines += claim_table(claims, CLAIMS_MARKDOWN, "markdown")
    counts = {v: sum(c.verdict == v for c in claims) for v in ("pass", "fail", "inconclusive")}
    return lines + ["", f"{counts['pass']}/{len(claims)} claim checks pass, {counts['fail']} fail, "
                    f"{counts['inconclusive']} inconclusive.", ""]


def criteria_table(task: str, rows: list[MemberRow], scaffolds: dict[int, StoredScaffold]) -> list[str]:
    """Per architecture x activation, the rate (and 95% interval) of each per-network
    criterion of ``task``'s scaffold, headline criteria marked."""
    spec = SCAFFOLDS[task]
    groups: dict[str, list[MemberRow]] = defaultdict(list)
    for r in rows:
        if r.task == task:
            groups[f"{r.arch}/{r.activation}"].append(r)
    if not groups:
        return []

    Rates = tuple[str, dict[str, dict[str, float]]]  # group, criterion -> rate, ci_low, ci_high, n
    items: list[Rates] = [(g, criteria_rates(task, members, scaffolds).get("criteria", {}))
                          for g, members in sorted(groups.items())]

    def rate(name: str) -> Callable[[Rates], str]:
        def cell(item: Rates) -> str:
            v = item[1][name]
            return f"{number(v['rate'])} {interval(v['ci_low'], v['ci_high'])}"
        return cell

    columns = [Column[Rates]("group", lambda item: item[0]),
               Column[Rates]("n", lambda item: str(next(iter(item[1].values()))["n"])),
               *(Column[Rates](f"{c.name}{' *' if c.headline else ''}", rate(c.name)) for c in spec.criteria)]
    lines = ["Per-network criteria (rate over passed networks, 95% interval; * = headline, part of the "
             f"`{spec.claim}` claim):", ""]
    lines += render(columns, items, "markdown")
    lines += ["", *(f"* `{c.name}`: {c.statement}" for c in spec.criteria), ""]
    return lines


def _median_range(values: list[float], integer: bool = False) -> str:
    """``median [min, max]`` of ``values`` ("n/a" when empty)."""
    if not values:
        return "n/a"
    show = (lambda v: f"{v:.0f}") if integer else number
    return f"{show(float(np.median(values)))} [{show(min(values))}, {show(max(values))}]"


def _and(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def score_wording(tasks: list[str]) -> str:
    """What the final held-out score is for ``tasks``, from each task's ``score_label`` and
    ``title``: e.g. "sign accuracy for the flip-flop, NMSE for sine and cdi"."""
    by_label: dict[str, list[str]] = {}
    for t in tasks:
        by_label.setdefault(TASKS[t].score_label, []).append(TASKS[t].title or t)
    return ", ".join(f"{label} for {_and(names)}" for label, names in by_label.items())


Group = tuple[tuple[str, str, str], list[MemberRow]]


def _passed_scores(group: Group) -> str:
    scores = [r.score for r in group[1] if r.passed and r.score is not None and math.isfinite(r.score)]
    return _median_range(scores)


TRAINING_COLUMNS: tuple[Column[Group], ...] = (
    Column("task", lambda g: g[0][0]),
    Column("arch", lambda g: g[0][1]),
    Column("activation", lambda g: g[0][2]),
    Column("passed", lambda g: f"{sum(r.passed for r in g[1])}/{len(g[1])}"),
    Column("failed", lambda g: str(sum(r.status == "failed" for r in g[1]))),
    Column("diverged", lambda g: str(sum(r.status == "diverged" for r in g[1]))),
    Column("restarts", lambda g: str(sum(r.restarts for r in g[1]))),
    Column("score of passed", _passed_scores),
    Column("steps of passed", lambda g: _median_range([float(r.steps) for r in g[1] if r.passed], integer=True)),
)


def training_table(rows: list[MemberRow]) -> list[str]:
    """The Markdown training section: per task x architecture x activation, the counts of
    passed / failed / diverged members and restarts, and the median [min, max] of the final
    held-out score and of the training steps of the passed members."""
    tasks = [t for t in TASKS if any(r.task == t for r in rows)]
    lines = ["## Training", "", "The training standard each group reached: over the members that passed, the final "
             f"held-out score ({score_wording(tasks)}) and the training steps, as median [min, max].", ""]
    return lines + render(TRAINING_COLUMNS, pass_rates(rows).items(), "markdown") + [""]


def matched_table(claims: list[Claim], matched: list[Claim], rows: list[MemberRow]) -> list[str]:
    """The Markdown error-matched section: per task the score band and the networks kept
    (:func:`~universality.claims.error_matched` of ``rows``), then every claim row's
    verdict on all networks and on the error-matched subset (``matched``: the same claims
    evaluated on it), rows that differ marked (``REVERSED`` for pass <-> fail)."""
    kept, bands = error_matched(rows)
    lines = ["## Claims on error-matched networks", "",
             "Per task, only the passed networks whose final score lies in the band common to every architecture x "
             "activation group (largest group minimum to smallest group maximum); docs/claims.md explains the "
             "choice. A row marked DIFFERS has another verdict there; a move to INCONCLUSIVE can come from the "
             "smaller n alone. REVERSED: pass on one, fail on the other.", ""]

    def passed(task: str) -> list[int]:
        return [r.member for r in rows if r.task == task and r.passed]

    band_columns: tuple[Column[tuple[str, tuple[float, float] | None]], ...] = (
        Column("task", lambda b: b[0]),
        Column("score band", lambda b: "none: the groups' scores do not overlap" if b[1] is None
               else f"[{b[1][0]:.4g}, {b[1][1]:.4g}]"),
        Column("networks kept / passed", lambda b: f"{len(kept.intersection(passed(b[0])))}/{len(passed(b[0]))}"),
    )
    lines += render(band_columns, bands.items(), "markdown")
    now = {(c.claim, c.group): c for c in matched}

    def shown(c: Claim | None) -> str:
        return "n/a" if c is None else f"{c.verdict.upper()} ({number(c.value)}, n={c.n})"

    def flag(c: Claim) -> str:
        m = now.get((c.claim, c.group))
        if m is not None and m.verdict == c.verdict:
            return ""
        return "REVERSED" if m is not None and {m.verdict, c.verdict} == {"pass", "fail"} else "DIFFERS"

    verdict_columns: tuple[Column[Claim], ...] = (
        Column("claim", lambda c: c.claim), Column("group", lambda c: c.group),
        Column("all networks", shown), Column("error-matched", lambda c: shown(now.get((c.claim, c.group)))),
        Column("", flag),
    )
    lines += ["", *render(verdict_columns, claims, "markdown")]
    flags = [flag(c) for c in claims]
    differ = sum(bool(f) for f in flags)
    return lines + ["", f"{len(claims) - differ}/{len(claims)} claim rows agree; {differ} differ, "
                    f"{flags.count('REVERSED')} of them reversed.", ""]


def _task_figures(store: RunStore, task: str, rows: list[MemberRow], scaffolds: dict[int, StoredScaffold],
                  ) -> list[str]:
    """The figures (and their Markdown) of one task: example trajectories, MDS of geometry,
    topology and dynamics, and the task's own figures (its registered figure module)."""
    from . import figures as fig

    passed = [r for r in rows if r.task == task and r.passed]
    ctx = fig.FigureContext(task, passed, scaffolds, lambda shard: load_fixed_points(store, shard),
                            lambda shard: load_states(store, shard), store.layout)
    lines = fig.trajectory_section(ctx)
    geo, topo = load_geometry(store, task), load_topology(store, task)
    distances = {name: mats[name].numpy() for name, mats in (("svcca", geo), ("topology", topo), ("dynamics", topo))
                 if name in mats}
    lines += fig.mds_section(ctx, geo["members"].tolist(), distances)
    if passed:
        lines += fig.FIGURES[task](ctx)
    return lines


def _provenance_column(header: str, key: str) -> Column[tuple[str, str, dict[str, str]]]:
    return Column(header, lambda s: str(s[2][key]))


PROVENANCE_COLUMNS: tuple[Column[tuple[str, str, dict[str, str]]], ...] = (
    Column("shard", lambda s: s[0]), Column("config hash", lambda s: s[1]),
    *(_provenance_column(header, key) for header, key in (
        ("package", "package_version"), ("torch", "torch_version"), ("device", "device"), ("threads", "threads"),
        ("date", "date"))),
)


def _provenance(store: RunStore) -> list[str]:
    records = [store.shard_record(shard) for shard in store.shards()]
    return ["## Provenance", "", *render(PROVENANCE_COLUMNS, [(r.shard, r.config_hash, r.provenance) for r in records],
                                         "markdown")]
