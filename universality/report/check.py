"""``universality check MODULE:ATTR``: hold a new architecture against the reference population.

The cell is trained on each task at each of a preset's hidden sizes with its settings (by
default the reference's own, so the comparison is like for like) and analysed by the
pipeline exactly as the reference populations (:mod:`universality.pipeline.driver`), and
judged per task, each row a :class:`~universality.claims.Claim` with a verdict and a
reason (``detail["reason"]``):

* ``trainability``: passed / trained against the reference architectures' pooled rate
  (one-sided Fisher exact test: is the cell's rate lower?);
* one row per per-network criterion of the task's scaffold, and the scaffold claim
  (``canonical``), over the passed networks, against the reference's rate (same test);
* ``geometry_own``: the cell's geometry is its own (its networks are each other's SVCCA
  nearest neighbours more often than chance, permutation p < 0.01), with its placement
  (mean distance to each reference architecture, MDS figure);
* ``topology_among_reference``: its topology falls among the reference architectures'
  (the rate at which a new network's topology nearest neighbour is new, at most chance +
  0.15, as the topology claim).

Rounds stop early once trainability is decided: where a task is checked at one hidden size,
a further round of seeds (``min_passed``, ``max_rounds``) is not trained when every outcome
of it and the rounds after it would leave the trainability row a ``fail``
(:func:`trainability_decided`); the row's reason says so. A cell that passes 0/16 in the
first round against the reference's ~100% is not trained twice more to say the same.

Two-sample rows: ``fail`` when the cell's rate is significantly lower (p < ALPHA);
``pass`` when it is not and the sample could have shown it (zero of the cell's networks
would have been significant); ``inconclusive`` otherwise, or with no passed networks.

User code is contained: an exception raised while importing the cell's module, probing its
protocol, training it or analysing its networks becomes one :class:`CheckError` line (the
step, the exception, the protocol; exit 2). A failed step stores nothing, so the next
attempt reuses the directory.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from scipy import stats
from torch import Tensor, nn

from ..cells import ModuleCell
from ..cells.spec import import_attr
from ..claims.rules import THRESHOLDS
from ..claims.verdicts import (
    ALPHA,
    MIN_MEMBERS,
    Claim,
    Verdict,
    against_threshold,
    fisher_lower_p,
    mean_ci,
    proportion_ci,
)
from ..geometry import mds, nearest_neighbours, pairwise_distances, svcca_k
from ..pipeline.config import Preset, Shard
from ..pipeline.driver import analyze_run, record_analysis, train_shard
from ..pipeline.stages import AnalysisConfig, Settled, analysis_config, another_round, probe_states
from ..run.cache import load_scaffolds, load_states
from ..run.catalog import MemberRow, RunStore
from ..run.files import RunError, jsonable
from ..run.layout import RunLayout
from ..scaffold import SCAFFOLDS, StoredScaffold, distance_matrix
from ..training import DIVERGED
from .screen import SCREEN_DIR, RateChoice, ScreenError, default_grid, screen
from .tables import CHECK_MARKDOWN, Column, claim_table, number, render

T = TypeVar("T")

PROTOCOL = (
    "a cell is MODULE:ATTR naming a torch.nn.Module class or factory: ATTR(input_size, hidden_size) -> "
    "nn.Module whose forward(x [B, I], state [B, S]) returns the new state [B, S]; an optional int "
    "attribute state_size (default hidden_size); the readout reads the first hidden_size state entries"
)
log = logging.getLogger(__name__)

#: Exit codes of ``universality check``.
EXIT = {"pass": 0, "fail": 1, "bad input": 2, "inconclusive": 3}


@dataclass(frozen=True)
class Network:
    """One network of a task as the check reads it: its catalog ``row``, its ``scaffold``
    and, unless it diverged, its ``topology`` signature ``[D]`` and probe states ``[B, T, H]``."""

    row: MemberRow
    scaffold: StoredScaffold
    topology: np.ndarray | None = None
    states: Tensor | None = None

    def analysed(self) -> tuple[Tensor, np.ndarray]:
        """Its probe states and topology signature (a network that passed has both)."""
        if self.states is None or self.topology is None:
            raise ValueError(f"member {self.row.member} diverged: it has no analysis")
        return self.states, self.topology


class CheckError(ValueError):
    """The cell cannot be loaded, does not follow the protocol, or fails in training or
    analysis (one line, exit 2)."""


def _one_line(err: BaseException) -> str:
    """``Type: message`` of an exception raised by user code, on one line."""
    return " ".join(f"{type(err).__name__}: {err}".split())


@contextmanager
def _importable(directory: str) -> Iterator[None]:
    """``directory`` on ``sys.path`` for the block, as it was after."""
    saved = list(sys.path)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        yield
    finally:
        sys.path[:] = saved


def load_cell(spec: str) -> ModuleCell:
    """Import ``MODULE:ATTR`` (from the working directory too, which ``sys.path`` holds only
    while importing) and check the protocol."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CheckError(f"expected MODULE:ATTR, got {spec!r}; {PROTOCOL}")
    with _importable(os.getcwd()):
        try:
            importlib.import_module(module_name)
        except (Exception, SystemExit) as err:  # the user's module: a SyntaxError, or anything it raises on import
            raise CheckError(f"cannot import module {module_name!r} ({_one_line(err)}); {PROTOCOL}") from None
    try:
        obj = import_attr(module_name, attr)
    except AttributeError:
        raise CheckError(f"module {module_name!r} has no attribute {attr!r}") from None
    try:
        module = obj(3, 4)
        if not isinstance(module, nn.Module):
            raise TypeError(f"ATTR(3, 4) returned {type(module).__name__}, not an nn.Module")
        size = getattr(module, "state_size", 4)
        out = module(torch.zeros(2, 3), torch.zeros(2, size))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, size):
            raise TypeError(f"forward(x [2, 3], state [2, {size}]) returned {getattr(out, 'shape', type(out))}")
    except Exception as err:  # any failure here is the user's protocol, reported as such
        raise CheckError(f"{spec} does not follow the cell protocol ({_one_line(err)}); {PROTOCOL}") from None
    return ModuleCell(obj)


