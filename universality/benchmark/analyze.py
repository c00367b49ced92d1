"""``universality analyze``: per-shard states and fixed points, per-task geometry.

Everything lands under ``DIR/analysis/`` and is resumable: each file records a hash of
what it was computed from (the shard's config hash plus the analysis settings), and is
recomputed only when that changes.

* ``states/<shard>.safetensors``: ``states [P, B, T, S]`` on the task's shared probe
  trials (``AnalysisConfig.trial_seed``: every architecture sees identical inputs);
* ``fixed_points/<shard>.safetensors``: :class:`~universality.dynamics.FixedPoints` at the
  task's ``conditions()``;
* ``geometry/<task>.safetensors``: ``members [N]`` (catalog ids of the non-diverged
  members of that task) and one ``[N, N]`` distance matrix per metric.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import Tensor

from ..dynamics import FixedPointConfig, FixedPoints, find_fixed_points
from ..geometry import DEFAULT_K, METRICS, pairwise_distances
from ..population import Population
from ..store import RunStore, atomic_save_tensors, config_hash, load_tensors
from ..training import DIVERGED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalysisConfig:
    """What ``analyze`` computes. ``full_state``: use the whole state (LSTM: [h, c]) as the
    geometry representation instead of the hidden state h (the default, as the readout
    sees it)."""

    n_trials: int = 32
    trial_seed: int = 20190722
    metrics: tuple[str, ...] = tuple(METRICS)
    k: int = DEFAULT_K
    full_state: bool = False
    fixed_points: FixedPointConfig = field(default_factory=FixedPointConfig)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Step = Callable[[str], None]  # called with a description of each unit of work


def _stamp(path: Path) -> str | None:
    """The ``source`` hash recorded in an analysis file, or None if absent/unreadable."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            return (fh.metadata() or {}).get("source")
    except Exception:  # a torn or foreign file is recomputed
        return None


def probe_states(population: Population, config: AnalysisConfig) -> Tensor:
    """States ``[P, B, T, S]`` on the task's shared, seeded probe trials."""
    trials = population.task.sample(config.n_trials, torch.Generator().manual_seed(config.trial_seed))
    with torch.no_grad():
        states, _ = population.run(trials.inputs)
    return states.cpu()


def analyze_run(store: RunStore, config: AnalysisConfig = AnalysisConfig(), device: str | torch.device = "cpu",
                on_step: Step | None = None) -> None:
    """Compute (or reuse) states and fixed points of every shard, then geometry per task."""
    root = store.path / "analysis"
    for sub in ("states", "fixed_points", "geometry"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    settings = config.as_dict()
    tasks: dict[str, list[str]] = {}
    for shard in store.shards():
        info = store.shard_info(shard)
        tasks.setdefault(info["task"], []).append(shard)
        pop: Population | None = None

        states_path = root / "states" / f"{shard}.safetensors"
        source = config_hash({"shard": info["config_hash"], "n_trials": config.n_trials, "seed": config.trial_seed})
        if _stamp(states_path) != source:
            if on_step:
                on_step(f"states {shard}")
            pop = store.load_population(shard, device)
            atomic_save_tensors({"states": probe_states(pop, config)}, states_path, {"source": source})

        fp_path = root / "fixed_points" / f"{shard}.safetensors"
        source = config_hash({"shard": info["config_hash"], "fixed_points": settings["fixed_points"]})
        if _stamp(fp_path) != source:
            if on_step:
                on_step(f"fixed points {shard}")
            pop = pop or store.load_population(shard, device)
            fps = find_fixed_points(pop, config=config.fixed_points)
            fps.save(fp_path, {"source": source})

    members = store.members()
    for task, shards in tasks.items():
        geometry_path = root / "geometry" / f"{task}.safetensors"
        hashes = [store.shard_info(s)["config_hash"] for s in shards]
        source = config_hash({"shards": hashes, "n_trials": config.n_trials, "seed": config.trial_seed,
                              "metrics": list(config.metrics), "k": config.k, "full_state": config.full_state})
        if _stamp(geometry_path) == source:
            continue
        if on_step:
            on_step(f"geometry {task}")
        ids, reps = [], []
        for shard in shards:
            states = load_tensors(root / "states" / f"{shard}.safetensors")["states"]
            rows = sorted((r for r in members if r["shard"] == shard), key=lambda r: r["idx"])
            hidden = rows[0]["hidden"]
            for r in rows:
                if r["status"] == DIVERGED:
                    continue
                rep = states[r["idx"]] if config.full_state else states[r["idx"], ..., :hidden]
                ids.append(r["member"])
                reps.append(rep.reshape(-1, rep.shape[-1]))
        out = {"members": torch.tensor(ids, dtype=torch.int64)}
        # CCA metrics compare k principal directions; a network with fewer (small or
        # degenerate, e.g. dead ReLU units) lowers k for the whole task, recorded below.
        k = min([config.k, *(int(torch.linalg.matrix_rank(r - r.mean(0))) for r in reps)])
        if len(reps) >= 2:
            for metric in config.metrics:
                extra: dict[str, Any] = {"k": k} if "k" in METRICS[metric].params else {}
                out[metric] = pairwise_distances(reps, metric, **extra).cpu()
        atomic_save_tensors(out, geometry_path, {"source": source, "k": str(k),
                                                 "config": json.dumps(settings, default=str)})


def load_fixed_points(store: RunStore, shard: str) -> FixedPoints:
    """The stored fixed points of ``shard`` (run ``analyze`` first)."""
    path = store.path / "analysis" / "fixed_points" / f"{shard}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no fixed points yet; run `universality analyze {store.path}`")
    return FixedPoints.load(path)


def load_geometry(store: RunStore, task: str) -> dict[str, Tensor]:
    """``members [N]`` and the ``[N, N]`` distance matrices of ``task``."""
    path = store.path / "analysis" / "geometry" / f"{task}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no geometry yet; run `universality analyze {store.path}`")
    return load_tensors(path)


def analysis_rows(store: RunStore) -> list[dict[str, Any]]:
    """Per member: ``member``, ``shard``, ``passed`` and ``fixed_points`` (``count``,
    ``stable``, ``index_counts``, ``max_residual``, ... over all the task's conditions)."""
    rows = []
    members = store.members()
    for shard in store.shards():
        summary = load_fixed_points(store, shard).summary()
        for r in sorted((r for r in members if r["shard"] == shard), key=lambda r: r["idx"]):
            rows.append({"member": r["member"], "shard": shard, "task": r["task"], "arch": r["arch"],
                         "activation": r["activation"], "status": r["status"], "passed": r["passed"],
                         "fixed_points": summary[r["idx"]]})
    return sorted(rows, key=lambda r: r["member"])
