"""``universality report``: claims, figures and a Markdown report of an analysed run.

Writes ``DIR/report/report.md``, ``DIR/report/claims.json`` (a list of objects with
``claim``, ``group``, ``value``, ``threshold``, ``passed``, ``n``, ``detail``) and PNG
figures under ``DIR/report/figures/``.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..compare import mds
from ..store import MemberRow, RunStore
from ..tasks import task_from_config
from .analyze import load_fixed_points, load_geometry, load_scaffolds, load_states, load_topology
from .claims import THRESHOLDS, Claim, scaffold_claims, separability_claims

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
        keep = [i for i, m in enumerate(geo["members"].tolist()) if m in by_id]
        ids = [int(geo["members"][i]) for i in keep]
        if "svcca" in geo:
            claims += separability_claims(task, ids, geo["svcca"].numpy()[np.ix_(keep, keep)],
                                          topo["scaffold"].numpy()[np.ix_(keep, keep)] if "scaffold" in topo else None,
                                          by_id, n_permutations)
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
    (out / "claims.json").write_text(json.dumps([c.as_dict() for c in claims], indent=1, default=_json))

    lines = ["# Universality benchmark report", "", f"Run directory: `{store.path}`", ""]
    lines += claims_table(claims)
    lines += _pass_rates(rows)
    for task in tasks:
        lines += [f"## Task: {task}", ""]
        lines += _task_figures(store, task, rows, scaffolds, figs, plots)
    lines += _provenance(store)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------- sections
def _fmt(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3g}"


def claims_table(claims: list[Claim]) -> list[str]:
    """The Markdown claims section: a heading, how to read it, one row per claim, the count."""
    lines = ["## Claims", "",
             "Thresholds are the project's reading of the paper (qualitative in the original); "
             f"see `universality/benchmark/claims.py` ({json.dumps(THRESHOLDS)}) and the scaffold "
             "modules for the per-network criteria behind `canonical`. Computed over members that "
             "passed their task; excluded members are counted per group.", "",
             "| claim | group | value | threshold | n | verdict | details |", "|---|---|---|---|---|---|---|"]
    for c in claims:
        detail = ", ".join(f"{k}={_fmt(v) if isinstance(v, float) else v}" for k, v in c.detail.items()
                           if k != "modes")
        lines.append(f"| {c.claim} | {c.group} | {_fmt(c.value)} | {c.threshold} | {c.n} | "
                     f"{'PASS' if c.passed else 'FAIL'} | {detail} |")
    n_pass = sum(c.passed for c in claims)
    return lines + ["", f"{n_pass}/{len(claims)} claim checks pass.", ""]


def _pass_rates(rows: list[MemberRow]) -> list[str]:
    groups: dict[tuple[str, str, str], list[MemberRow]] = defaultdict(list)
    for r in rows:
        groups[(r.task, r.arch, r.activation)].append(r)
    lines = ["## Training", "", "Median score over the members that did not diverge (sign accuracy for the "
             "flip-flop, NMSE for sine and cdi).", "",
             "| task | arch | activation | passed | failed | diverged | median score |",
             "|---|---|---|---|---|---|---|"]
    for (task, arch, act), members in sorted(groups.items()):
        scores = [r.score for r in members if r.score is not None and r.status != "diverged"]
        lines.append(f"| {task} | {arch} | {act} | {sum(r.passed for r in members)}/{len(members)} | "
                     f"{sum(r.status == 'failed' for r in members)} | "
                     f"{sum(r.status == 'diverged' for r in members)} | "
                     f"{_fmt(float(np.median(scores))) if scores else 'n/a'} |")
    return lines + [""]


def _task_figures(store: RunStore, task: str, rows: list[MemberRow], scaffolds: dict[int, dict[str, Any]],
                  figs: Path, plots: Any) -> list[str]:
    """The figures (and their Markdown) of one task: example trajectories, MDS of geometry
    and topology, and the task's own scaffold figures."""
    passed = [r for r in rows if r.task == task and r.passed]
    lines = _trajectory_figure(store, task, passed, figs, plots)
    lines += _mds_figures(store, task, rows, figs, plots)
    if task == "flipflop":
        lines += _flipflop_figures(store, passed, figs, plots)
    if task == "sine":
        lines += _sine_figures(store, passed, figs, plots)
    if task == "cdi":
        lines += _cdi_figures(passed, scaffolds, figs, plots)
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
    """MDS of the geometry (SVCCA) and topology (scaffold) distances over passed members."""
    geo, topo = load_geometry(store, task), load_topology(store, task)
    by_id = {r.member: r for r in rows}
    ids = geo["members"].tolist()
    keep = [i for i, m in enumerate(ids) if by_id[m].passed]
    if len(keep) < 3:
        return []
    archs = [by_id[ids[i]].arch for i in keep]
    acts = [by_id[ids[i]].activation for i in keep]
    lines = []
    for name, mats in (("svcca", geo), ("scaffold", topo)):
        if name in mats:
            d = mats[name].numpy()[np.ix_(keep, keep)]
            emb = mds(d + 0.0, seed=0) if np.any(d > 0) else np.zeros((len(keep), 2))
            plots.mds_by_label(emb, archs, acts, figs / f"{task}_mds_{name}.png", f"{task} {name} MDS")
            lines += [f"![{task} {name} MDS](figures/{task}_mds_{name}.png)", ""]
    return lines