def universality_claims() -> frozenset[str]:
    """The rows that judge universality and decide the exit code: each task's scaffold claim
    and ``topology_among_reference``. Trainability (how often the cell learns), the single
    criteria (the scaffold claim's parts) and ``geometry_own`` (individuality, expected of a
    new architecture) are reported beside them."""
    return frozenset({spec.claim for spec in SCAFFOLDS.values()} | {"topology_among_reference"})


def exit_code(rows: Sequence[Claim]) -> int:
    """Over the universality rows (:func:`universality_claims`): 0 when every one passes, 1
    when one fails, 3 when none fails but one is inconclusive."""
    verdicts = {r.verdict for r in rows if r.claim in universality_claims()}
    return EXIT["fail"] if "fail" in verdicts else EXIT["inconclusive"] if "inconclusive" in verdicts else 0


def like_for_like(preset: Preset, reference: RunStore, tasks: Sequence[str]) -> list[str]:
    """How the preset's training differs from the reference members' (empty: like for like)."""
    refs = [r for r in reference.members() if r.task in tasks]
    differences = []
    hidden, wanted = sorted({r.hidden for r in refs}), sorted(preset.hidden)
    sizes = "/".join(map(str, wanted))
    if hidden != wanted:
        differences.append(f"hidden {sizes} vs the reference's {hidden}")
    if preset.name != "reference":
        differences.append(f"preset {preset.name!r} ({preset.steps} steps, hidden {sizes}) instead of "
                           "the reference preset")
    return differences


def cell_shards(cell: ModuleCell, preset: Preset, tasks: Sequence[str]) -> list[Shard]:
    """The shards a check trains: the cell on each task at each of the preset's hidden sizes."""
    return [Shard(task, cell.arch, "custom", hidden) for task in tasks for hidden in preset.hidden]


