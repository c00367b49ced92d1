"""The paper's claims as verdicts with confidence, over the members that passed their task.

The paper states its findings qualitatively (MDS pictures, example networks); every
threshold here is the project's reading of it, kept with its reason in :data:`THRESHOLDS`
and docs/claims.md (the per-network criteria live beside each scaffold, in
``universality.scaffold``). Each row has a ``verdict`` (``pass``, ``fail``,
``inconclusive``; see :mod:`.verdicts`). A claim that does not hold is reported
with its numbers; thresholds are never tuned to pass.

Claims (``claim`` keys; group = the task unless stated):

1. ``geometry_architecture`` / ``geometry_activation``: geometry is individual. Leave-one-out
   1-NN accuracy of the label from the SVCCA distances (ties by expectation) with its
   95 % interval (bootstrap over networks) at or above 0.6 (architecture) / 0.75 (activation), and its permutation
   p < 0.01. The same accuracy under CKA, Procrustes, CCA and SVCCA with 3 and 5 components
   is reported in ``detail``.
2. ``topology_architecture`` / ``topology_activation``: topology is universal. 1-NN accuracy
   from the topology-signature distances (discrete content only) with its interval at or
   below chance + 0.15.
3. ``dynamics_architecture``: linear dynamics are individual. 1-NN accuracy of the
   architecture from the dynamics-signature distances above chance, permutation p < 0.01
   (pass); fail when its interval lies at or below chance + 0.15 (the margin of claim 2:
   no more information than topology is allowed); inconclusive otherwise (e.g. too few
   networks for any permutation p below 0.01).
4. ``<task scaffold claim>`` (``flipflop_scaffold``, ``sine_scaffold``,
   ``cdi_line_attractor``): the scaffold is universal. The rate of networks meeting every
   headline criterion, at least 0.9, pooled over all groups (group ``all``, the primary
   verdict; it also fails when any group fails), and per architecture x activation as a
   non-inferiority row (margin 0.1; a group fails only when shown below 0.9 after Holm
   correction across the groups; :func:`.verdicts.group_rate_claims`). The spread
   between groups (beta-binomial ICC, homogeneity p) is reported, not deciding.
5. A task's own claims (:data:`TASK_CLAIMS`): ``cdi_modes`` (:func:`cdi_modes`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..geometry import chance_level, nearest_neighbor_accuracy, nearest_neighbor_scores, nn_permutation_p
from ..run.catalog import MemberRow
from ..scaffold import SCAFFOLDS, StoredScaffold
from .verdicts import (
    ALPHA,
    MIN_MEMBERS,
    Claim,
    Verdict,
    against_threshold,
    betabinom_spread,
    group_rate_claims,
    homogeneity_p,
    mean_ci,
    proportion_ci,
    rank_p,
    rate_claim,
)

#: Every threshold of the claims above (the per-network criteria are in the scaffold modules).
THRESHOLDS: dict[str, float] = {
    "geometry_architecture_accuracy": 0.6,
    "geometry_activation_accuracy": 0.75,
    "topology_margin_over_chance": 0.15,
    "scaffold_rate": 0.9,
    # a group row passes when its rate is shown >= 0.9 - 0.1: four networks in five still
    # share the scaffold, while another solution gives a rate near 0 or one half
    "scaffold_group_margin": 0.1,
    "alpha": ALPHA,
    "min_members": MIN_MEMBERS,
}
#: Per claim key: what the row tests, and what the paper shows (SUMMARY.md, two lines each).
STATEMENTS: dict[str, tuple[str, str]] = {
    "geometry_architecture": ("Networks of one architecture sit nearer each other in SVCCA geometry than chance: "
                              "the architecture is predictable from geometry (individuality).",
                              "Paper Fig. 1d, 3c: MDS of SVCCA distances separates architectures."),
    "geometry_activation": ("The activation (tanh / ReLU) is predictable from SVCCA geometry.",
                            "Paper Fig. 1d (right): the SVCCA-MDS separates tanh and ReLU networks."),
    "topology_architecture": ("The topology signature (discrete scaffold: fixed points, indices, graph, flags) "
                              "does not predict the architecture beyond chance + margin (universality).",
                              "Paper Fig. 1f, 3d: the MDS of fixed-point topology mixes architectures."),
    "topology_activation": ("The topology signature does not predict the activation beyond chance + margin.",
                            "Paper Sec. 4: the scaffold is shared across architectures and nonlinearities."),
    "dynamics_architecture": ("The linearised dynamics (eigenvalues, frequencies, selection gains, response "
                              "modes) predict the architecture above chance (individuality of linear dynamics).",
                              "Paper Fig. 3e/f: eigenvalue spectra and modes of the response differ by "
                              "architecture."),
    "flipflop_scaffold": ("At least 90% of trained flip-flop networks hold the labelled 3-cube of memories and "
                          "index-1 saddles (pooled; no architecture x activation shown below it).",
                          "Paper Fig. 1e: 2^3 stable points with saddles between neighbouring memories."),
    "sine_scaffold": ("At least 90% of sine networks have, per input, one unstable spiral inside a limit cycle "
                      "whose linearised frequency tracks the target.",
                      "Paper Fig. 2: one unstable fixed point per input at the centre of its oscillation; its "
                      "linearised frequency follows the target."),
    "cdi_line_attractor": ("At least 90% of context-integration networks hold integrated values for a trial at "
                           "zero input in both contexts (kept 0.8-1.25, irrelevant stream ignored), on a "
                           "one-dimensional line of slow points along a slow direction, with the slow modes "
                           "selecting the relevant input.",
                           "Paper Fig. 3a-c: an approximate line attractor per context in every architecture."),
    "cdi_modes": ("Vanilla networks integrate with fewer linear modes than gated networks (modes for 90% of the "
                  "linearised response, one-sided rank test).",
                  "Paper Fig. 3f: vanilla RNNs use one slow mode, gated RNNs several."),
}
#: Geometry metrics reported beside SVCCA (keys of the stored geometry matrices).
OTHER_GEOMETRY = ("cka", "procrustes", "cca_angular", "svcca_k3", "svcca_k5")
LABELS = {"architecture": "arch", "activation": "activation"}


def _passed_subset(ids: Sequence[int], matrix: np.ndarray, rows: Mapping[int, MemberRow]) -> tuple[
        list[int], np.ndarray]:
    keep = [i for i, m in enumerate(ids) if m in rows and rows[m].passed]
    return [ids[i] for i in keep], matrix[np.ix_(keep, keep)]


def _accuracy(d: np.ndarray, labels: list[str], n_permutations: int) -> dict[str, float]:
    """1-NN accuracy (ties by expectation), its chance level, 95 % interval (bootstrap over
    networks) and permutation p."""
    scores = nearest_neighbor_scores(d, labels)
    low, high = mean_ci(scores)
    return {"accuracy": float(scores.mean()), "chance": chance_level(labels), "ci_low": low, "ci_high": high,
            "p_value": nn_permutation_p(d, labels, n_permutations)}


def _separable(labels: list[str]) -> bool:
    """At least two labels, one of them on at least two networks (1-NN needs a neighbour)."""
    counts = [labels.count(v) for v in set(labels)]
    return len(counts) >= 2 and max(counts) >= 2 and len(labels) >= MIN_MEMBERS


def separability_claims(task: str, ids: Sequence[int], geometry: Mapping[str, np.ndarray],
                        topology: Mapping[str, np.ndarray], rows: Mapping[int, MemberRow],
                        n_permutations: int = 1000) -> list[Claim]:
    """Claims 1-3 for one task from ``[N, N]`` distance matrices over members ``ids``
    (``geometry``: ``svcca`` and the :data:`OTHER_GEOMETRY` present; ``topology``:
    ``topology`` and ``dynamics``)."""
    t = THRESHOLDS
    out: list[Claim] = []

    def labelled(matrix: np.ndarray, label: str) -> tuple[np.ndarray, list[str]]:
        members, d = _passed_subset(ids, matrix, rows)
        return d, [getattr(rows[m], LABELS[label]) for m in members]

    def too_few(claim: str, cond: str, labels: list[str]) -> Claim:
        return Claim(claim, task, math.nan, cond, "inconclusive", len(labels),
                     detail={"reason": f"needs >= 2 groups and >= {MIN_MEMBERS} passed networks, one group with 2"})

    for label in LABELS:
        need = t[f"geometry_{label}_accuracy"]
        cond = f"1-NN CI >= {need} and p < {ALPHA}"
        d, labels = labelled(geometry["svcca"], label)
        if not _separable(labels):
            out.append(too_few(f"geometry_{label}", cond, labels))
            continue
        s = _accuracy(d, labels, n_permutations)
        verdict: Verdict = against_threshold(s["ci_low"], s["ci_high"], need, n=len(labels))
        if verdict == "pass" and s["p_value"] >= ALPHA:
            verdict = "inconclusive"
        others = {m: nearest_neighbor_accuracy(labelled(geometry[m], label)[0], labels)
                  for m in OTHER_GEOMETRY if m in geometry}
        out.append(Claim(f"geometry_{label}", task, s["accuracy"], cond, verdict, len(labels), s["ci_low"],
                         s["ci_high"], {"chance": s["chance"], "p_value": s["p_value"], "other_metrics": others}))

    geometry_accuracy = {c.claim.split("_", 1)[1]: c.value for c in out}
    for label in LABELS:
        if "topology" not in topology:
            break
        d, labels = labelled(topology["topology"], label)
        cond = f"1-NN CI <= chance + {t['topology_margin_over_chance']}"
        if not _separable(labels):
            out.append(too_few(f"topology_{label}", cond, labels))
            continue
        s = _accuracy(d, labels, n_permutations)
        bound = s["chance"] + t["topology_margin_over_chance"]
        verdict = against_threshold(s["ci_low"], s["ci_high"], bound, at_least=False, n=len(labels))
        out.append(Claim(f"topology_{label}", task, s["accuracy"], cond, verdict, len(labels), s["ci_low"],
                         s["ci_high"], {"chance": s["chance"], "bound": bound, "p_value": s["p_value"],
                                        "geometry_accuracy": geometry_accuracy.get(label, math.nan)}))

    if "dynamics" in topology:
        d, labels = labelled(topology["dynamics"], "architecture")
        cond = f"1-NN above chance, p < {ALPHA}"
        if not _separable(labels):
            out.append(too_few("dynamics_architecture", cond, labels))
        else:
            s = _accuracy(d, labels, n_permutations)
            bound = s["chance"] + t["topology_margin_over_chance"]
            verdict = ("pass" if s["p_value"] < ALPHA and s["accuracy"] > s["chance"] else
                       "fail" if s["ci_high"] <= bound else "inconclusive")
            out.append(Claim("dynamics_architecture", task, s["accuracy"], cond, verdict, len(labels), s["ci_low"],
                             s["ci_high"], {"chance": s["chance"], "bound": bound, "p_value": s["p_value"]}))
    return out


def scaffold_claims(task: str, rows: Sequence[MemberRow], scaffolds: Mapping[int, StoredScaffold]) -> list[Claim]:
    """Claim 4 (the rate of canonical scaffolds, pooled and per architecture x activation)
    and the task's own claims (claim 5)."""
    spec = SCAFFOLDS[task]
    threshold, margin = THRESHOLDS["scaffold_rate"], THRESHOLDS["scaffold_group_margin"]
    groups: dict[str, list[MemberRow]] = {}
    for r in rows:
        if r.task == task:
            groups.setdefault(f"{r.arch}/{r.activation}", []).append(r)
    groups = dict(sorted(groups.items()))
    met = {g: [scaffolds[r.member].canonical for r in members if r.passed and r.member in scaffolds]
           for g, members in groups.items()}
    details = {g: {"excluded": {s: sum(r.status == s for r in members if not r.passed) for s in ("failed", "diverged")},
                   **criteria_rates(spec.task, members, scaffolds)} for g, members in groups.items()}
    per_group = group_rate_claims(spec.claim, met, threshold, margin, details)
    failed = [c.group for c in per_group if c.verdict == "fail"]
    spread = betabinom_spread([sum(m) for m in met.values()], [len(m) for m in met.values()])
    everyone = [r for members in groups.values() for r in members]
    overall = rate_claim(spec.claim, "all", [m for g in met.values() for m in g], threshold,
                         {"homogeneity_p": homogeneity_p(list(met.values())), "icc": spread["icc"],
                          "overdispersion": spread["overdispersion"], "groups_failed": failed,
                          **criteria_rates(spec.task, everyone, scaffolds)})
    if failed:  # the claim holds in every group; a group shown below the threshold contradicts it
        overall = replace(overall, verdict="fail")
    extra = TASK_CLAIMS[task]([r for r in rows if r.task == task], scaffolds) if task in TASK_CLAIMS else []
    return [overall, *per_group, *extra]


