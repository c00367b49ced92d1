"""``universality analyze``: per-shard states and fixed points, per-task geometry.

Everything lands under ``DIR/analysis/`` and is resumable: each file records a hash of
what it was computed from (the shard's config hash plus the analysis settings), and is
recomputed only when that changes.

* ``states/<shard>.safetensors``: ``states [P, B, T, S]`` on the task's shared probe
  trials (``AnalysisConfig.trial_seed``: every architecture sees identical inputs);
* ``fixed_points/<shard>.safetensors``: :class:`~universality.dynamics.FixedPoints` at the
  task's ``conditions()``;
* ``scaffold/<shard>.safetensors``: per member the scaffold's discrete ``topology [P, D]``
  and continuous ``dynamics [P, D']`` signatures, the homology ``fingerprints [P, D'']``
  of its probe-state cloud, and (metadata ``numbers``) the JSON list of each member's
  ``Scaffold.as_dict()`` (criteria included);
* ``geometry/<task>.safetensors``: ``members [N]`` (catalog ids of the non-diverged
  members of that task) and one ``[N, N]`` distance matrix per metric, plus SVCCA at
  each of ``AnalysisConfig.svcca_ks`` components (``svcca_k3``, ...);
* ``topology/<task>.safetensors``: ``members [N]`` and the ``[N, N]`` distances
  ``topology`` (the task's topology-signature distance), ``dynamics`` (its
  dynamics-signature distance) and ``homology`` (fingerprint distance).

Diverged members are not analysed (their weights are frozen at an exploding state): they
have no fixed points, NaN scaffold rows and the numbers ``{"canonical": false,
"diverged": true}``. Geometry, topology and claims leave them out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from torch import Tensor

from ..dynamics import FixedPointConfig, FixedPoints, find_fixed_points
from ..geometry import DEFAULT_K, METRICS, pairwise_distances
from ..io import atomic_save_tensors, file_sha256
from ..population import Population
from ..scaffold import SCAFFOLDS, distance_matrix
from ..scaffold.homology import diagram_distance, fingerprint
from ..store import MemberRow, RunError, RunStore, config_hash
from ..tasks import task_from_config
from ..training import DIVERGED

log = logging.getLogger(__name__)

#: Version of the scaffold and topology files' content: part of their cache key, so that
#: files written by an older scaffold definition are recomputed, not misread.
SCAFFOLD_FORMAT = 5


@dataclass(frozen=True)
class AnalysisConfig:
    """What ``analyze`` computes. ``full_state``: use the whole state (LSTM: [h, c]) as the
    geometry representation instead of the hidden state h (the default, as the readout
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


def cached(store: RunStore, path: Path, inputs: dict[str, Any], compute: Callable[[str], None], what: str,
           on_step: Step | None = None) -> None:
    """Keep ``path`` if it holds a result stamped with the hash of ``inputs`` and matches its
    recorded SHA-256; otherwise call ``compute(source)``, which writes ``path`` with metadata
    ``{"source": source}``, and record the new file's SHA-256. A file that is damaged
    (missing, torn or altered after it was recorded) is recomputed with a warning."""
    source = config_hash(inputs)
    recorded = store.file_checksum(path)
    stamp = _stamp(path)
    if stamp == source and (recorded is None or file_sha256(path) == recorded):
        return
    if recorded is not None and (stamp is None or stamp == source):
        log.warning("%s is damaged (missing, torn or altered); recomputing it", path)
    if on_step:
        on_step(what)
    compute(source)
    store.record_file(path)


def probe_states(population: Population, config: AnalysisConfig) -> Tensor:
    """States ``[P, B, T, S]`` on the task's shared, seeded probe trials."""
    trials = population.task.sample(config.n_trials, torch.Generator().manual_seed(config.trial_seed))
    with torch.no_grad():
        states, _ = population.run(trials.inputs)
    return states.cpu()


def analysis_dirs(store: RunStore) -> Path:
    """``DIR/analysis`` with its sub-directories (created)."""
    root = store.path / "analysis"
    for sub in ("states", "fixed_points", "scaffold", "geometry", "topology"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


def analyze_shard(store: RunStore, shard: str, config: AnalysisConfig = AnalysisConfig(),
                  device: str | torch.device = "cpu", on_step: Step | None = None) -> None:
    """Compute (or reuse) one shard's probe states, fixed points and scaffolds."""
    root = analysis_dirs(store)
    info = store.shard_info(shard)
    loaded: list[Population] = []

    def population() -> Population:
        if not loaded:
            loaded.append(store.load_population(shard, device))
        return loaded[0]

    states_path = root / "states" / f"{shard}.safetensors"

    def states(source: str) -> None:
        atomic_save_tensors({"states": probe_states(population(), config)}, states_path, {"source": source})

    cached(store, states_path, {"shard": info["config_hash"], "n_trials": config.n_trials, "seed": config.trial_seed},
           states, f"states {shard}", on_step)

    # Diverged members (frozen at non-finite or exploding weights) are not analysed: their
    # fixed points are empty and their scaffold rows NaN, with numbers {"diverged": true}.
    alive = [r.idx for r in store.members(shard) if r.status != DIVERGED]
    fp_path = root / "fixed_points" / f"{shard}.safetensors"
    n_conditions = len(task_from_config(info["task_config"]).conditions())
    fp_config = config.fixed_point_config(info["task"], n_conditions)

    def fixed_points(source: str) -> None:
        pop = population()
        if alive:
            fps = find_fixed_points(pop.select(alive), config=fp_config).expand(alive, len(pop))
        else:
            conditions = pop.task.conditions().to(torch.float64)
            fps = FixedPoints.empty(len(pop), conditions, pop.state_size, fp_config.as_dict())
        fps.save(fp_path, {"source": source})

    cached(store, fp_path, {"shard": info["config_hash"], "fixed_points": fp_config.as_dict(), "alive": alive},
           fixed_points, f"fixed points {shard}", on_step)

    sc_path = root / "scaffold" / f"{shard}.safetensors"

    def scaffold(source: str) -> None:
        pop = population()
        store.check_file(fp_path)
        fps = FixedPoints.load(fp_path)
        scaffolds = SCAFFOLDS[info["task"]].compute(pop.select(alive), fps.select(alive)) if alive else []
        probe = store.load_file(states_path)["states"]
        numbers: list[dict[str, Any]] = [{"canonical": False, "diverged": True}] * len(pop)
        topology: list[np.ndarray | None] = [None] * len(pop)
        dynamics: list[np.ndarray | None] = [None] * len(pop)
        fingerprints: list[np.ndarray | None] = [None] * len(pop)
        for i, sc in zip(alive, scaffolds, strict=True):
            numbers[i], topology[i], dynamics[i] = sc.as_dict(), sc.topology, sc.dynamics
            fingerprints[i] = fingerprint(probe[i, ..., : pop.hidden_size], n_points=config.homology_points, seed=i)
        atomic_save_tensors({"topology": _rows(topology), "dynamics": _rows(dynamics),
                             "fingerprints": _rows(fingerprints)},
                            sc_path, {"source": source, "numbers": json.dumps(numbers, default=jsonable)})

    cached(store, sc_path, {"fixed_points": _stamp(fp_path), "states": _stamp(states_path),
                            "homology_points": config.homology_points, "format": SCAFFOLD_FORMAT},
           scaffold, f"scaffold {shard}", on_step)


def analyze_run(store: RunStore, config: AnalysisConfig = AnalysisConfig(), device: str | torch.device = "cpu",
                on_step: Step | None = None, shards_done: bool = False) -> None:
    """Every shard's states, fixed points and scaffolds (skipped when ``shards_done``,
    e.g. computed by worker processes), then geometry and topology per task."""
    root = analysis_dirs(store)
    damaged = store.damage(analysis=False)
    if damaged:
        raise RunError(f"{store.path}: damaged weights ({'; '.join(map(str, damaged))}); `universality run` with "
                       "the run's preset retrains them from their seeds")
    tasks: dict[str, list[str]] = {}
    for shard in store.shards():
        tasks.setdefault(store.shard_info(shard)["task"], []).append(shard)
        if not shards_done:
            analyze_shard(store, shard, config, device, on_step)
    for task, shards in tasks.items():
        rows = [r for s in shards for r in store.members(s) if r.status != DIVERGED]
        _task_geometry(store, root, task, shards, rows, config, on_step)
        _task_topology(store, root, task, shards, rows, on_step)


def _task_geometry(store: RunStore, root: Path, task: str, shards: list[str], rows: list[MemberRow],
                   config: AnalysisConfig, on_step: Step | None) -> None:
    """``geometry/<task>``: the distance matrices of every metric over the task's members."""
    path = root / "geometry" / f"{task}.safetensors"
    ids = [r.member for r in rows]

    def compute(source: str) -> None:
        shard_states = {s: store.load_file(root / "states" / f"{s}.safetensors")["states"] for s in shards}
        reps = []
        for r in rows:
            rep = shard_states[r.shard][r.idx]
            rep = rep if config.full_state else rep[..., : r.hidden]
            reps.append(rep.reshape(-1, rep.shape[-1]))
        # CCA metrics compare k principal directions; a network with fewer (small or
        # degenerate, e.g. dead ReLU units) lowers k for the whole task, recorded below.
        k = min([config.k, *(int(torch.linalg.matrix_rank(r - r.mean(0))) for r in reps)])
        geometry = {"members": torch.tensor(ids, dtype=torch.int64)}
        if len(reps) >= 2:
            for metric in config.metrics:
                extra: dict[str, Any] = {"k": k} if "k" in METRICS[metric].params else {}
                geometry[metric] = pairwise_distances(reps, metric, **extra).cpu()
            for k_extra in config.svcca_ks:
                geometry[f"svcca_k{k_extra}"] = pairwise_distances(reps, "svcca", k=min(k, k_extra)).cpu()
        atomic_save_tensors(geometry, path, {"source": source, "k": str(k),
                                             "config": json.dumps(config.as_dict(), default=str)})

    cached(store, path, {"states": [_stamp(root / "states" / f"{s}.safetensors") for s in shards], "members": ids,
                         "metrics": list(config.metrics), "k": config.k,
                         "svcca_ks": list(config.svcca_ks), "full_state": config.full_state},
           compute, f"geometry {task}", on_step)


def _task_topology(store: RunStore, root: Path, task: str, shards: list[str], rows: list[MemberRow],
                   on_step: Step | None) -> None:
    """``topology/<task>``: topology-signature, dynamics-signature and homology distances
    over the task's members."""
    path = root / "topology" / f"{task}.safetensors"
    ids = [r.member for r in rows]

    def compute(source: str) -> None:
        sc = {s: store.load_file(root / "scaffold" / f"{s}.safetensors") for s in shards}
        topology = {"members": torch.tensor(ids, dtype=torch.int64)}
        if rows:
            spec = SCAFFOLDS[task]
            for signature, fn in (("topology", spec.distance), ("dynamics", spec.dynamics_distance)):
                v = np.stack([sc[r.shard][signature][r.idx].numpy() for r in rows])
                topology[signature] = torch.as_tensor(distance_matrix(fn, v))
            f = np.stack([sc[r.shard]["fingerprints"][r.idx].numpy() for r in rows])
            topology["homology"] = torch.as_tensor(distance_matrix(diagram_distance, f))
        atomic_save_tensors(topology, path, {"source": source})

    cached(store, path, {"scaffold": [_stamp(root / "scaffold" / f"{s}.safetensors") for s in shards],
                         "members": ids, "format": SCAFFOLD_FORMAT}, compute, f"topology {task}", on_step)


def _rows(rows: list[np.ndarray | None]) -> Tensor:
    """Stack per-member vectors ``[P, D]`` (float64), NaN rows for ``None`` (diverged)."""
    width = max((len(r) for r in rows if r is not None), default=0)
    return torch.as_tensor(np.stack([np.full(width, np.nan) if r is None else r for r in rows]), dtype=torch.float64)


def jsonable(value: Any) -> Any:
    """``json.dumps(default=...)``: numpy scalars and arrays (scaffold numbers, claim details) -> JSON."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _analysis_file(store: RunStore, kind: str, name: str) -> Path:
    """``DIR/analysis/<kind>/<name>.safetensors``, which must exist (run ``analyze`` first)
    and match its recorded SHA-256."""
    path = store.path / "analysis" / kind / f"{name}.safetensors"
    if not path.is_file() and store.file_checksum(path) is None:
        raise FileNotFoundError(f"{path}: no {kind.replace('_', ' ')} yet; run `universality analyze {store.path}`")
    store.check_file(path)
    return path


def load_scaffolds(store: RunStore, shard: str) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Per-member scaffold numbers (``Scaffold.as_dict()``) and the ``topology`` /
    ``dynamics`` / ``fingerprints`` tensors of ``shard``."""
    path = _analysis_file(store, "scaffold", shard)
    tensors = store.load_file(path)
    with safe_open(str(path), framework="pt") as fh:
        numbers = json.loads((fh.metadata() or {})["numbers"])
    return numbers, tensors


def load_states(store: RunStore, shard: str) -> Tensor:
    """The probe states ``[P, B, T, S]`` of ``shard``."""
    return store.load_file(_analysis_file(store, "states", shard))["states"]


def load_topology(store: RunStore, task: str) -> dict[str, Tensor]:
    """``members [N]`` and the ``[N, N]`` distances ``topology``, ``dynamics`` and ``homology`` of ``task``."""
    return store.load_file(_analysis_file(store, "topology", task))


def load_fixed_points(store: RunStore, shard: str) -> FixedPoints:
    """The stored fixed points of ``shard`` (run ``analyze`` first)."""
    return FixedPoints.load(_analysis_file(store, "fixed_points", shard))


def load_geometry(store: RunStore, task: str) -> dict[str, Tensor]:
    """``members [N]`` and the ``[N, N]`` distance matrices of ``task``."""
    return store.load_file(_analysis_file(store, "geometry", task))


def analysis_rows(store: RunStore) -> list[dict[str, Any]]:
    """Per member: ``member``, ``shard``, ``passed``, ``fixed_points`` (``count``,
    ``stable``, ``index_counts``, ``max_residual``, ... over all the task's conditions) and
    ``scaffold`` (``canonical`` and the task's key numbers)."""
    rows = []
    for shard in store.shards():
        summary = load_fixed_points(store, shard).summary()
        numbers, _ = load_scaffolds(store, shard)
        for r in store.members(shard):
            rows.append({"member": r.member, "shard": shard, "task": r.task, "arch": r.arch,
                         "activation": r.activation, "status": r.status, "passed": r.passed,
                         "fixed_points": summary[r.idx], "scaffold": numbers[r.idx]})
    return sorted(rows, key=lambda r: r["member"])