def check_cell(cell: ModuleCell, reference: RunStore, preset: Preset, tasks: tuple[str, ...], out: str | Path,
               device: str | torch.device = "cpu", grid: Sequence[float] | None = None) -> list[Claim]:
    """Train, analyse and judge ``cell`` (see the module docstring) at the learning rate its
    screen chooses per task from ``grid`` (default :func:`~.screen.default_grid`; one rate:
    no screen); the report goes to ``out/report/check.md`` (and ``check.json``) with its
    figures."""
    store = RunStore.create(out)
    device = torch.device(device)
    choices = train_cell(cell, reference, preset, tasks, store, device, grid)
    config = analysis_config(preset)
    record_analysis(store, config)
    _contained("analysing its networks", analyze_run, store, config, device)
    store.layout.figures.mkdir(parents=True, exist_ok=True)
    rows: list[Claim] = []
    sections: list[str] = []
    for task in tasks:
        new, refs = _members(store, task), _members(reference, task)
        train = _trainability(task, new, refs, choices[task], _stopped_early(preset, new, refs))
        rows.append(train)
        rows += _criteria(task, new, refs, train)
        rows += _placement(task, [n for n in new if n.row.passed], [n for n in refs if n.row.passed], store.layout)
        sections += _task_section(task, new, refs)
    _write(store, rows, sections, like_for_like(preset, reference, tasks), choices)
    return rows


def train_cell(cell: ModuleCell, reference: RunStore, preset: Preset, tasks: Sequence[str], store: RunStore,
               device: torch.device, grid: Sequence[float] | None = None) -> dict[str, RateChoice]:
    """Train what ``store`` lacks of the cell's networks: per task, the learning-rate screen
    (:mod:`.screen`) and the judged rounds at the chosen rate (stopping early once
    trainability is decided); returns each task's :class:`~.screen.RateChoice`."""
    rates = tuple(dict.fromkeys(default_grid(preset) if grid is None else grid))
    _refuse_other_settings(store, cell, preset, tasks, rates)
    choices: dict[str, RateChoice] = {}
    for task in tasks:
        choices[task] = _contained(f"screening learning rates on {task}", screen, cell, preset, task, rates,
                                   store.path / SCREEN_DIR, device)
        at = replace(preset, lr=choices[task].chosen)
        for shard in cell_shards(cell, at, (task,)):
            if shard.name in store.shards():
                _refuse_other_rate(store, shard.name, choices[task])
            else:
                _contained(f"training on {shard.task}", train_shard, store, at, shard, device, cell=cell,
                           settled=_settled(at, reference, shard.task))
    return choices


# --------------------------------------------------------------------------- rounds
def trainability_decided(preset: Preset, round_: int, k_new: int, n_new: int, k_ref: int, n_ref: int) -> float | None:
    """The trainability p-value of ``k_new / n_new`` passed against the reference's
    ``k_ref / n_ref`` when round ``round_`` (0-based) and the ones after it cannot change the
    row's ``fail``: every number of passes they could add, under the rounds' rule
    (:func:`~universality.pipeline.stages.another_round`, ``max_rounds`` rounds of
    ``l2 x seeds``), still gives Fisher p < ALPHA. None when the verdict is still open."""
    if n_ref == 0 or n_new == 0:
        return None
    size = len(preset.l2) * preset.seeds
    outcomes, frontier = set(), {(k_new, n_new)}
    for r in range(round_, preset.max_rounds):
        grown = set()
        for k, n in frontier:
            if another_round(preset, r, k):
                grown |= {(k + j, n + size) for j in range(size + 1)}
            else:
                outcomes.add((k, n))
        frontier = grown
    outcomes |= frontier
    # Fisher's lower-tail p grows with k at fixed n: the most passes per n decide
    worst: dict[int, int] = {}
    for k, n in outcomes:
        worst[n] = max(k, worst.get(n, k))
    if any(fisher_lower_p(k, n, k_ref, n_ref) >= ALPHA for n, k in worst.items()):
        return None
    return fisher_lower_p(k_new, n_new, k_ref, n_ref)


