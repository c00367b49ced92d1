"""``universality run``: train every shard of a preset, analyse, report (resumable).

One writer: only the driver (the process running :func:`run_preset`) writes the catalog
and the run directory. Worker processes, local (``--workers N``) or on a Ray cluster
(:mod:`.ray_backend`), run the same two jobs, :func:`train_to_bytes` and
:func:`analyse_to_bytes`, which take and return plain data (safetensors bytes, member
tables) and touch no shared file; :func:`run_jobs` hands them out through a ``submit``
function and writes what they return (:func:`write_trained`, :func:`write_analysis`),
trained shards in preset order so that member ids, and with them every result, do not
depend on which worker finished first. The command line's lock (:mod:`universality.lock`)
keeps a second driver out of the directory, and :func:`open_run` refuses a directory
whose shards another preset's settings trained.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from ..cells import Cell, ModuleCell, make_cell
from ..io import sha256
from ..population import Member, Population
from ..store import MemberRow, RunError, RunStore, cell_from_spec, cell_spec, provenance
from ..tasks import task_from_config
from ..training import Progress, TrainConfig, TrainResult, train
from .analyze import AnalysisConfig, Step, analyze_run, analyze_shard
from .presets import Preset, Shard
from .report import write_report

log = logging.getLogger(__name__)

#: Called once per shard: (shard, index, total, skipped) -> a per-step progress callback or None.
ShardProgress = Callable[[Shard, int, int, bool], Progress | None]

#: The per-shard analysis files, ``analysis/<kind>/<shard>.safetensors``.
SHARD_ANALYSES = ("states", "fixed_points", "scaffold")


def train_population(preset: Preset, shard: Shard, device: torch.device, progress: Progress | None = None,
                     cell: Cell | None = None) -> tuple[Population, TrainResult, dict[str, Any]]:
    """Train one shard of ``preset`` (members: l2 x seeds, plus further rounds of fresh
    seeds while fewer than ``preset.min_passed`` passed); ``cell`` overrides the built-in
    cell named by the shard (e.g. a user's ModuleCell). Returns the population (params
    ``[P, ...]``), its per-member result and the train config to record. Writes nothing."""
    task = preset.task(shard.task)
    config = train_config(preset)
    cell = cell or make_cell(shard.arch, shard.activation)
    pops: list[Population] = []
    results: list[TrainResult] = []
    for round_ in range(preset.max_rounds):
        if not another_round(preset, round_, sum(sum(r.passed) for r in results)):
            break
        seeds, l2s = preset.round_members(round_)
        pop = Population.create(cell, task, shard.hidden, seeds,
                                l2=l2s, lr=preset.lr, device=device)
        results.append(train(pop, config, progress))
        pops.append(pop)
    pop = Population.concat(pops)
    result = _concat_results(results)
    log.info("%s: %d/%d passed in %d round(s), %.1fs", shard.name, sum(result.passed), len(pop), len(results),
             result.seconds)
    return pop, result, {**config.as_dict(), "preset": preset.name}


def train_config(preset: Preset) -> TrainConfig:
    """The training settings of ``preset``."""
    return TrainConfig(steps=preset.steps, batch_size=preset.batch_size, extend_steps=preset.extend_steps,
                       min_steps=preset.min_steps, confirm=preset.confirm)


def another_round(preset: Preset, round_: int, passed: int) -> bool:
    """Whether a shard trains round ``round_`` (0, 1, ...) when ``passed`` members of its
    earlier rounds passed: the first always, more while fewer than ``min_passed`` passed."""
    return round_ == 0 or passed < preset.min_passed


def train_shard(store: RunStore, preset: Preset, shard: Shard, device: torch.device,
                progress: Progress | None = None, cell: Cell | None = None) -> tuple[Population, TrainResult]:
    """Train one shard in this process (:func:`train_population`) and save it in ``store``."""
    pop, result, config = train_population(preset, shard, device, progress, cell)
    store.save_population(shard.name, pop, config, result, device=device)
    return pop, result


def _concat_results(results: list[TrainResult]) -> TrainResult:
    """One result over the members of several rounds (per-member lists joined, seconds summed)."""
    joined = {f.name: [v for r in results for v in getattr(r, f.name)] for f in dataclasses.fields(TrainResult)
              if f.name != "seconds"}
    return TrainResult(**joined, seconds=sum(r.seconds for r in results))


def analysis_config(preset: Preset) -> AnalysisConfig:
    """The analysis settings of ``preset``."""
    return AnalysisConfig(candidate_budget=preset.fixed_point_candidates)


def default_workers(device: torch.device) -> int:
    """Worker processes for a run: one single-threaded worker per CPU core on the CPU
    (small recurrent ops are far slower multi-threaded), one on an accelerator."""
    return max(1, os.cpu_count() or 1) if device.type == "cpu" else 1


def where() -> dict[str, Any]:
    """Which machine and process runs this: ``host``, ``pid`` and, inside a Ray task,
    the Ray ``node`` id and ``node_ip`` (Ray is looked up, never imported, here)."""
    out: dict[str, Any] = {"host": platform.node(), "pid": os.getpid()}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        out["node"] = ray.get_runtime_context().get_node_id()
        out["node_ip"] = ray.util.get_node_ip_address()
    return out


def describe(origin: dict[str, Any]) -> str:
    """``host`` (``node_ip``, node ``abcd1234``) pid ``N``: where a job ran, for the log."""
    node = f" ({origin['node_ip']}, node {origin['node'][:8]})" if "node" in origin else ""
    return f"{origin.get('host', '?')}{node} pid {origin.get('pid', '?')}"


def population_from_bytes(cell: str, task_config: dict[str, Any], hidden: int, members: list[Member],
                          weights: bytes) -> Population:
    """Rebuild a population from a cell spec, a task config and safetensors ``weights``
    (the stacked params ``[P, ...]``), as :meth:`RunStore.load_population` does from files."""
    task = task_from_config(task_config)
    built = cell_from_spec(cell)
    if isinstance(built, ModuleCell):
        built.init_params(task.input_size, hidden, torch.Generator().manual_seed(0))
    return Population(built, task, hidden, members, load_bytes(weights))


@dataclass(frozen=True)
class TrainJob:
    """Train ``shard`` of ``preset`` on ``device`` with ``threads`` torch threads."""

    preset: Preset
    shard: Shard
    device: str
    threads: int = 1


@dataclass(frozen=True)
class TrainedShard:
    """A trained shard as plain data: ``weights`` are the safetensors bytes of the stacked
    params ``[P, ...]``, ``members`` and ``result`` have P entries, ``origin`` is the
    provenance (with :func:`where` it ran) that the catalog records."""

    shard: str
    cell: str
    task_config: dict[str, Any]
    hidden: int
    members: list[Member]
    weights: bytes
    result: TrainResult
    train_config: dict[str, Any]
    origin: dict[str, Any]

    def population(self) -> Population:
        return population_from_bytes(self.cell, self.task_config, self.hidden, self.members, self.weights)


def train_to_bytes(job: TrainJob) -> TrainedShard:
    """Worker job: train one shard (:func:`train_population`) into a :class:`TrainedShard`."""
    torch.set_num_threads(job.threads)
    device = torch.device(job.device)
    pop, result, config = train_population(job.preset, job.shard, device)
    weights = save_bytes({k: v.detach().contiguous().cpu() for k, v in pop.params.items()})
    return TrainedShard(job.shard.name, cell_spec(pop.cell), pop.task.config(), pop.hidden_size, pop.members,
                        weights, result, config, {**provenance(device, config.get("seed")), **where()})


def write_trained(store: RunStore, trained: TrainedShard) -> None:
    """Driver: save a shard trained elsewhere, with the provenance of where it ran."""
    store.save_population(trained.shard, trained.population(), trained.train_config, trained.result,
                          origin=trained.origin)


@dataclass(frozen=True)
class AnalysisJob:
    """Analyse one stored shard: its catalog row (``config_hash``, cell, task config,
    hidden size, train config), its member ``rows`` (P), its ``weights`` (safetensors bytes
    of ``[P, ...]``) and ``files``, its analysis files that are intact in the run
    (``analysis/<kind>/<shard>.safetensors`` -> bytes), which are reused where current."""

    shard: str
    config_hash: str
    cell: str
    task_config: dict[str, Any]
    hidden: int
    train_config: dict[str, Any]
    rows: list[MemberRow]
    weights: bytes
    files: dict[str, bytes]
    config: AnalysisConfig
    device: str
    threads: int = 1


@dataclass(frozen=True)
class AnalysedShard:
    """A shard's new or changed analysis files (relative path -> safetensors bytes)."""

    shard: str
    files: dict[str, bytes]
    origin: dict[str, Any]


