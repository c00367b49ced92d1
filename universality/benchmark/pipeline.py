"""``universality run``: train every shard of a preset, analyse, report (resumable)."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from ..cells import Cell, make_cell
from ..population import Population
from ..store import RunError, RunStore
from ..tasks import make_task
from ..training import Progress, TrainConfig, TrainResult, train
from .analyze import AnalysisConfig, Step, analyze_run, analyze_shard
from .presets import Preset, Shard
from .report import write_report

log = logging.getLogger(__name__)

#: Called once per shard: (shard, index, total, skipped) -> a per-step progress callback or None.
ShardProgress = Callable[[Shard, int, int, bool], Progress | None]


def train_shard(store: RunStore, preset: Preset, shard: Shard, device: torch.device,
                progress: Progress | None = None, cell: Cell | None = None) -> tuple[Population, TrainResult]:
    """Train one shard of ``preset`` (members: l2 x seeds, plus further rounds of fresh
    seeds while fewer than ``preset.min_passed`` passed) and save it in ``store``;
    ``cell`` overrides the built-in cell named by the shard (e.g. a user's ModuleCell)."""
    task = make_task(shard.task, **preset.task_params.get(shard.task, {}))
    config = TrainConfig(steps=preset.steps, batch_size=preset.batch_size, extend_steps=preset.extend_steps)
    cell = cell or make_cell(shard.arch, shard.activation)
    pops: list[Population] = []
    results: list[TrainResult] = []
    for round_ in range(preset.max_rounds):
        if round_ and sum(sum(r.passed) for r in results) >= preset.min_passed:
            break
        first = preset.first_seed + round_ * preset.seeds
        seeds = [first + s for _ in preset.l2 for s in range(preset.seeds)]
        l2s = [v for v in preset.l2 for _ in range(preset.seeds)]
        pop = Population.create(cell, task, shard.hidden, seeds,
                                l2=l2s, lr=preset.lr, device=device)
        results.append(train(pop, config, progress))
        pops.append(pop)
    pop = Population.concat(pops)
    result = _concat_results(results)
    store.save_population(shard.name, pop, {**config.as_dict(), "preset": preset.name}, result, device=device)
    log.info("%s: %d/%d passed in %d round(s), %.1fs", shard.name, sum(result.passed), len(pop), len(results),
             result.seconds)
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


def _train_worker(path: str, preset: Preset, shard: Shard, device: str) -> str:
    torch.set_num_threads(1)
    train_shard(RunStore(path), preset, shard, torch.device(device))
    return f"trained {shard.name}"


def _analyze_worker(path: str, shard: str, config: AnalysisConfig, device: str) -> str:
    torch.set_num_threads(1)
    analyze_shard(RunStore(path), shard, config, device)
    return f"analysed {shard}"


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


def run_preset(preset: Preset, out: str, device: torch.device, on_shard: ShardProgress | None = None,
               on_step: Step | None = None, workers: int | None = None) -> Path:
    """Train every shard of ``preset`` not yet stored in ``out``, analyse what is not yet
    analysed, evaluate the claims and write the report; return the report's path.

    With ``workers > 1`` (default: :func:`default_workers`) shards are trained and
    analysed in that many single-threaded worker processes; ``on_step`` then reports each
    finished shard instead of ``on_shard``'s per-step progress."""
    store = RunStore.create(out)
    workers = default_workers(device) if workers is None else workers
    shards = preset.shards()
    damaged = repair_plan(store, preset)
    done = set(store.shards()) - damaged
    config = analysis_config(preset)
    todo = [s for s in shards if s.name not in done]
    if workers > 1 and len(shards) > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            jobs = [pool.submit(_train_worker, str(store.path), preset, s, str(device)) for s in todo]
            for job in as_completed(jobs):
                message = job.result()
                if on_step:
                    on_step(message)
            jobs = [pool.submit(_analyze_worker, str(store.path), s.name, config, str(device)) for s in shards]
            for job in as_completed(jobs):
                message = job.result()
                if on_step:
                    on_step(message)
        analyze_run(store, config, device, on_step, shards_done=True)
        return write_report(store)
    for i, shard in enumerate(shards):
        skipped = shard.name in done
        progress = on_shard(shard, i, len(shards), skipped) if on_shard else None
        if not skipped:
            train_shard(store, preset, shard, device, progress)
    analyze_run(store, config, device, on_step)
    return write_report(store)