def _settled(preset: Preset, reference: RunStore, task: str) -> Settled | None:
    """The check's early stop for ``task``'s shard (:func:`trainability_decided` against the
    reference's pooled rate), or None where the task is checked at several hidden sizes (the
    row pools their shards, so one shard alone cannot decide it)."""
    if len(preset.hidden) != 1:
        return None
    refs = [r for r in reference.members() if r.task == task]
    k_ref, n_ref = sum(r.passed for r in refs), len(refs)

    def settled(round_: int, passed: int, trained: int) -> bool:
        p = trainability_decided(preset, round_, passed, trained, k_ref, n_ref)
        if p is not None:
            log.info("%s: stopped after round %d: trainability already decided (%d/%d, p = %.2g)",
                     task, round_, passed, trained, p)
        return p is not None

    return settled


def _stopped_early(preset: Preset, new: list[Network], refs: list[Network]) -> str | None:
    """Why the task's rounds stopped before the rounds' rule would have (as :func:`_settled`
    decided it in training), or None where they did not."""
    size, k_new, n_new = len(preset.l2) * preset.seeds, sum(n.row.passed for n in new), len(new)
    if len(preset.hidden) != 1 or size == 0 or n_new % size or n_new // size >= preset.max_rounds:
        return None
    rounds = n_new // size
    if not another_round(preset, rounds, k_new):
        return None
    k_ref, n_ref = sum(n.row.passed for n in refs), len(refs)
    p = trainability_decided(preset, rounds, k_new, n_new, k_ref, n_ref)
    if p is None:
        return None
    return (f"stopped after round {rounds} of {preset.max_rounds}: trainability already decided ({k_new}/{n_new} "
            f"against the reference's {k_ref / n_ref:.0%}, p = {p:.2g}; no outcome of the remaining rounds "
            f"could reach p >= {ALPHA})")


