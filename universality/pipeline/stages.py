"""The stages of a run, pure: settings and arrays in, arrays (or safetensors bytes) out.

Nothing here opens a run directory. The worker jobs (:func:`train_job`,
:func:`analyse_job`, :func:`task_job`) take and return plain data, so a local process or a
Ray task runs them alike and only the driver (:mod:`.driver`) writes.

The analysis files (paths: :mod:`universality.run.layout`; when they are current:
:mod:`universality.run.cache`):

* ``states/<shard>``: ``states [P, B, T, S]`` on the task's shared probe trials
  (``AnalysisConfig.trial_seed``: every architecture sees identical inputs);
* ``fixed_points/<shard>``: :class:`~universality.dynamics.FixedPoints` at the task's
  ``conditions()``;
* ``scaffold/<shard>``: per member the scaffold's discrete ``topology [P, D]`` and
  continuous ``dynamics [P, D']`` signatures, the homology ``fingerprints [P, D'']`` of its
  probe-state cloud, and (metadata ``numbers``) the JSON list of each member's
  ``Scaffold.as_dict()`` (criteria included);
* ``geometry/<task>``: ``members [N]`` (catalog ids of the non-diverged members of that
  task) and one ``[N, N]`` distance matrix per metric, plus SVCCA at each of
  ``AnalysisConfig.svcca_ks`` components (``svcca_k3``, ...);
* ``topology/<task>``: ``members [N]`` and the ``[N, N]`` distances ``topology`` (the
  task's topology-signature distance), ``dynamics`` (its dynamics-signature distance) and
  ``homology`` (fingerprint distance).

Diverged members are not analysed (their weights are frozen at an exploding state): they
have no fixed points, NaN scaffold rows and the numbers ``{"canonical": false,
"diverged": true}``. Geometry, topology and claims leave them out.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..cells import Cell, cell_spec, make_cell
from ..dynamics import FixedPointConfig, FixedPoints, find_fixed_points
from ..geometry import DEFAULT_K, METRICS, pairwise_distances, svcca_k
from ..population import Member, Population
from ..run import files
from ..run.catalog import MemberRow, population_from, provenance
from ..scaffold import SCAFFOLDS, distance_matrix
from ..scaffold.homology import diagram_distance, fingerprint
from ..training import DIVERGED, Progress, TrainConfig, TrainResult, train
from .config import Preset, Shard

log = logging.getLogger(__name__)

#: Version of the scaffold and topology files' content: part of their cache key, so that
#: files written by an older scaffold definition are recomputed, not misread.
SCAFFOLD_FORMAT = 6


@dataclass(frozen=True)
class AnalysisConfig:
    """What the analysis computes. ``full_state``: use the whole state (LSTM: [h, c]) as
    the geometry representation instead of the hidden state h (the default, as the readout
    sees it). ``svcca_ks``: SVCCA is also computed at these numbers of components (besides
    ``k``), to show that geometry claims do not hang on one choice."""

    n_trials: int = 32
    trial_seed: int = 20190722
    metrics: tuple[str, ...] = tuple(METRICS)
    k: int = DEFAULT_K
    svcca_ks: tuple[int, ...] = (3, 5)
    full_state: bool = False
    homology_points: int = 300
    candidate_budget: int = 1024
    fixed_points: FixedPointConfig = field(default_factory=FixedPointConfig)

    def fixed_point_config(self, task: str, n_conditions: int) -> FixedPointConfig:
        """The fixed-point settings for ``task`` with ``n_conditions`` conditions: the
        per-member ``candidate_budget`` is split evenly over them, at least 16 each (the
        sine task's 51 inputs have one point each; the flip-flop's single input has 27),
        and slow points are kept where the task's scaffold reads them."""
        return replace(self.fixed_points, n_initial=max(16, self.candidate_budget // n_conditions),
                       include_slow=self.fixed_points.include_slow or SCAFFOLDS[task].slow_points)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def analysis_config(preset: Preset) -> AnalysisConfig:
    """The analysis settings of ``preset``."""
    return AnalysisConfig(candidate_budget=preset.fixed_point_candidates)


# ------------------------------------------------------------------------------ training
def train_config(preset: Preset) -> TrainConfig:
    """The training settings of ``preset``."""
    return TrainConfig(steps=preset.steps, batch_size=preset.batch_size, extend_steps=preset.extend_steps,
                       min_steps=preset.min_steps, confirm=preset.confirm)


#: ``settled(round_, passed, trained)``: whether round ``round_`` and later ones can change
#: nothing that matters, after ``passed`` of ``trained`` members passed (see train_population).
Settled = Callable[[int, int, int], bool]


def another_round(preset: Preset, round_: int, passed: int) -> bool:
    """Whether a shard trains round ``round_`` (0, 1, ...) when ``passed`` members of its
    earlier rounds passed: the first always, more while fewer than ``min_passed`` passed."""
    return round_ == 0 or passed < preset.min_passed


def train_population(preset: Preset, shard: Shard, device: torch.device, progress: Progress | None = None,
                     cell: Cell | None = None, settled: Settled | None = None,
                     ) -> tuple[Population, TrainResult, dict[str, Any]]:
    """Train one shard of ``preset`` (members: l2 x seeds, plus further rounds of fresh
    seeds while fewer than ``preset.min_passed`` passed); ``cell`` overrides the built-in
    cell named by the shard (e.g. a user's ModuleCell). ``settled(round_, passed, trained)``
    (``check`` only; None: never) is asked before each further round and ends the rounds
    when it returns True. Returns the population (params ``[P, ...]``), its per-member
    result and the train config to record."""
    task = preset.task(shard.task)
    config = train_config(preset)
    cell = cell or make_cell(shard.arch, shard.activation)
    pops: list[Population] = []
    results: list[TrainResult] = []
    for round_ in range(preset.max_rounds):
        passed = sum(sum(r.passed) for r in results)
        if not another_round(preset, round_, passed):
            break
        if round_ > 0 and settled is not None and settled(round_, passed, sum(len(r.passed) for r in results)):
            break
        seeds, l2s = preset.round_members(round_)
        pop = Population.create(cell, task, shard.hidden, seeds, l2=l2s, lr=preset.lr, device=device)
        results.append(train(pop, config, progress))
        pops.append(pop)
    pop = Population.concat(pops)
    result = _concat_results(results)
    log.info("%s: %d/%d passed in %d round(s), %.1fs", shard.name, sum(result.passed), len(pop), len(results),
             result.seconds)
    return pop, result, {**config.as_dict(), "preset": preset.name}


def _concat_results(results: list[TrainResult]) -> TrainResult:
    """One result over the members of several rounds (per-member lists joined, seconds summed)."""
    joined = {f.name: [v for r in results for v in getattr(r, f.name)] for f in dataclasses.fields(TrainResult)
              if f.name != "seconds"}
    return TrainResult(**joined, seconds=sum(r.seconds for r in results))


# ------------------------------------------------------------------------------ analysis
def probe_states(population: Population, config: AnalysisConfig) -> Tensor:
    """States ``[P, B, T, S]`` on the task's shared, seeded probe trials."""
    trials = population.task.sample(config.n_trials, torch.Generator().manual_seed(config.trial_seed))
    with torch.no_grad():
        states, _ = population.run(trials.inputs)
    return states.cpu()


def fixed_points(population: Population, alive: list[int], config: FixedPointConfig) -> FixedPoints:
    """The fixed points of the ``alive`` members (indices into P); none for the others."""
    if alive:
        return find_fixed_points(population.select(alive), config=config).expand(alive, len(population))
    conditions = population.task.conditions().to(torch.float64)
    return FixedPoints.empty(len(population), conditions, population.state_size, config.as_dict())


def scaffolds(population: Population, alive: list[int], fps: FixedPoints, states: Tensor,
              homology_points: int) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Per member (P): the scaffold's ``topology``, ``dynamics`` and homology
    ``fingerprints`` rows (NaN for members not ``alive``) and its numbers."""
    task = population.task.name
    found = SCAFFOLDS[task].compute(population.select(alive), fps.select(alive)) if alive else []
    numbers: list[dict[str, Any]] = [{"canonical": False, "diverged": True}] * len(population)
    topology: list[np.ndarray | None] = [None] * len(population)
    dynamics: list[np.ndarray | None] = [None] * len(population)
    fingerprints: list[np.ndarray | None] = [None] * len(population)
    for i, sc in zip(alive, found, strict=True):
        numbers[i], topology[i], dynamics[i] = sc.as_dict(), sc.topology, sc.dynamics
        fingerprints[i] = fingerprint(states[i, ..., : population.hidden_size], n_points=homology_points, seed=i)
    return {"topology": _rows(topology), "dynamics": _rows(dynamics), "fingerprints": _rows(fingerprints)}, numbers


def geometry(reps: list[Tensor], ids: list[int], config: AnalysisConfig,
             device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], int]:
    """``members [N]`` and the ``[N, N]`` distance matrices of every metric over ``reps``
    (N representations ``[M, U_n]``), and the k the CCA metrics used (lowered to the
    smallest rank among them: :func:`~universality.geometry.svcca_k`)."""
    k = svcca_k(reps, config.k)
    out = {"members": torch.tensor(ids, dtype=torch.int64)}
    if len(reps) >= 2:
        for metric in config.metrics:
            extra: dict[str, Any] = {"k": k} if "k" in METRICS[metric].params else {}
            out[metric] = pairwise_distances(reps, metric, device=device, **extra).cpu()
        for k_extra in config.svcca_ks:
            out[f"svcca_k{k_extra}"] = pairwise_distances(reps, "svcca", k=min(k, k_extra), device=device).cpu()
    return out, k


def topology(task: str, ids: list[int], signatures: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """``members [N]`` and the ``[N, N]`` topology, dynamics and homology distances from the
    members' ``topology [N, D]``, ``dynamics [N, D']`` and ``fingerprints [N, D'']``."""
    out = {"members": torch.tensor(ids, dtype=torch.int64)}
    if ids:
        spec = SCAFFOLDS[task]
        for name, fn in (("topology", spec.distance), ("dynamics", spec.dynamics_distance)):
            out[name] = torch.as_tensor(distance_matrix(fn, signatures[name]))
        out["homology"] = torch.as_tensor(distance_matrix(diagram_distance, signatures["fingerprints"]))
    return out


def _rows(rows: list[np.ndarray | None]) -> Tensor:
    """Stack per-member vectors ``[P, D]`` (float64), NaN rows for ``None`` (diverged)."""
    width = max((len(r) for r in rows if r is not None), default=0)
    return torch.as_tensor(np.stack([np.full(width, np.nan) if r is None else r for r in rows]), dtype=torch.float64)


def alive(rows: list[MemberRow]) -> list[int]:
    """The indices of the members that did not diverge (the ones analysed)."""
    return [r.idx for r in rows if r.status != DIVERGED]


# ------------------------------------------------------------------------------ worker jobs
def where() -> dict[str, Any]:
    """Which machine and process runs this: ``host``, ``pid`` and, inside a Ray task,
    the Ray ``node`` id and ``node_ip`` (Ray is looked up, never imported, here)."""
    out: dict[str, Any] = {"host": platform.node(), "pid": os.getpid()}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        out["node"] = ray.get_runtime_context().get_node_id()
        out["node_ip"] = ray.util.get_node_ip_address()
    return out


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
        return population_from(self.cell, self.task_config, self.hidden, self.members, files.decode(self.weights))


def train_job(job: TrainJob) -> TrainedShard:
    """Worker job: train one shard (:func:`train_population`) into a :class:`TrainedShard`."""
    torch.set_num_threads(job.threads)
    device = torch.device(job.device)
    pop, result, config = train_population(job.preset, job.shard, device)
    return TrainedShard(job.shard.name, cell_spec(pop.cell), pop.task.config(), pop.hidden_size, pop.members,
                        files.encode(pop.params), result, config, {**provenance(device, config.get("seed")), **where()})


@dataclass(frozen=True)
class AnalysisJob:
    """Analyse one shard: its cell spec, task config, size, ``members`` (P), ``alive``
    indices and ``weights`` (safetensors bytes of ``[P, ...]``); ``todo`` maps each kind to
    compute to the ``source`` its file records, ``inputs`` holds the current files of the
    kinds not to compute (kind -> bytes) that a computed one reads."""

    shard: str
    cell: str
    task_config: dict[str, Any]
    hidden: int
    members: list[Member]
    alive: list[int]
    weights: bytes
    todo: dict[str, str]
    inputs: dict[str, bytes]
    config: AnalysisConfig
    device: str
    threads: int = 1


@dataclass(frozen=True)
class Analysed:
    """New analysis files (kind -> safetensors bytes) of one shard or task."""

    name: str
    files: dict[str, bytes]
    origin: dict[str, Any]


def analyse_job(job: AnalysisJob) -> Analysed:
    """Worker job: the shard's probe states, fixed points and scaffolds named in ``job.todo``,
    as file bytes, each read back from its bytes where a later stage needs it."""
    torch.set_num_threads(job.threads)
    pop = population_from(job.cell, job.task_config, job.hidden, job.members, files.decode(job.weights))
    pop = pop.to(job.device)
    made: dict[str, bytes] = {}
    if "states" in job.todo:
        made["states"] = files.encode({"states": probe_states(pop, job.config)}, {"source": job.todo["states"]})
    if "fixed_points" in job.todo:
        fp_config = job.config.fixed_point_config(pop.task.name, len(pop.task.conditions()))
        found = fixed_points(pop, job.alive, fp_config)
        made["fixed_points"] = files.encode(*found.to_tensors({"source": job.todo["fixed_points"]}))
    if "scaffold" in job.todo:
        read = {**job.inputs, **made}  # the scaffold reads its inputs as stored
        states = files.decode(read["states"])["states"]
        fps = FixedPoints.from_tensors(files.decode(read["fixed_points"]), files.metadata(read["fixed_points"]) or {})
        tensors, numbers = scaffolds(pop, job.alive, fps, states, job.config.homology_points)
        made["scaffold"] = files.encode(tensors, {"source": job.todo["scaffold"],
                                                  "numbers": json.dumps(numbers, default=files.jsonable)})
    return Analysed(job.shard, made, where())


@dataclass(frozen=True)
class TaskJob:
    """One task's geometry and/or topology (``todo``: kind -> source) over its non-diverged
    members: per member its catalog id, hidden size, shard and index; per shard its
    ``states`` (bytes, for geometry) and ``scaffold`` (bytes, for topology)."""

    task: str
    members: list[tuple[int, int, str, int]]
    states: dict[str, bytes]
    scaffold: dict[str, bytes]
    todo: dict[str, str]
    config: AnalysisConfig
    device: str
    threads: int = 1


def task_job(job: TaskJob) -> Analysed:
    """Worker job: a task's ``geometry`` and ``topology`` files as bytes."""
    torch.set_num_threads(job.threads)
    ids = [m[0] for m in job.members]
    made: dict[str, bytes] = {}
    if "geometry" in job.todo:
        states = {s: files.decode(data)["states"] for s, data in job.states.items()}
        reps = []
        for _, hidden, shard, idx in job.members:
            rep = states[shard][idx]
            rep = rep if job.config.full_state else rep[..., :hidden]
            reps.append(rep.reshape(-1, rep.shape[-1]))
        tensors, k = geometry(reps, ids, job.config, job.device)
        made["geometry"] = files.encode(tensors, {"source": job.todo["geometry"], "k": str(k),
                                                  "config": json.dumps(job.config.as_dict(), default=str)})
    if "topology" in job.todo:
        sc = {s: files.decode(data) for s, data in job.scaffold.items()}
        signatures = {name: np.stack([sc[shard][name][idx].numpy() for _, _, shard, idx in job.members])
                      for name in ("topology", "dynamics", "fingerprints")} if job.members else {}
        made["topology"] = files.encode(topology(job.task, ids, signatures), {"source": job.todo["topology"]})
    return Analysed(job.task, made, where())
