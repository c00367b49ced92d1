"""``universality report``: claims, figures and a Markdown report of an analysed run.

Writes ``DIR/report/report.md``, ``DIR/report/claims.json`` (a list of objects with
``claim``, ``group``, ``value``, ``ci_low``, ``ci_high``, ``threshold``, ``verdict``
(pass / fail / inconclusive), ``passed`` (true only for pass), ``n``, ``detail``) and PNG
figures under ``DIR/report/figures/``. The report also shows the training standard per
group (final held-out score and steps of the passed networks) and every claim recomputed
on the error-matched subset (:func:`.claims.error_matched`) beside its verdict on all
networks.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..geometry import mds
from ..scaffold import SCAFFOLDS, FigureContext
from ..store import MemberRow, RunStore
from ..tasks import task_from_config
from .analyze import jsonable, load_fixed_points, load_geometry, load_scaffolds, load_states, load_topology
from .claims import THRESHOLDS, Claim, criteria_rates, error_matched, scaffold_claims, separability_claims

TASK_ORDER = ("flipflop", "sine", "cdi")


def collect(store: RunStore) -> tuple[list[MemberRow], dict[int, dict[str, Any]], list[str]]:
    """Member rows, per-member scaffold numbers (by catalog id) and the tasks present."""
    rows = store.members()
    scaffolds: dict[int, dict[str, Any]] = {}
    for shard in store.shards():
        numbers, _ = load_scaffolds(store, shard)
        scaffolds.update({r.member: numbers[r.idx] for r in store.members(shard)})
    tasks = [t for t in TASK_ORDER if any(r.task == t for r in rows)]
    return rows, scaffolds, tasks


def evaluate(store: RunStore, n_permutations: int = 1000, members: set[int] | None = None) -> list[Claim]:
    """Every claim of :mod:`.claims` on an analysed run (optionally on a subset of member ids)."""
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
    from .. import plots  # matplotlib only here

    out = store.path / "report"
    figs = out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    rows, scaffolds, tasks = collect(store)
    claims = evaluate(store, n_permutations)
    (out / "claims.json").write_text(json.dumps([c.as_dict() for c in claims], indent=1, default=jsonable))

    lines = ["# Universality benchmark report", "", f"Run directory: `{store.path}`", ""]
    lines += claims_table(claims)
    lines += training_table(rows)
    lines += matched_table(claims, evaluate(store, n_permutations, members=error_matched(rows)[0]), rows)
    for task in tasks:
        lines += [f"## Task: {task}", ""]
        lines += criteria_table(task, rows, scaffolds)
        lines += _task_figures(store, task, rows, scaffolds, figs, plots)
    lines += _provenance(store)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- sections
def fmt_number(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def _interval(low: float, high: float) -> str:
    return "" if math.isnan(low) else f"[{low:.2f}, {high:.2f}]"


def _detail_value(value: Any) -> str:
    if isinstance(value, float):
        return fmt_number(value)
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "none"
    return str(value)


def claims_table(claims: list[Claim]) -> list[str]:
    """The Markdown claims section: a heading, how to read it, one row per claim, the counts."""
    lines = ["## Claims", "",
             "Each claim, its measured value with its 95% interval, and a verdict: PASS when the interval lies "
             "on the claim's side of the threshold, FAIL when it lies wholly on the other side, INCONCLUSIVE when "
             "it straddles it or too few networks passed. The group rows of a rate claim are non-inferiority rows: "
             "PASS when the interval's lower end clears the threshold less the margin, FAIL only when the group "
             "is shown below the threshold after Holm correction across the claim's groups; its pooled row (group "
             "all) also fails when a group fails. Thresholds and their reasons: docs/claims.md "
             f"({json.dumps(THRESHOLDS)}); per-network criteria: the scaffold modules. Computed over members "
             "that passed their task; excluded members are counted per group.", "",
             "| claim | group | value | 95% CI | threshold | n | verdict | details |",
             "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        detail = ", ".join(f"{k}={_detail_value(v)}" for k, v in c.detail.items()
                           if k not in ("modes", "criteria", "other_metrics"))
        if "other_metrics" in c.detail:
            detail += ", " + ", ".join(f"{k}={fmt_number(v)}" for k, v in c.detail["other_metrics"].items())
        lines.append(f"| {c.claim} | {c.group} | {fmt_number(c.value)} | {_interval(c.ci_low, c.ci_high)} | "
                     f"{c.threshold} | {c.n} | {c.verdict.upper()} | {detail} |")
    counts = {v: sum(c.verdict == v for c in claims) for v in ("pass", "fail", "inconclusive")}
    return lines + ["", f"{counts['pass']}/{len(claims)} claim checks pass, {counts['fail']} fail, "
                    f"{counts['inconclusive']} inconclusive.", ""]


def criteria_table(task: str, rows: list[MemberRow], scaffolds: dict[int, dict[str, Any]]) -> list[str]:
    """Per architecture x activation, the rate (and 95% interval) of each per-network
    criterion of ``task``'s scaffold, headline criteria marked."""
    spec = SCAFFOLDS[task]
    groups: dict[str, list[MemberRow]] = defaultdict(list)
    for r in rows:
        if r.task == task:
            groups[f"{r.arch}/{r.activation}"].append(r)
    if not groups:
        return []
    names = [f"{c.name}{' *' if c.headline else ''}" for c in spec.criteria]
    lines = ["Per-network criteria (rate over passed networks, 95% interval; * = headline, part of the "
             f"`{spec.claim}` claim):", "", "| group | n | " + " | ".join(names) + " |",
             "|---|---|" + "---|" * len(names)]
    for group, members in sorted(groups.items()):
        rates = criteria_rates(task, members, scaffolds).get("criteria", {})
        n = next(iter(rates.values()))["n"] if rates else 0
        cells = [f"{fmt_number(v['rate'])} {_interval(v['ci_low'], v['ci_high'])}" for v in rates.values()]
        lines.append(f"| {group} | {n} | " + " | ".join(cells) + " |")
    lines += ["", *(f"* `{c.name}`: {c.statement}" for c in spec.criteria), ""]
    return lines