def _contained(step: str, run: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a step that calls the user's cell: an exception it raises becomes one
    :class:`CheckError` line (the step, the exception, the protocol). Errors of the run
    directory itself (:class:`RunError`) pass through. A failed step stores nothing, so the
    directory is reused as it is by the next attempt."""
    try:
        return run(*args, **kwargs)
    except RunError:
        raise
    except ScreenError as err:
        raise CheckError(str(err)) from None
    except Exception as err:
        raise CheckError(f"the cell failed while {step} ({_one_line(err)}); {PROTOCOL}") from None


def _refuse_other_settings(store: RunStore, cell: ModuleCell, preset: Preset, tasks: Sequence[str],
                           rates: Sequence[float]) -> None:
    """Raise :class:`CheckError` when ``store`` holds networks that this check would not
    have trained for the tasks it judges (another cell, size, preset, L2 or a rate outside
    the grid): they would be judged with the new ones. Shards of other tasks are not judged
    (a check of fewer tasks into the directory of a longer one)."""
    expected = {s.name for s in cell_shards(cell, preset, tasks)}
    for name in store.shards():
        rows, record = store.members(name), store.shard_record(name)
        if record.task not in tasks:
            continue
        l2, lr = {r.l2 for r in rows}, {r.lr for r in rows}
        trained_by = record.train_config.get("preset")
        if name not in expected or trained_by != preset.name or not l2 <= set(preset.l2) or not lr <= set(rates):
            raise CheckError(
                f"{store.path} already holds networks trained with other settings ({name}: preset "
                f"{trained_by!r}, L2 {sorted(l2)}, lr {sorted(lr)}; this check: {cell.arch}, preset "
                f"{preset.name!r}, hidden {'/'.join(map(str, preset.hidden))}, L2 {list(preset.l2)}, lr grid "
                f"{list(rates)}); they would be judged with the new ones: pass another --out or remove that "
                "directory")


def _refuse_other_rate(store: RunStore, shard: str, choice: RateChoice) -> None:
    """Raise :class:`CheckError` when ``shard``'s stored networks were trained at another rate
    than the screen now chooses (e.g. the screen was removed and trained again)."""
    lr = sorted({r.lr for r in store.members(shard)})
    if lr != [choice.chosen]:
        raise CheckError(f"{store.path}: {shard} was trained at lr {lr}, but the screen now chooses "
                         f"{choice.chosen:g} ({choice.summary()}); remove that directory to check again")


# --------------------------------------------------------------------------- rows
def _rate_row(check: str, task: str, k_new: int, n_new: int, k_ref: int, n_ref: int, what: str,
              detail: dict[str, Any]) -> Claim:
    """A two-sample rate row (module docstring): the cell's ``k_new / n_new`` against the
    reference's ``k_ref / n_ref``."""
    low, high = proportion_ci(k_new, n_new)
    cond = f"not lower than the reference's {k_ref}/{n_ref} (Fisher p >= {ALPHA})"
    ref_rate = k_ref / n_ref if n_ref else math.nan
    if n_new == 0 or n_ref == 0:
        reason = "no network of the cell passed the task: nothing to judge (see trainability)" if n_new == 0 else \
            "the reference has no networks to compare with"
        return Claim(check, task, math.nan, cond, "inconclusive", n_new, low, high,
                     {**detail, "reference_rate": ref_rate, "reason": reason})
    p = fisher_lower_p(k_new, n_new, k_ref, n_ref)
    powered = fisher_lower_p(0, n_new, k_ref, n_ref) < ALPHA
    verdict: Verdict = "fail" if p < ALPHA else "pass" if powered else "inconclusive"
    reason = {
        "fail": f"{what} in {k_new}/{n_new} of the cell's networks, significantly fewer than the reference's "
                f"{ref_rate:.0%} (p = {p:.2g})",
        "pass": f"{what} in {k_new}/{n_new} of the cell's networks, not significantly fewer than the reference's "
                f"{ref_rate:.0%} (p = {p:.2g})",
        "inconclusive": f"{k_new}/{n_new}: too few networks to tell a lower rate from the reference's "
                        f"{ref_rate:.0%} (even 0/{n_new} would give p >= {ALPHA})",
    }[verdict]
    return Claim(check, task, k_new / n_new, cond, verdict, n_new, low, high,
                 {**detail, "reference_rate": ref_rate, "p_value": p, "reason": reason})


def _trainability(task: str, new: list[Network], refs: list[Network], choice: RateChoice,
                  stopped: str | None = None) -> Claim:
    """Passed / trained (diverged included) against the reference's pooled rate, at the rate
    ``choice`` chose; ``stopped``: why the rounds stopped early (:func:`_stopped_early`),
    added to the reason."""
    scores = [n.row.score for n in new if n.row.score is not None]
    archs = sorted({n.row.arch for n in refs})
    by_arch = {a: f"{sum(n.row.passed for n in refs if n.row.arch == a)}/{sum(n.row.arch == a for n in refs)}"
               for a in archs}
    steps = [n.row.steps for n in new if n.row.passed]
    detail = {"scores": scores, "statuses": [n.row.status for n in new], "reference_by_arch": by_arch,
              "lr": choice.chosen, "lr_screen": choice.as_dict()["screen"],
              "median_steps_passed": float(np.median(steps)) if steps else None}
    row = _rate_row("trainability", task, sum(n.row.passed for n in new), len(new),
                    sum(n.row.passed for n in refs), len(refs), "the task was learned", detail)
    row.detail["reason"] = f"{row.detail['reason']}; {choice.summary()}"
    if stopped is not None:
        row.detail["stopped_early"] = stopped
        row.detail["reason"] = f"{row.detail['reason']}; {stopped}"
    return row


def _criteria(task: str, new: list[Network], refs: list[Network], train: Claim) -> list[Claim]:
    """The scaffold claim (every headline criterion; :func:`_scaffold_row`) and one row per
    criterion of ``task``'s scaffold, over passed networks."""
    spec = SCAFFOLDS[task]
    trained, new, refs = len(new), [n for n in new if n.row.passed], [n for n in refs if n.row.passed]

    def met(networks: list[Network], name: str | None) -> int:
        if name is None:
            return sum(n.scaffold.canonical for n in networks)
        return sum(n.scaffold.met(name) for n in networks)

    out = [_scaffold_row(_rate_row(spec.claim, task, met(new, None), len(new), met(refs, None), len(refs),
                                   "the scaffold (every headline criterion) holds", {}),
                         [n.scaffold for n in new], trained, train)]
    for c in spec.criteria:
        out.append(_rate_row(f"criterion {c.name}", task, met(new, c.name), len(new), met(refs, c.name), len(refs),
                             f"{c.name} holds", {"statement": c.statement, "headline": c.headline}))
    return out


def _scaffold_row(row: Claim, passed: list[StoredScaffold], trained: int, train: Claim) -> Claim:
    """The scaffold claim says what happened: the cell cannot learn the task (no network
    passed, and the trainability row fails: ``fail``), trains too rarely to judge
    (``inconclusive``), or learns it with the universal scaffold (``pass``) or a different
    one (``fail``), in words (:meth:`~universality.scaffold.ScaffoldSpec.describe`)."""
    n = len(passed)
    if n == 0:
        if train.verdict == "fail":
            reason = (f"cannot learn the task: 0/{trained} networks passed against the reference's "
                      f"{train.detail['reference_rate']:.0%} (p = {train.detail['p_value']:.2g})")
            return replace(row, verdict="fail", detail={**row.detail, "outcome": "cannot learn", "reason": reason})
        reason = (f"no network of the cell passed the task (0/{trained}); too few trained to say it cannot learn "
                  "it (see trainability)")
        return replace(row, detail={**row.detail, "outcome": "none passed", "reason": reason})
    outcome = SCAFFOLDS[row.group].describe(passed)
    row.detail.update(outcome=outcome.kind, kinds=outcome.kinds)
    if row.verdict == "inconclusive":
        row.detail["reason"] = (f"trains too rarely to judge: {n} of {trained} networks passed, and even none of "
                                f"{n} with the scaffold would not be significantly fewer than the reference's "
                                f"{row.detail['reference_rate']:.0%}; they show {outcome.reason}")
    elif row.verdict == "pass":
        said = outcome.reason if outcome.universal else \
            f"{sum(s.canonical for s in passed)}/{n} networks, the most common kind being {outcome.reason}"
        row.detail["reason"] = f"learns the task with the universal scaffold: {said}; {row.detail['reason']}"
    else:  # the most common of the other kinds: what the cell learned instead
        spec = SCAFFOLDS[row.group]
        others = [spec.classify(s) for s in passed if not s.canonical]
        kind, count = Counter(k for k, _ in others).most_common(1)[0]
        phrase = Counter(p for k, p in others if k == kind).most_common(1)[0][0]
        row.detail["reason"] = (f"learns the task with a different scaffold: {phrase} ({count}/{n} networks; the "
                                f"universal one in {sum(s.canonical for s in passed)}/{n}); {row.detail['reason']}")
    return row


def _own_nearest(nearest: np.ndarray, is_new: np.ndarray) -> np.ndarray:
    """Per new network, the fraction of its nearest other networks (ties by expectation)
    that are new: ``nearest [N, N]`` (:func:`~universality.geometry.nearest_neighbours`),
    ``is_new [N]`` bool -> ``[n_new]``."""
    return (nearest & is_new[None, :]).sum(1)[is_new] / nearest.sum(1)[is_new]


def _own_p(nearest: np.ndarray, is_new: np.ndarray, n_permutations: int = 2000) -> float:
    """Permutation p-value that the new networks are each other's nearest neighbours more
    often than a random set of as many networks (``scipy.stats.permutation_test``)."""
    def statistic(flags: np.ndarray) -> float:
        return float(_own_nearest(nearest, flags.astype(bool)).mean())

    return float(stats.permutation_test((is_new.astype(np.int64),), statistic, permutation_type="pairings",
                                        n_resamples=n_permutations, alternative="greater",
                                        rng=np.random.default_rng(0)).pvalue)


def _placement(task: str, new: list[Network], refs: list[Network], layout: RunLayout) -> list[Claim]:
    """``geometry_own`` and ``topology_among_reference`` with the placement figures."""
    if len(new) < MIN_MEMBERS or not refs:
        reason = ("no network of the cell learned the task: nothing to place (see the scaffold row)" if not new else
                  f"needs >= {MIN_MEMBERS} passed networks of the cell and a reference (has {len(new)})")
        return [Claim(name, task, math.nan, cond, "inconclusive", len(new), detail={"reason": reason})
                for name, cond in (("geometry_own", f"own nearest neighbours above chance, p < {ALPHA}"),
                                   ("topology_among_reference",
                                    f"own nearest CI <= chance + {THRESHOLDS['topology_margin_over_chance']}"))]
    everyone = refs + new
    is_new = np.array([False] * len(refs) + [True] * len(new))
    states, topology = zip(*(n.analysed() for n in everyone), strict=True)
    reps = [x.reshape(-1, x.shape[-1]) for x in states]
    k = svcca_k(reps, AnalysisConfig.k)
    matrices = {"geometry": pairwise_distances(reps, "svcca", k=k).numpy(),
                "topology": distance_matrix(SCAFFOLDS[task], np.stack(topology))}
    chance = (len(new) - 1) / (len(everyone) - 1)
    bound = chance + THRESHOLDS["topology_margin_over_chance"]
    out = []
    for name, d in matrices.items():
        by_arch = {a: float(d[np.ix_(is_new, np.array([n.row.arch == a for n in everyone]))].mean())
                   for a in sorted({n.row.arch for n in refs})}
        nearest = nearest_neighbours(d)
        scores = _own_nearest(nearest, is_new)
        low, high = mean_ci(scores)
        p = _own_p(nearest, is_new)
        placement = {"chance": chance, "p_value": p, "mean_distance_by_arch": by_arch,
                     "nearest_reference_architecture": min(by_arch, key=by_arch.__getitem__)}
        if name == "geometry":
            verdict: Verdict = "pass" if p < ALPHA else "fail" if high < bound else "inconclusive"
            cond = f"own nearest neighbours above chance, p < {ALPHA}"
            reason = {"pass": "the cell's networks are each other's geometric nearest neighbours (own geometry)",
                      "fail": "the cell's geometry falls among the reference architectures' (not its own)",
                      "inconclusive": "the cell's geometry neither clearly its own nor clearly shared"}[verdict]
            check = "geometry_own"
        else:
            verdict = against_threshold(low, high, bound, at_least=False, n=len(new))
            cond = f"own nearest CI <= chance + {THRESHOLDS['topology_margin_over_chance']}"
            reason = {"pass": "the cell's topology is found among the reference architectures' (universal)",
                      "fail": "the cell's topology separates from the reference architectures'",
                      "inconclusive": "the interval straddles chance + margin: too few networks to tell"}[verdict]
            check = "topology_among_reference"
        out.append(Claim(check, task, float(scores.mean()), cond, verdict, len(new), low, high,
                         {**placement, "reason": reason}))
        emb = mds(d, seed=0) if np.any(d > 0) else np.zeros((len(d), 2))
        _plot(emb, everyone, len(refs), layout.figure(f"{task}_{name}_placement.png"), f"{task}: {name} placement")
    return out


def _members(store: RunStore, task: str) -> list[Network]:
    """The networks of ``task`` (diverged ones too, without states or topology)."""
    spec, out = SCAFFOLDS[task], []
    for shard in store.shards():
        if store.shard_record(shard).task != task:
            continue
        numbers, tensors = load_scaffolds(store, shard)
        # stored reference results keep weights, not states: recompute on the same probe trials
        if store.layout.analysis("states", shard).is_file():
            states = load_states(store, shard)
        else:
            states = probe_states(store.load_population(shard), AnalysisConfig())
        for r in store.members(shard):
            scaffold = spec.read(numbers[r.idx])
            if r.status == DIVERGED:
                out.append(Network(r, scaffold))
            else:
                out.append(Network(r, scaffold, tensors["topology"][r.idx].numpy(), states[r.idx, ..., : r.hidden]))
    return out


# --------------------------------------------------------------------------- report
def _task_section(task: str, new: list[Network], refs: list[Network]) -> list[str]:
    """check.md's training table (the cell beside each reference architecture) and each
    new network's scaffold criteria."""
    groups: dict[str, list[Network]] = {"NEW": new}
    for n in refs:
        groups.setdefault(f"{n.row.arch}/{n.row.activation}", []).append(n)

    def median_score(networks: list[Network]) -> str:
        scores = [n.row.score for n in networks if n.row.score is not None and n.row.status != DIVERGED]
        return f"{np.median(scores):.3g}" if scores else "n/a"

    def median_steps(networks: list[Network]) -> str:
        steps = [n.row.steps for n in networks if n.row.passed]
        return f"{np.median(steps):.0f}" if steps else "n/a"

    training: list[Column[tuple[str, list[Network]]]] = [
        Column("architecture", lambda g: g[0]),
        Column("passed / trained", lambda g: f"{sum(n.row.passed for n in g[1])}/{len(g[1])}"),
        Column("diverged", lambda g: str(sum(n.row.status == DIVERGED for n in g[1]))),
        Column("median score", lambda g: median_score(g[1])),
        Column("median steps (passed)", lambda g: median_steps(g[1])),
    ]

    def criterion(name: str) -> Column[Network]:
        return Column(name, lambda n: "n/a" if n.scaffold.diverged else str(n.scaffold.met(name)))

    networks: list[Column[Network]] = [
        Column("member", lambda n: str(n.row.member)),
        Column("status", lambda n: n.row.status),
        Column("score", lambda n: number(n.row.score)),
        Column("canonical", lambda n: str(n.scaffold.canonical)),
        *(criterion(c.name) for c in SCAFFOLDS[task].criteria),
    ]
    return [f"## {task}", "", *render(training, groups.items(), "markdown"), "", "The cell's networks:", "",
            *render(networks, new, "markdown"), ""]


def _plot(embedding: np.ndarray, networks: list[Network], n_ref: int, path: Path, title: str) -> None:
    """MDS panels by architecture and activation, the new members (after ``n_ref``) as stars."""
    from .figures import common as plots  # matplotlib only here

    plots.mds_by_label(embedding, [n.row.arch for n in networks], [n.row.activation for n in networks], path,
                       title, highlight=[i >= n_ref for i in range(len(networks))])


def _write(store: RunStore, rows: list[Claim], sections: list[str], differences: list[str],
           choices: dict[str, RateChoice]) -> None:
    layout = store.layout
    layout.check_json.write_text(json.dumps([r.as_dict() for r in rows], indent=1, default=jsonable))
    judged = universality_claims()
    code = exit_code(rows)
    verdict = {v: k for k, v in EXIT.items()}[code]
    lines = ["# Architecture check", "",
             f"**Universality: {verdict}** (exit {code}), from the universality rows: each task's scaffold claim "
             "and `topology_among_reference`. Trainability, the single criteria and `geometry_own` (individuality) "
             "are reported beside them and do not decide it.", ""]
    if differences:
        lines += ["**Not like for like**: the cell was trained with other settings than the reference "
                  f"({'; '.join(differences)}). A failure may be the training, not the architecture.", ""]
    lines += ["## Universality", "", *claim_table([r for r in rows if r.claim in judged], CHECK_MARKDOWN, "markdown"),
              "", "## Trainability", "",
              "Passed / trained at the learning rate the screen chose, against the reference architectures' pooled "
              "rate. A low rate beside passing universality rows reads: the cell learns the task less often than "
              "the reference architectures, and the networks that learn it have the universal scaffold.", "",
              *claim_table([r for r in rows if r.claim == "trainability"], CHECK_MARKDOWN, "markdown"), "",
              *(f"- {task}: {choice.summary()}" for task, choice in choices.items()), "",
              "## The scaffold's criteria and the geometry", "",
              *claim_table([r for r in rows if r.claim not in judged and r.claim != "trainability"], CHECK_MARKDOWN,
                           "markdown"), "", *sections]
    placements = sorted(layout.figures.glob("*_placement.png"))
    lines += [f"![{p.stem}]({p.relative_to(layout.report).as_posix()})" for p in placements]
    layout.check_md.write_text("\n".join(lines) + "\n")
