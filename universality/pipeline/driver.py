"""``universality run``: plan -> submit -> write, the one writer of a run directory.

The driver (the process running :func:`run_preset`) plans what is missing (shards not
trained, analysis files not current: :mod:`universality.run.cache`), submits the work as
jobs (:mod:`.stages`: plain data in and out) to a backend (:mod:`.backends`: this process,
a local process pool or a Ray cluster) and writes what comes back: trained shards in preset
order, so that member ids, and with them every result, do not depend on which worker
finished first; then each shard's analysis files, then each task's geometry and topology.
The command line's lock (:mod:`universality.run.lock`) keeps a second driver out of the
directory, and :func:`open_run` refuses a directory whose shards another preset's settings
trained. Progress goes to one callback, ``on_event(Event)``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..cells import Cell
from ..population import Population
from ..run import cache, files
from ..run.catalog import MemberRow, RunStore
from ..run.files import RunError
from ..tasks import task_from_config
from ..training import DIVERGED, Progress, TrainResult
from .backends import Backend, InlineBackend, LocalBackend
from .config import Preset, Shard
from .stages import (
    SCAFFOLD_FORMAT,
    Analysed,
    AnalysisConfig,
    AnalysisJob,
    Settled,
    TaskJob,
    TrainedShard,
    TrainJob,
    alive,
    analyse_job,
    analysis_config,
    another_round,
    task_job,
    train_config,
    train_job,
    train_population,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A finished piece of work: ``kind`` ``trained``, ``analysed`` (a shard), ``current``
    (a shard whose analysis was already current) or ``task`` (a task's geometry and
    topology); ``done`` when a shard is finished for this run; ``where`` it ran."""

    kind: str
    name: str
    done: bool = False
    where: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" + (f" on {self.where}" if self.where else "")


#: The one progress callback of the driver.
OnEvent = Callable[[Event], None]


def default_workers(device: torch.device) -> int:
    """Worker processes for a run: one single-threaded worker per CPU core on the CPU
    (small recurrent ops are far slower multi-threaded), one on an accelerator."""
    return max(1, os.cpu_count() or 1) if device.type == "cpu" else 1


def describe(origin: dict[str, Any]) -> str:
    """``host`` (``node_ip``, node ``abcd1234``) pid ``N``: where a job ran, for the log."""
    node = f" ({origin['node_ip']}, node {origin['node'][:8]})" if "node" in origin else ""
    return f"{origin.get('host', '?')}{node} pid {origin.get('pid', '?')}"


# ------------------------------------------------------------------------------ writing
def write_trained(store: RunStore, trained: TrainedShard) -> None:
    """Save a shard trained elsewhere, with the provenance of where it ran."""
    store.save_population(trained.shard, trained.population(), trained.train_config, trained.result,
                          origin=trained.origin)


def write_analysed(store: RunStore, analysed: Analysed) -> None:
    """Write a shard's or task's new analysis files (in the order they were made) and
    record their checksums."""
    for kind, data in analysed.files.items():
        cache.write(store, kind, analysed.name, data)


def train_shard(store: RunStore, preset: Preset, shard: Shard, device: torch.device,
                progress: Progress | None = None, cell: Cell | None = None,
                settled: Settled | None = None) -> tuple[Population, TrainResult]:
    """Train one shard in this process (``cell``: instead of the built-in one the shard
    names; ``settled``: see :func:`~.stages.train_population`) and save it in ``store``."""
    pop, result, config = train_population(preset, shard, device, progress, cell, settled)
    store.save_population(shard.name, pop, config, result, device=device)
    return pop, result


