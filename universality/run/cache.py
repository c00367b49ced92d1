"""The analysis files of a run as a cache: what each kind is computed from, declared once.

Each kind of analysis file (:data:`KINDS`) names what it ``needs``: the shard's weights, or
other kinds of the same shard (a per-shard kind), or a per-shard kind over every shard of
the task (a per-task kind). A file's ``source`` is a hash of the sources of what it needs
and of its own settings, known before anything is computed (:func:`plan`); the file keeps
it in its metadata (``source``), and the catalog keeps the file's SHA-256. A file is
current when both match (:func:`is_current`); :func:`write` stores a new one.
:func:`dependents` follows the declarations down, so repairing damaged weights forgets
exactly the files computed from them.

Reading (:func:`read`, :func:`load_states`, ...) checks each file against its SHA-256 in
one read of its bytes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from ..dynamics import FixedPoints
from . import files
from .catalog import RunStore, config_hash
from .layout import ANALYSIS_KINDS, SHARD_KINDS

log = logging.getLogger(__name__)

WEIGHTS = "weights"


@dataclass(frozen=True)
class Kind:
    """A kind of analysis file: one per shard or one per task (``per``), computed from
    ``needs`` (``weights`` or other kinds)."""

    name: str
    per: str
    needs: tuple[str, ...]


#: Every kind, in an order in which each follows what it needs.
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("states", "shard", (WEIGHTS,)),
    Kind("fixed_points", "shard", (WEIGHTS,)),
    Kind("scaffold", "shard", ("fixed_points", "states")),
    Kind("geometry", "task", ("states",)),
    Kind("topology", "task", ("scaffold",)),
)}
assert tuple(KINDS) == ANALYSIS_KINDS and all(k.per == "shard" for k in KINDS.values() if k.name in SHARD_KINDS)


def dependents(need: str) -> list[str]:
    """The kinds computed, directly or not, from ``need`` (``weights`` or a kind), in order."""
    found: list[str] = []
    for kind in KINDS.values():
        if need in kind.needs or any(n in found for n in kind.needs):
            found.append(kind.name)
    return found


def plan(store: RunStore, tasks: dict[str, list[str]],
         settings: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The ``source`` each analysis file of the run should have, by ``(kind, shard or task)``:
    the hash of its ``settings`` (same keys) and of the sources of what it needs (a shard's
    weights by its config hash; a per-task kind's needs as the list over ``tasks[task]``'s
    shards)."""
    out: dict[tuple[str, str], str] = {}
    for kind in KINDS.values():
        names = tasks if kind.per == "task" else [s for shards in tasks.values() for s in shards]
        for name in names:
            inputs = dict(settings[(kind.name, name)])
            for need in kind.needs:
                if need == WEIGHTS:
                    inputs["shard"] = store.shard_record(name).config_hash
                elif kind.per == "task":
                    inputs[need] = [out[(need, s)] for s in tasks[name]]
                else:
                    inputs[need] = out[(need, name)]
            out[(kind.name, name)] = config_hash(inputs)
    return out


def is_current(store: RunStore, kind: str, name: str, source: str, warn: bool = False) -> bool:
    """Whether ``analysis/<kind>/<name>`` holds a result of ``source`` that matches its
    recorded SHA-256. With ``warn``, a file that is damaged (missing, torn or altered
    after it was recorded) is logged as such."""
    path = store.layout.analysis(kind, name)
    recorded = store.file_checksum(path)
    data = path.read_bytes() if path.is_file() else None
    stamp = None if data is None else (files.metadata(data) or {}).get("source")
    if stamp == source and data is not None and (recorded is None or files.sha256(data) == recorded):
        return True
    if warn and recorded is not None and (stamp is None or stamp == source):
        log.warning("%s is damaged (missing, torn or altered); recomputing it", path)
    return False


def write(store: RunStore, kind: str, name: str, data: bytes) -> None:
    """Store a new ``analysis/<kind>/<name>`` and record its SHA-256."""
    path = store.layout.analysis(kind, name)
    store.record_file(path, files.write_atomic(path, data))


def forget(store: RunStore, kind: str, name: str) -> None:
    """Delete ``analysis/<kind>/<name>`` and its checksum (it will be recomputed)."""
    store.forget_file(store.layout.analysis(kind, name))


# ------------------------------------------------------------------------------ reading
def _checked(store: RunStore, kind: str, name: str) -> tuple[Path, bytes]:
    """The path and bytes of ``analysis/<kind>/<name>``, which must exist (run ``analyze``
    first) and match its recorded SHA-256."""
    path = store.layout.analysis(kind, name)
    if not path.is_file() and store.file_checksum(path) is None:
        raise FileNotFoundError(f"{path}: no {kind.replace('_', ' ')} yet; run `universality analyze {store.path}`")
    store.check_file(path)
    return path, store.read_file(path)


def read(store: RunStore, kind: str, name: str) -> dict[str, Tensor]:
    """The tensors of ``analysis/<kind>/<name>`` (checked)."""
    path, data = _checked(store, kind, name)
    return files.decode(data, path)


def read_bytes(store: RunStore, kind: str, name: str) -> bytes:
    """The bytes of ``analysis/<kind>/<name>`` (checked)."""
    return _checked(store, kind, name)[1]


def load_scaffolds(store: RunStore, shard: str) -> tuple[list[dict[str, Any]], dict[str, Tensor]]:
    """Per-member scaffold numbers (``Scaffold.as_dict()``) and the ``topology [P, D]`` /
    ``dynamics [P, D']`` / ``fingerprints [P, D'']`` tensors of ``shard``."""
    path, data = _checked(store, "scaffold", shard)
    return json.loads((files.metadata(data) or {})["numbers"]), files.decode(data, path)


def load_states(store: RunStore, shard: str) -> Tensor:
    """The probe states ``[P, B, T, S]`` of ``shard``."""
    return read(store, "states", shard)["states"]


def load_fixed_points(store: RunStore, shard: str) -> FixedPoints:
    """The stored fixed points of ``shard``."""
    path, data = _checked(store, "fixed_points", shard)
    return FixedPoints.from_tensors(files.decode(data, path), files.metadata(data) or {}, path)


def load_geometry(store: RunStore, task: str) -> dict[str, Tensor]:
    """``members [N]`` and the ``[N, N]`` distance matrices of ``task``."""
    return read(store, "geometry", task)


def load_topology(store: RunStore, task: str) -> dict[str, Tensor]:
    """``members [N]`` and the ``[N, N]`` distances ``topology``, ``dynamics`` and ``homology`` of ``task``."""
    return read(store, "topology", task)


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