def error_matched(rows: Sequence[MemberRow]) -> tuple[set[int], dict[str, tuple[float, float] | None]]:
    """The error-matched subset: per task, the passed members with a finite ``score`` inside
    the band common to every architecture x activation group that has one, from the largest
    group minimum to the smallest group maximum. Returns the member ids and, per task, the
    band (None when the groups' scores do not overlap)."""
    keep: set[int] = set()
    bands: dict[str, tuple[float, float] | None] = {}
    for task in sorted({r.task for r in rows}):
        scored = [(r, r.score) for r in rows if r.task == task and r.passed and r.score is not None
                  and math.isfinite(r.score)]
        by_group: dict[str, list[float]] = {}
        for r, score in scored:
            by_group.setdefault(f"{r.arch}/{r.activation}", []).append(score)
        if not by_group:
            bands[task] = None
            continue
        low, high = max(min(v) for v in by_group.values()), min(max(v) for v in by_group.values())
        bands[task] = (low, high) if low <= high else None
        keep |= {r.member for r, score in scored if low <= score <= high}
    return keep, bands


def criteria_rates(task: str, members: Sequence[MemberRow], scaffolds: Mapping[int, StoredScaffold],
                   ) -> dict[str, dict[str, dict[str, float]]]:
    """Per criterion of ``task``'s scaffold: ``{"rate", "ci_low", "ci_high", "n"}`` over the
    passed ``members``."""
    out: dict[str, dict[str, float]] = {}
    numbers = [scaffolds[r.member] for r in members if r.passed and r.member in scaffolds]
    for criterion in SCAFFOLDS[task].criteria:
        met = [n.met(criterion.name) for n in numbers]
        low, high = proportion_ci(sum(met), len(met))
        out[criterion.name] = {"rate": sum(met) / len(met) if met else math.nan, "ci_low": low, "ci_high": high,
                               "n": len(met)}
    return {"criteria": out} if out else {}