# ------------------------------------------------------------------------------ planning
class Plan:
    """What the analysis files of ``store`` should be with ``config``: each file's source
    (:func:`universality.run.cache.plan`) from the settings of each kind. ``shards``: plan
    these shards' own files only (a task's files need all of its shards)."""

    def __init__(self, store: RunStore, config: AnalysisConfig, shards: list[str] | None = None) -> None:
        self.store, self.config = store, config
        self.records = {s: store.shard_record(s) for s in (store.shards() if shards is None else shards)}
        self.rows = {s: store.members(s) for s in self.records}
        self.tasks: dict[str, list[str]] = {}
        for shard, record in self.records.items():
            self.tasks.setdefault(record.task, []).append(shard)
        settings = {(kind, name): self._settings(kind, name) for kind, k in cache.KINDS.items()
                    for name in (self.tasks if k.per == "task" else self.records)}
        self.sources = cache.plan(store, self.tasks, settings)

    def _settings(self, kind: str, name: str) -> dict[str, Any]:
        """The settings of ``kind`` for one shard or task (its cache key, with what it needs)."""
        config = self.config
        if kind == "states":
            return {"n_trials": config.n_trials, "seed": config.trial_seed}
        if kind == "fixed_points":
            record = self.records[name]
            n_conditions = len(task_from_config(record.task_config).conditions())
            return {"fixed_points": config.fixed_point_config(record.task, n_conditions).as_dict(),
                    "alive": alive(self.rows[name])}
        if kind == "scaffold":
            return {"homology_points": config.homology_points, "format": SCAFFOLD_FORMAT}
        ids = [r.member for r in self.members(name)]
        if kind == "geometry":
            return {"members": ids, "metrics": list(config.metrics), "k": config.k,
                    "svcca_ks": list(config.svcca_ks), "full_state": config.full_state}
        return {"members": ids, "format": SCAFFOLD_FORMAT}

    def members(self, task: str) -> list[MemberRow]:
        """The non-diverged member rows of ``task``'s shards, shard by shard."""
        return [r for s in self.tasks[task] for r in self.rows[s] if r.status != DIVERGED]

    def stale(self, per: str, name: str, warn: bool = False) -> dict[str, str]:
        """The kinds of one shard or task (``per``) whose file is not current: kind -> source."""
        return {k.name: self.sources[(k.name, name)] for k in cache.KINDS.values()
                if k.per == per and not cache.is_current(self.store, k.name, name, self.sources[(k.name, name)], warn)}

    def analysis_job(self, shard: str, device: str, threads: int) -> AnalysisJob | None:
        """The job computing a shard's stale files (None: all current)."""
        todo = self.stale("shard", shard, warn=True)
        if not todo:
            return None
        record, rows = self.records[shard], self.rows[shard]
        weights = files.read_checked(self.store.layout.file(record.file), record.sha256)
        needed = {n for k in todo for n in cache.KINDS[k].needs} - set(todo) - {cache.WEIGHTS}
        inputs = {k: cache.read_bytes(self.store, k, shard) for k in needed}
        return AnalysisJob(shard, record.cell, record.task_config, record.hidden, [r.spec() for r in rows],
                           alive(rows), weights, todo, inputs, self.config, device, threads)

    def task_job(self, task: str, device: str, threads: int) -> TaskJob | None:
        """The job computing a task's stale geometry and topology (None: both current)."""
        todo = self.stale("task", task, warn=True)
        if not todo:
            return None
        members = [(r.member, r.hidden, r.shard, r.idx) for r in self.members(task)]
        shards = self.tasks[task]
        states = {s: cache.read_bytes(self.store, "states", s) for s in shards} if "geometry" in todo else {}
        scaffold = {s: cache.read_bytes(self.store, "scaffold", s) for s in shards} if "topology" in todo else {}
        return TaskJob(task, members, states, scaffold, todo, self.config, device, threads)


# ------------------------------------------------------------------------------ the loop
def run_jobs(store: RunStore, backend: Backend, config: AnalysisConfig, device: str,
             train: list[TrainJob] | None = None, on_event: OnEvent | None = None, analyse: bool = True) -> None:
    """Train ``train``'s shards and, with ``analyse``, every shard's and task's stale analyses,
    as jobs on ``backend``; write each result as it arrives (trained shards in the order of
    ``train``, each analysed once written; the tasks once every shard is)."""
    order = list(train or [])
    queue = list(order)
    pending: dict[Future[Any], tuple[str, str]] = {}
    arrived: dict[str, TrainedShard] = {}
    trained = {j.shard.name for j in order}

    def emit(event: Event) -> None:
        log.info("%s", event)
        if on_event:
            on_event(event)

    def submit_training() -> None:
        while queue and sum(kind == "train" for kind, _ in pending.values()) < backend.slots:
            job = queue.pop(0)
            pending[backend.submit(train_job, job)] = ("train", job.shard.name)

    def submit_analysis(shard: str) -> None:
        job = Plan(store, config, [shard]).analysis_job(shard, device, backend.threads)
        if job is None:
            emit(Event("current", shard, done=True))
        else:
            pending[backend.submit(analyse_job, job)] = ("analyse", shard)

    def submit_tasks() -> None:
        plan = Plan(store, config)
        for task in plan.tasks:
            job = plan.task_job(task, device, backend.threads)
            if job is not None:
                pending[backend.submit(task_job, job)] = ("task", task)

    try:
        if analyse:
            for shard in store.shards():
                if shard not in trained:
                    submit_analysis(shard)
        submit_training()
        tasks_due = analyse
        while pending or tasks_due:
            if not pending:  # every shard trained and analysed (nothing waits: a free slot takes training first)
                submit_tasks()
                tasks_due = False
                continue
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                kind, name = pending.pop(future)
                result = future.result()
                if kind == "train":
                    arrived[name] = result
                    while order and order[0].shard.name in arrived:
                        trained_shard = arrived.pop(order.pop(0).shard.name)
                        write_trained(store, trained_shard)
                        emit(Event("trained", trained_shard.shard, done=not analyse,
                                   where=describe(trained_shard.origin)))
                        if analyse:
                            submit_analysis(trained_shard.shard)
                else:
                    write_analysed(store, result)
                    emit(Event("analysed" if kind == "analyse" else "task", name, done=kind == "analyse",
                               where=describe(result.origin)))
            submit_training()
    finally:
        for future in pending:
            future.cancel()