def analyse_to_bytes(job: AnalysisJob) -> AnalysedShard:
    """Worker job: the shard's probe states, fixed points and scaffolds, computed by
    :func:`~.analyze.analyze_shard` in a private scratch run that holds only this shard
    (weights, member rows, reusable files), so nothing shared is written."""
    torch.set_num_threads(job.threads)
    with tempfile.TemporaryDirectory(prefix="universality-analyse-") as tmp:
        scratch = RunStore.create(Path(tmp) / "run")
        pop = population_from_bytes(job.cell, job.task_config, job.hidden, [r.spec() for r in job.rows], job.weights)
        rows, nan = job.rows, float("nan")
        result = TrainResult(status=[r.status for r in rows], loss=[nan if r.loss is None else r.loss for r in rows],
                             score=[nan if r.score is None else r.score for r in rows],
                             passed=[r.passed for r in rows], steps=[r.steps for r in rows], seconds=0.0,
                             restarts=[r.restarts for r in rows])
        scratch.save_population(job.shard, pop, job.train_config, result)
        if scratch.shard_info(job.shard)["config_hash"] != job.config_hash:
            raise RunError(f"shard {job.shard}: rebuilt in the worker with another config hash than the catalog's")
        for rel, data in job.files.items():
            _write_bytes(scratch, scratch.path / rel, data)
        analyze_shard(scratch, job.shard, job.config, job.device)
        files = {}
        for kind in SHARD_ANALYSES:
            rel = f"analysis/{kind}/{job.shard}.safetensors"
            data = (scratch.path / rel).read_bytes()
            if job.files.get(rel) != data:
                files[rel] = data
    return AnalysedShard(job.shard, files, where())