def _median_range(values: list[float], integer: bool = False) -> str:
    """``median [min, max]`` of ``values`` ("n/a" when empty)."""
    if not values:
        return "n/a"
    show = (lambda v: f"{v:.0f}") if integer else fmt_number
    return f"{show(float(np.median(values)))} [{show(min(values))}, {show(max(values))}]"


def training_table(rows: list[MemberRow]) -> list[str]:
    """The Markdown training section: per task x architecture x activation, the counts of
    passed / failed / diverged members and restarts, and the median [min, max] of the final
    held-out score and of the training steps of the passed members."""
    groups: dict[tuple[str, str, str], list[MemberRow]] = defaultdict(list)
    for r in rows:
        groups[(r.task, r.arch, r.activation)].append(r)
    lines = ["## Training", "", "The training standard each group reached: over the members that passed, the final "
             "held-out score (sign accuracy for the flip-flop, NMSE for sine and cdi) and the training steps, as "
             "median [min, max].", "",
             "| task | arch | activation | passed | failed | diverged | restarts | score of passed | steps of passed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (task, arch, act), members in sorted(groups.items()):
        passed = [r for r in members if r.passed]
        scores = [r.score for r in passed if r.score is not None and math.isfinite(r.score)]
        lines.append(f"| {task} | {arch} | {act} | {len(passed)}/{len(members)} | "
                     f"{sum(r.status == 'failed' for r in members)} | "
                     f"{sum(r.status == 'diverged' for r in members)} | {sum(r.restarts for r in members)} | "
                     f"{_median_range(scores)} | {_median_range([float(r.steps) for r in passed], integer=True)} |")
    return lines + [""]


def matched_table(claims: list[Claim], matched: list[Claim], rows: list[MemberRow]) -> list[str]:
    """The Markdown error-matched section: per task the score band and the networks kept
    (:func:`.claims.error_matched` of ``rows``), then every claim row's verdict on all
    networks and on the error-matched subset (``matched``: the same claims evaluated on it),
    rows that differ marked (``REVERSED`` for pass <-> fail)."""
    kept, bands = error_matched(rows)
    lines = ["## Claims on error-matched networks", "",
             "Per task, only the passed networks whose final score lies in the band common to every architecture x "
             "activation group (largest group minimum to smallest group maximum); docs/claims.md explains the "
             "choice. A row marked DIFFERS has another verdict there; a move to INCONCLUSIVE can come from the "
             "smaller n alone. REVERSED: pass on one, fail on the other.", "",
             "| task | score band | networks kept / passed |", "|---|---|---|"]
    for task, band in bands.items():
        passed = [r.member for r in rows if r.task == task and r.passed]
        shown = ("none: the groups' scores do not overlap" if band is None else
                 f"[{band[0]:.4g}, {band[1]:.4g}]")
        lines.append(f"| {task} | {shown} | {len(kept.intersection(passed))}/{len(passed)} |")
    lines += ["", "| claim | group | all networks | error-matched | |", "|---|---|---|---|---|"]
    now = {(c.claim, c.group): c for c in matched}
    differ = reversed_ = 0
    for c in claims:
        m = now.get((c.claim, c.group))
        shown = "n/a" if m is None else f"{m.verdict.upper()} ({fmt_number(m.value)}, n={m.n})"
        flag = ""
        if m is None or m.verdict != c.verdict:
            differ += 1
            flag = "DIFFERS"
            if m is not None and {m.verdict, c.verdict} == {"pass", "fail"}:
                reversed_ += 1
                flag = "REVERSED"
        lines.append(f"| {c.claim} | {c.group} | {c.verdict.upper()} ({fmt_number(c.value)}, n={c.n}) | {shown} | "
                     f"{flag} |")
    return lines + ["", f"{len(claims) - differ}/{len(claims)} claim rows agree; {differ} differ, {reversed_} of them "
                    "reversed.", ""]


def _task_figures(store: RunStore, task: str, rows: list[MemberRow], scaffolds: dict[int, dict[str, Any]],
                  figs: Path, plots: Any) -> list[str]:
    """The figures (and their Markdown) of one task: example trajectories, MDS of geometry,
    topology and dynamics, and the task's own scaffold figures (its ``figures`` hook)."""
    passed = [r for r in rows if r.task == task and r.passed]
    lines = _trajectory_figure(store, task, passed, figs, plots)
    lines += _mds_figures(store, task, rows, figs, plots)
    spec = SCAFFOLDS[task]
    if spec.figures is not None and passed:
        context = FigureContext(passed, scaffolds, lambda shard: load_fixed_points(store, shard),
                                lambda shard: load_states(store, shard),
                                lambda shard: task_from_config(store.shard_info(shard)["task_config"]), figs)
        lines += spec.figures(context)
    return lines


def _trajectory_figure(store: RunStore, task: str, passed: list[MemberRow], figs: Path, plots: Any) -> list[str]:
    """Example trajectories, one passed network per architecture x activation."""
    panels: dict[str, np.ndarray] = {}
    for r in passed:
        key = f"{r.arch}/{r.activation}"
        if key not in panels:
            panels[key] = load_states(store, r.shard)[r.idx, ..., : r.hidden].numpy()
    if not panels:
        return []
    plots.trajectories(panels, figs / f"{task}_trajectories.png", f"{task}: hidden states, 2-D PCA")
    return [f"![{task} trajectories](figures/{task}_trajectories.png)", ""]


def _mds_figures(store: RunStore, task: str, rows: list[MemberRow], figs: Path, plots: Any) -> list[str]:
    """MDS of the geometry (SVCCA), topology and dynamics distances over passed members."""
    geo, topo = load_geometry(store, task), load_topology(store, task)
    by_id = {r.member: r for r in rows}
    ids = geo["members"].tolist()
    keep = [i for i, m in enumerate(ids) if m in by_id and by_id[m].passed]
    if len(keep) < 3:
        return []
    archs = [by_id[ids[i]].arch for i in keep]
    acts = [by_id[ids[i]].activation for i in keep]
    lines = []
    for name, mats in (("svcca", geo), ("topology", topo), ("dynamics", topo)):
        if name in mats:
            d = mats[name].numpy()[np.ix_(keep, keep)]
            emb = mds(d + 0.0, seed=0) if np.any(d > 0) else np.zeros((len(keep), 2))
            plots.mds_by_label(emb, archs, acts, figs / f"{task}_mds_{name}.png", f"{task} {name} MDS")
            lines += [f"![{task} {name} MDS](figures/{task}_mds_{name}.png)", ""]
    return lines


def _provenance(store: RunStore) -> list[str]:
    lines = ["## Provenance", "", "| shard | config hash | package | torch | device | threads | date |",
             "|---|---|---|---|---|---|---|"]
    for shard in store.shards():
        info = store.shard_info(shard)
        p = info["provenance"]
        lines.append(f"| {shard} | {info['config_hash']} | {p['package_version']} | {p['torch_version']} | "
                     f"{p['device']} | {p['threads']} | {p['date']} |")
    return lines