def analyze_run(store: RunStore, config: AnalysisConfig, device: str | torch.device = "cpu",
                on_event: OnEvent | None = None, backend: Backend | None = None) -> None:
    """Every shard's states, fixed points and scaffolds, then geometry and topology per
    task, where not current (in this process unless a ``backend`` is given). Damaged
    weights are refused."""
    damaged = store.damage(analysis=False)
    if damaged:
        raise RunError(f"{store.path}: damaged weights ({'; '.join(map(str, damaged))}); `universality run` with "
                       "the run's preset retrains them from their seeds")
    run_jobs(store, backend or InlineBackend(), config, str(device), on_event=on_event)


def repair_plan(store: RunStore, preset: Preset) -> set[str]:
    """The shards of ``store`` whose weights are damaged (missing or altered): each is
    logged, every analysis file computed from its weights (:func:`universality.run.cache.dependents`:
    its own and its task's) is forgotten so that it is recomputed, and its name returned to
    be retrained from its seeds (training is deterministic). Damaged weights of a shard the
    preset does not define cannot be retrained: :class:`RunError`."""
    names = {s.name for s in preset.shards()}
    damaged = {d.owner: d for d in store.damage(analysis=False)}
    foreign = sorted(set(damaged) - names)
    if foreign:
        raise RunError(f"{store.path}: weights of shard(s) {', '.join(foreign)} are damaged and not part of preset "
                       f"{preset.name!r}, so they cannot be retrained here")
    for shard, damage in damaged.items():
        log.warning("shard %s: %s; retraining it from its seeds and recomputing its analyses", shard, damage)
        task = store.shard_record(shard).task
        for kind in cache.dependents(cache.WEIGHTS):
            cache.forget(store, kind, shard if cache.KINDS[kind].per == "shard" else task)
    return set(damaged)


def other_settings(store: RunStore, preset: Preset) -> list[str]:
    """How the shards stored in ``store`` differ from what ``preset`` trains, one entry per
    differing shard (empty: none differs): a shard the preset does not define, another task
    configuration, other training settings (``TrainConfig``) or other members (seed, L2, lr,
    and the rounds of :func:`~.stages.another_round` given the stored pass results). A
    setting an older catalog lacks differs too (the code that trained it may not have had
    it). The preset's name is not compared: the same settings under another name train the
    same networks."""
    shards = {s.name: s for s in preset.shards()}
    wanted = train_config(preset).as_dict()
    out = []
    for name in store.shards():
        if name not in shards:
            out.append(f"shard {name} is not part of preset {preset.name!r}")
            continue
        record = store.shard_record(name)
        stored = {**record.task_config, **record.train_config}
        diffs = [f"{k} {stored.get(k)!r} -> {v!r}"
                 for k, v in {**preset.task(shards[name].task).config(), **wanted}.items() if stored.get(k) != v]
        rows, expected, passed = store.members(name), [], 0
        for round_ in range(preset.max_rounds):
            if not another_round(preset, round_, passed):
                break
            seeds, l2s = preset.round_members(round_)
            expected += [(seed, l2, preset.lr) for seed, l2 in zip(seeds, l2s, strict=True)]
            passed += sum(r.passed for r in rows[len(expected) - len(seeds): len(expected)])
        have = [(r.seed, r.l2, r.lr) for r in rows]
        if have != expected:
            diffs.append(f"members (seed, l2, lr) {_span(have)} -> {_span(expected)}")
        if diffs:
            out.append(f"{name}: {', '.join(diffs)}")
    return out