# ---------------------------------------------------------------------------- per task
#: Architectures pooled as "gated" in the ``cdi_modes`` claim.
GATED = ("gru", "lstm", "ugrnn")


def cdi_modes(rows: Sequence[MemberRow], scaffolds: Mapping[int, StoredScaffold]) -> list[Claim]:
    """``cdi_modes`` (Fig. 3f: vanilla networks integrate through fewer modes than gated
    ones): ``modes_90`` of the passed vanilla members against the passed gated members
    (:data:`GATED` pooled), one-sided Mann-Whitney U (:func:`.verdicts.rank_p`). ``pass``
    when p < ``ALPHA``; ``fail`` when the vanilla median is >= the gated median;
    ``inconclusive`` otherwise or when either side has fewer than ``MIN_MEMBERS``."""
    modes: dict[str, list[float]] = {"vanilla": [], "gated": []}
    for r in rows:
        if r.task != "cdi" or not r.passed or r.member not in scaffolds:
            continue
        value = scaffolds[r.member].numbers.modes_90
        side = "vanilla" if r.arch == "vanilla" else "gated" if r.arch in GATED else None
        if side and value is not None and math.isfinite(value):
            modes[side].append(float(value))
    if not any(r.task == "cdi" for r in rows):
        return []
    vanilla, gated = modes["vanilla"], modes["gated"]
    condition = f"one-sided Mann-Whitney U p < {ALPHA} (vanilla fewer modes than gated)"
    detail: dict[str, Any] = {"vanilla": vanilla, "gated": gated,
                              "median_vanilla": float(np.median(vanilla)) if vanilla else math.nan,
                              "median_gated": float(np.median(gated)) if gated else math.nan}
    n = len(vanilla) + len(gated)
    if min(len(vanilla), len(gated)) < MIN_MEMBERS:
        return [Claim("cdi_modes", "vanilla vs gated", math.nan, condition, "inconclusive", n,
                      detail={**detail, "note": f"fewer than {MIN_MEMBERS} networks on a side"})]
    p = rank_p(vanilla, gated)
    verdict: Verdict = ("pass" if p < ALPHA else "fail" if detail["median_vanilla"] >= detail["median_gated"]
                        else "inconclusive")
    return [Claim("cdi_modes", "vanilla vs gated", p, condition, verdict, n, detail=detail)]


#: A task's own claims beyond its scaffold's rates: task -> ``(rows, scaffolds) -> claims``
#: (rows of that task; scaffolds by member id).
TASK_CLAIMS: dict[str, Callable[[Sequence[MemberRow], Mapping[int, StoredScaffold]], list[Claim]]] = {
    "cdi": cdi_modes,
}