def _write_bytes(store: RunStore, path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` in the run atomically (temp file, fsync, rename) and
    record its SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    store.record_file(path, sha256(data))


def write_analysis(store: RunStore, analysed: AnalysedShard) -> None:
    """Driver: write a shard's analysis files (in the order the analysis made them:
    states, fixed points, scaffold) and record their checksums."""
    for rel, data in analysed.files.items():
        _write_bytes(store, store.path / rel, data)


class _Stale(Exception):
    pass


def analysis_current(store: RunStore, shard: str, config: AnalysisConfig) -> bool:
    """Whether the shard's analysis files are all current and intact: asks
    :func:`~.analyze.analyze_shard` itself, whose cache check announces each file it would
    recompute (through ``on_step``) before computing it; nothing is computed."""

    def stale(what: str) -> None:
        raise _Stale(what)

    try:
        analyze_shard(store, shard, config, "cpu", on_step=stale)
    except _Stale:
        return False
    return True


def analysis_job(store: RunStore, shard: str, config: AnalysisConfig, device: str, threads: int = 1) -> AnalysisJob:
    """The :class:`AnalysisJob` of a stored shard (its weights checked against their SHA-256)."""
    info = store.shard_info(shard)
    weights = (store.path / info["file"]).read_bytes()
    if info["sha256"] is not None and sha256(weights) != info["sha256"]:
        raise RunError(f"{store.path / info['file']}: checksum mismatch; the run directory is damaged")
    files = {}
    for kind in SHARD_ANALYSES:
        path = store.path / "analysis" / kind / f"{shard}.safetensors"
        recorded = store.file_checksum(path)
        if path.is_file() and recorded is not None:
            data = path.read_bytes()
            if sha256(data) == recorded:
                files[path.relative_to(store.path).as_posix()] = data
    return AnalysisJob(shard, info["config_hash"], info["cell"], info["task_config"], info["hidden"],
                       info["train_config"], store.members(shard), weights, files, config, device, threads)


class Backend(Protocol):
    """Where worker jobs run (a local process pool or a Ray cluster)."""

    threads: int  # torch threads per job

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future[Any]:
        """A future of ``fn(job)`` run by a worker."""
        ...


class LocalBackend:
    """``workers`` single-threaded spawned processes on this machine.

    Ctrl-C reaches the whole process group, but only the driver acts on it: workers are
    started (lazily, by ``submit``) while SIGINT is *blocked* in the driver's thread, a mask
    a new process inherits and Python keeps; the driver's own Ctrl-C is held pending
    meanwhile, not lost, and delivered when the mask is lifted. Left by an exception
    (Ctrl-C included), the backend terminates its workers at
    once rather than letting them finish their jobs: nothing they hold was written, and a
    rerun resumes."""

    threads = 1

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalBackend:
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        assert self._pool is not None
        if exc_type is not None:
            # no public way to stop running jobs before Python 3.14's terminate_workers()
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future[Any]:
        assert self._pool is not None, "use LocalBackend as a context manager"
        if threading.current_thread() is not threading.main_thread():  # signals belong to the main thread
            return self._pool.submit(fn, job)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return self._pool.submit(fn, job)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def run_jobs(store: RunStore, preset: Preset, done: set[str], config: AnalysisConfig, device: str,
             backend: Backend, on_step: Step | None = None, on_done: Step | None = None,
             train_only: bool = False) -> None:
    """Driver loop: train the preset's shards not in ``done`` and analyse every shard whose
    analysis is not current, as jobs on ``backend``; write each result as it arrives
    (trained shards in preset order, each analysed once written). ``on_step`` gets a line
    per finished job (and where it ran), ``on_done`` each shard's name once it is trained
    and analysed (with ``train_only``, once it is trained: nothing is analysed)."""
    shards = [s.name for s in preset.shards()]
    order = [s for s in preset.shards() if s.name not in done]
    pending: dict[Future[Any], tuple[str, str]] = {}
    arrived: dict[str, TrainedShard] = {}

    def report(line: str) -> None:
        log.info(line)
        if on_step:
            on_step(line)

    def analyse(shard: str) -> None:
        if train_only or analysis_current(store, shard, config):
            if on_done:
                on_done(shard)
            return
        pending[backend.submit(analyse_to_bytes, analysis_job(store, shard, config, device, backend.threads))] = (
            "analyse", shard)

    for s in order:
        pending[backend.submit(train_to_bytes, TrainJob(preset, s, device, backend.threads))] = ("train", s.name)
    for name in shards:
        if name in done:
            analyse(name)
    try:
        while pending:
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in ready:
                kind, shard = pending.pop(future)
                if kind == "train":
                    arrived[shard] = future.result()
                    while order and order[0].name in arrived:
                        trained = arrived.pop(order.pop(0).name)
                        write_trained(store, trained)
                        report(f"trained {trained.shard} on {describe(trained.origin)}")
                        analyse(trained.shard)
                else:
                    analysed = future.result()
                    write_analysis(store, analysed)
                    report(f"analysed {shard} on {describe(analysed.origin)}")
                    if on_done:
                        on_done(shard)
    finally:
        for future in pending:
            future.cancel()


def repair_plan(store: RunStore, preset: Preset) -> set[str]:
    """The shards of ``store`` whose weights are damaged (missing or altered): each is
    logged, its analysis files and its task's geometry and topology are forgotten so that
    they are recomputed, and its name returned to be retrained from its seeds (training is
    deterministic: the same seeds give the same weights). Damaged weights of a shard the
    preset does not define cannot be retrained: :class:`RunError`."""
    names = {s.name for s in preset.shards()}
    damaged = {d.owner: d for d in store.damage(analysis=False)}
    foreign = sorted(set(damaged) - names)
    if foreign:
        raise RunError(f"{store.path}: weights of shard(s) {', '.join(foreign)} are damaged and not part of preset "
                       f"{preset.name!r}, so they cannot be retrained here")
    root = store.path / "analysis"
    for shard, damage in damaged.items():
        log.warning("shard %s: %s; retraining it from its seeds and recomputing its analyses", shard, damage)
        task = store.shard_info(shard)["task"]
        for part in (f"states/{shard}", f"fixed_points/{shard}", f"scaffold/{shard}", f"geometry/{task}",
                     f"topology/{task}"):
            store.forget_file(root / f"{part}.safetensors")
    return set(damaged)


def other_settings(store: RunStore, preset: Preset) -> list[str]:
    """How the shards stored in ``store`` differ from what ``preset`` trains, one entry per
    differing shard (empty: none differs): a shard the preset does not define, another task
    configuration, other training settings (``TrainConfig``) or other members (seed, L2, lr,
    and the rounds of :func:`another_round` given the stored pass results). A setting an
    older catalog lacks differs too (the code that trained it may not have had it). The
    preset's name is not compared: the same settings under another name train the same
    networks."""
    shards = {s.name: s for s in preset.shards()}
    wanted = train_config(preset).as_dict()
    out = []
    for name in store.shards():
        if name not in shards:
            out.append(f"shard {name} is not part of preset {preset.name!r}")
            continue
        info = store.shard_info(name)
        stored = {**info["task_config"], **info["train_config"]}
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
    (:func:`recorded_analysis`), or not computed at all. Asks the analysis's own cache
    check (:func:`analysis_current`); nothing is computed. Damaged files must be ruled
    out first (:meth:`RunStore.damage`): they read as stale."""
    config = recorded_analysis(store)
    stale = [f"shard {s}" for s in store.shards() if not analysis_current(store, s, config)]
    if stale:
        return stale

    def found(what: str) -> None:
        raise _Stale(what)

    try:
        analyze_run(store, config, "cpu", on_step=found, shards_done=True)
    except _Stale as err:
        return [str(err)]
    return []


def run_preset(preset: Preset, out: str, device: torch.device, on_shard: ShardProgress | None = None,
               on_step: Step | None = None, workers: int | None = None, backend: Backend | None = None,
               on_done: Step | None = None, train_only: bool = False) -> Path | None:
    """Train every shard of ``preset`` not yet stored in ``out``, analyse what is not yet
    analysed, evaluate the claims and write the report; return the report's path.

    Shards are trained and analysed as jobs (:func:`run_jobs`) on ``backend`` (e.g. a
    :class:`~.ray_backend.RayBackend`) or, without one and with ``workers > 1`` (default:
    :func:`default_workers`), in that many single-threaded local processes; ``on_step``
    then reports each finished job and ``on_done`` each finished shard, instead of
    ``on_shard``'s per-step progress in this process. Per-task geometry, topology, claims
    and report run here after them. ``train_only``: train what is missing and stop (no
    analysis, no report; returns None), e.g. to train on one machine and analyse later."""
    store = open_run(out, preset)
    workers = default_workers(device) if workers is None else workers
    shards = preset.shards()
    damaged = repair_plan(store, preset)
    done = set(store.shards()) - damaged
    config = analysis_config(preset)
    if not train_only:
        record_analysis(store, config)
    if backend is not None:
        run_jobs(store, preset, done, config, str(device), backend, on_step, on_done, train_only)
        if train_only:
            return None
        analyze_run(store, config, "cpu", on_step, shards_done=True)
        return write_report(store)
    if workers > 1 and len(shards) > 1:
        with LocalBackend(workers) as local:
            run_jobs(store, preset, done, config, str(device), local, on_step, on_done, train_only)
        if train_only:
            return None
        analyze_run(store, config, device, on_step, shards_done=True)
        return write_report(store)
    for i, shard in enumerate(shards):
        skipped = shard.name in done
        progress = on_shard(shard, i, len(shards), skipped) if on_shard else None
        if not skipped:
            train_shard(store, preset, shard, device, progress)
    if train_only:
        return None
    analyze_run(store, config, device, on_step)
    return write_report(store)