def _span(members: list[tuple[int, float, float]]) -> str:
    """``members`` (seed, l2, lr) in a few words: their count, seed range, L2 and lr values."""
    if not members:
        return "none"
    seeds = [m[0] for m in members]
    return (f"{len(members)} (seeds {min(seeds)}-{max(seeds)}, l2 {sorted({m[1] for m in members})}, "
            f"lr {sorted({m[2] for m in members})})")


def open_run(out: str | Path, preset: Preset) -> RunStore:
    """The run directory ``out`` for ``preset``, created or opened to write to (a damaged
    catalog restored from its backup: :meth:`RunStore.create`); :class:`RunError` when it
    holds shards trained with other settings (:func:`other_settings`): they would be
    reported as the preset's."""
    store = RunStore.create(out)
    differences = other_settings(store, preset)
    if differences:
        more = f" (and {len(differences) - 2} more)" if len(differences) > 2 else ""
        raise RunError(f"{store.path} holds networks trained with other settings than preset {preset.name!r}: "
                       f"{'; '.join(differences[:2])}{more}; rerun with the preset they were trained with, or pass "
                       "another --out")
    return store


#: The catalog ``meta`` key recording the fixed-point candidate budget of the run's analysis.
CANDIDATES_KEY = "analysis_candidate_budget"


def record_analysis(store: RunStore, config: AnalysisConfig) -> None:
    """Record in the catalog, before analysing with ``config``, its candidate budget (the
    one analysis setting a command or preset changes): :func:`stale_analyses` judges the
    analysis files against it."""
    if store.meta(CANDIDATES_KEY, "") != str(config.candidate_budget):
        store.set_meta(CANDIDATES_KEY, str(config.candidate_budget))


def recorded_analysis(store: RunStore) -> AnalysisConfig:
    """The analysis settings last recorded (the default for runs analysed before it was)."""
    budget = store.meta(CANDIDATES_KEY, str(AnalysisConfig.candidate_budget))
    return AnalysisConfig(candidate_budget=int(budget))


def stale_analyses(store: RunStore) -> list[str]:
    """The analyses of ``store`` that are not current: computed for other weights (another
    shard config hash), other members or other settings than those recorded
    (:func:`recorded_analysis`), or not computed at all; nothing is computed. Damaged files
    must be ruled out first (:meth:`RunStore.damage`): they read as stale."""
    plan = Plan(store, recorded_analysis(store))
    stale = [f"shard {s}" for s in plan.records if plan.stale("shard", s)]
    if stale:
        return stale
    return [f"{kind} {task}" for task in plan.tasks for kind in plan.stale("task", task)]


def run_preset(preset: Preset, out: str, device: torch.device, on_event: OnEvent | None = None,
               workers: int | None = None, backend: Backend | None = None, train_only: bool = False) -> Path | None:
    """Train every shard of ``preset`` not yet stored in ``out`` (and retrain damaged ones),
    analyse what is not current, evaluate the claims and write the report; return its path.

    Jobs run on ``backend`` (e.g. a :class:`~.backends.RayBackend`) or, without one, in
    ``workers`` single-threaded local processes (default :func:`default_workers`), or in
    this process when that is 1. ``train_only``: train what is missing and stop (no
    analysis, no report; returns None)."""
    from ..report.report import write_report

    store = open_run(out, preset)
    workers = default_workers(device) if workers is None else workers
    damaged = repair_plan(store, preset)
    done = set(store.shards()) - damaged
    config = analysis_config(preset)
    if not train_only:
        record_analysis(store, config)
    jobs = [TrainJob(preset, s, str(device)) for s in preset.shards() if s.name not in done]
    if backend is None and workers > 1 and len(preset.shards()) > 1:
        with LocalBackend(workers) as local:
            run_jobs(store, local, config, str(device), jobs, on_event, analyse=not train_only)
    else:
        run_jobs(store, backend or InlineBackend(), config, str(device), jobs, on_event, analyse=not train_only)
    return None if train_only else write_report(store)