def _flipflop_figures(store: RunStore, passed: list[MemberRow], figs: Path, plots: Any) -> list[str]:
    """One network's fixed points (by number of unstable dimensions) per architecture."""
    lines = []
    for arch in sorted({r.arch for r in passed}):
        r = next(r for r in passed if r.arch == arch)
        member = load_fixed_points(store, r.shard).member(r.idx)
        example = load_states(store, r.shard)[r.idx].numpy()
        cloud = example.reshape(-1, example.shape[-1])
        plots.fixed_points_pca(cloud, member["points"], member["index"], figs / f"flipflop_fixed_points_{arch}.png",
                               f"{arch}/{r.activation} member {r.member}: fixed points by # unstable dims")
        lines += [f"![fixed points {arch}](figures/flipflop_fixed_points_{arch}.png)"]
    return lines + [""]


def _sine_figures(store: RunStore, passed: list[MemberRow], figs: Path, plots: Any) -> list[str]:
    """Linearised frequency (|arg| of the dominant eigenvalue of the most unstable point per
    input, as the sine scaffold reads it) against the target frequency."""
    curves: dict[str, list[np.ndarray]] = defaultdict(list)
    target = None
    for shard in sorted({r.shard for r in passed}):
        fps = load_fixed_points(store, shard)
        sine = task_from_config(store.shard_info(shard)["task_config"])
        target = sine.frequencies().numpy()  # type: ignore[attr-defined]
        top = torch.where(fps.mask, fps.eigenvalues[..., 0].abs(), -1.0)  # [P, C, N]
        best = top.argmax(-1, keepdim=True)
        dominant = fps.eigenvalues[..., 0].gather(-1, best)[..., 0].angle().abs()  # [P, C]
        angle = torch.where(fps.mask.any(-1), dominant, torch.nan).numpy()
        for r in passed:
            if r.shard == shard:
                curves[f"{r.arch}/{r.activation}"].append(angle[r.idx])
    if target is None:
        return []
    plots.frequency_tracking(target, {k: np.stack(v) for k, v in curves.items()}, figs / "sine_frequency_tracking.png")
    return ["![linearised vs target frequency](figures/sine_frequency_tracking.png)", ""]


def _cdi_figures(passed: list[MemberRow], scaffolds: dict[int, dict[str, Any]], figs: Path, plots: Any) -> list[str]:
    """Sorted spectra, response vs modes retained, and the modes-for-90% table per architecture."""
    lines = []
    for key, draw, name, caption in (("spectrum", plots.spectra, "cdi_spectra", "sorted eigenvalue spectra"),
                                     ("response_curve", plots.mode_curves, "cdi_mode_curves",
                                      "linearised response vs modes retained")):
        by_arch = _curves_by_arch(passed, scaffolds, key)
        if by_arch:
            draw(by_arch, figs / f"{name}.png")
            lines += [f"![{caption}](figures/{name}.png)", ""]
    modes: dict[str, list[float]] = defaultdict(list)
    for r in passed:
        value = scaffolds.get(r.member, {}).get("modes_90")
        if value is not None and np.isfinite(value):
            modes[r.arch].append(value)
    if modes:
        lines += ["| architecture | modes for 90% of the linearised response (median) | networks |", "|---|---|---|"]
        lines += [f"| {a} | {np.median(v):g} | {len(v)} |" for a, v in sorted(modes.items())]
        lines += [""]
    return lines


def _curves_by_arch(passed: list[MemberRow], scaffolds: dict[int, dict[str, Any]], key: str,
                    width: int = 10) -> dict[str, np.ndarray]:
    """Per architecture, the ``[N_nets, K]`` stack of each passed member's scaffold list
    ``key`` (first ``width`` values, cut to the shortest)."""
    lists: dict[str, list[list[float]]] = defaultdict(list)
    for r in passed:
        values = scaffolds.get(r.member, {}).get(key)
        if values:
            lists[r.arch].append(values[:width])
    if not lists:
        return {}
    k = min(len(v) for vs in lists.values() for v in vs)
    return {a: np.array([v[:k] for v in vs]) for a, vs in lists.items()}


def _provenance(store: RunStore) -> list[str]:
    lines = ["## Provenance", "", "| shard | config hash | package | torch | device | threads | date |",
             "|---|---|---|---|---|---|---|"]
    for shard in store.shards():
        info = store.shard_info(shard)
        p = info["provenance"]
        lines.append(f"| {shard} | {info['config_hash']} | {p['package_version']} | {p['torch_version']} | "
                     f"{p['device']} | {p['threads']} | {p['date']} |")
    return lines


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value).__name__)
