"""The paper's claims as numbers with thresholds, evaluated over members that passed.

The paper states its findings qualitatively (MDS pictures); every threshold here is the
project's reading of it, kept in :data:`THRESHOLDS` (the per-task scaffold criteria that
decide ``canonical`` live beside each scaffold, in ``universality.scaffold``). A claim
that does not hold is reported with its numbers; thresholds are never tuned to pass.

Claims (``claim`` keys):

1. ``geometry_architecture`` / ``geometry_activation`` (per task): leave-one-out 1-NN
   accuracy of the label from the SVCCA distances >= 0.6 (architecture, 4 classes) /
   >= 0.75 (activation), with permutation p < 0.01.
2. ``topology_architecture`` (per task): 1-NN accuracy from the scaffold distances <=
   chance + 0.15 and below the geometry accuracy.
3. ``flipflop_scaffold`` (per architecture x activation): fraction canonical >= 0.9.
4. ``sine_scaffold`` (per group): fraction canonical >= 0.9.
5. ``cdi_line_attractor`` (per group): fraction canonical >= 0.9.
6. ``cdi_modes`` (per architecture): median modes for 90% of the linearised
   integration response == 1 for vanilla, > 1 for gated architectures.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..compare import separability
from ..store import MemberRow

THRESHOLDS: dict[str, float] = {
    "geometry_architecture_accuracy": 0.6,
    "geometry_activation_accuracy": 0.75,
    "geometry_p_value": 0.01,
    "topology_margin_over_chance": 0.15,
    "scaffold_fraction": 0.9,
    "vanilla_modes": 1,
    "min_members_per_group": 2,
}

SCAFFOLD_CLAIMS = {"flipflop": "flipflop_scaffold", "sine": "sine_scaffold", "cdi": "cdi_line_attractor"}


@dataclass(frozen=True)
class Claim:
    """One claim in one group: measured ``value`` against ``threshold`` (a readable
    condition), with the number of members ``n`` it rests on and the details."""

    claim: str
    group: str
    value: float
    threshold: str
    passed: bool
    n: int
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _passed_subset(ids: Sequence[int], matrix: np.ndarray, rows: Mapping[int, MemberRow]) -> tuple[
        list[int], np.ndarray]:
    keep = [i for i, m in enumerate(ids) if rows[m].passed]
    return [ids[i] for i in keep], matrix[np.ix_(keep, keep)]


def separability_claims(task: str, ids: Sequence[int], geometry: np.ndarray, topology: np.ndarray | None,
                        rows: Mapping[int, MemberRow], n_permutations: int = 1000) -> list[Claim]:
    """Claims 1 and 2 for one task from ``[N, N]`` distance matrices over members ``ids``."""
    t = THRESHOLDS
    out = []
    members, geo = _passed_subset(ids, geometry, rows)
    geo_arch_acc = float("nan")
    for label, key in (("architecture", "arch"), ("activation", "activation")):
        labels = [getattr(rows[m], key) for m in members]
        need = t[f"geometry_{label}_accuracy"]
        cond = f"1-NN >= {need} and p < {t['geometry_p_value']}"
        if len(set(labels)) < 2:
            out.append(Claim(f"geometry_{label}", task, float("nan"), cond, False, len(members),
                             {"note": f"needs >= 2 {label} groups among passed members"}))
            continue
        s = separability(geo, labels, n_permutations=n_permutations)
        if label == "architecture":
            geo_arch_acc = s.nn_accuracy
        out.append(Claim(f"geometry_{label}", task, s.nn_accuracy, cond,
                         s.nn_accuracy >= need and s.p_value < t["geometry_p_value"], len(members),
                         {"chance": s.chance, "p_value": s.p_value, "silhouette": s.silhouette}))
    if topology is not None:
        members, topo = _passed_subset(ids, topology, rows)
        labels = [rows[m].arch for m in members]
        cond = f"1-NN <= chance + {t['topology_margin_over_chance']} and < geometry 1-NN"
        if len(set(labels)) < 2:
            out.append(Claim("topology_architecture", task, float("nan"), cond, False, len(members),
                             {"note": "needs >= 2 architectures among passed members"}))
        else:
            s = separability(topo, labels, n_permutations=n_permutations)
            ok = s.nn_accuracy <= s.chance + t["topology_margin_over_chance"] and s.nn_accuracy < geo_arch_acc
            out.append(Claim("topology_architecture", task, s.nn_accuracy, cond, bool(ok), len(members),
                             {"chance": s.chance, "p_value": s.p_value, "geometry_accuracy": geo_arch_acc}))
    return out


def scaffold_claims(task: str, rows: Sequence[MemberRow], scaffolds: Mapping[int, dict[str, Any]]) -> list[Claim]:
    """Claims 3-5 (fraction canonical per architecture x activation) and 6 (cdi modes)."""
    t = THRESHOLDS
    out = []
    groups: dict[str, list[MemberRow]] = {}
    for r in rows:
        if r.task == task:
            groups.setdefault(f"{r.arch}/{r.activation}", []).append(r)
    for group, members in sorted(groups.items()):
        passed = [r for r in members if r.passed and r.member in scaffolds]
        excluded = {s: sum(r.status == s for r in members if not r.passed) for s in ("failed", "diverged")}
        cond = f"fraction canonical >= {t['scaffold_fraction']}"
        detail: dict[str, Any] = {"excluded": excluded}
        if len(passed) < t["min_members_per_group"]:
            out.append(Claim(SCAFFOLD_CLAIMS[task], group, float("nan"), cond, False, len(passed),
                             {**detail, "note": "too few passed members"}))
            continue
        fraction = float(np.mean([bool(scaffolds[r.member]["canonical"]) for r in passed]))
        out.append(Claim(SCAFFOLD_CLAIMS[task], group, fraction, cond, fraction >= t["scaffold_fraction"],
                         len(passed), detail))
    if task == "cdi":
        archs: dict[str, list[float]] = {}
        for r in rows:
            if r.task == "cdi" and r.passed and r.member in scaffolds:
                modes = scaffolds[r.member].get("modes_90")
                if modes is not None and np.isfinite(modes):
                    archs.setdefault(r.arch, []).append(float(modes))
        for arch, modes in sorted(archs.items()):
            median = statistics.median(modes)
            if arch == "vanilla":
                cond, ok = f"median == {t['vanilla_modes']}", median == t["vanilla_modes"]
            else:
                cond, ok = f"median > {t['vanilla_modes']}", median > t["vanilla_modes"]
            out.append(Claim("cdi_modes", arch, median, cond, bool(ok), len(modes), {"modes": modes}))
    return out
