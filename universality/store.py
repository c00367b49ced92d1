"""Run directories: an SQLite catalog plus one safetensors file per shard.

Layout::

    DIR/catalog.sqlite          runs, shards, members, metrics (+ provenance)
    DIR/shards/<shard>.<stamp>.safetensors   stacked parameters [P, ...] of one shard

Loading never unpickles. Each save writes a new weights file (temporary name,
fsync, ``os.replace``), then switches the catalog to it in one SQLite transaction and
removes the old file, so a run killed at any moment leaves either the previous
state or the new one (at worst an orphaned, unreferenced weights file).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib
import json
import os
import platform
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import __version__
from .cells import Cell, ModuleCell, make_cell
from .population import Member, Population
from .tasks import task_from_config

CATALOG = "catalog.sqlite"
SCHEMA_VERSION = 1
FORMAT = "universality-run"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    shard TEXT PRIMARY KEY, task TEXT NOT NULL, task_config TEXT NOT NULL,
    cell TEXT NOT NULL, hidden INTEGER NOT NULL, file TEXT NOT NULL,
    train_config TEXT NOT NULL, config_hash TEXT NOT NULL, provenance TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS members (
    member INTEGER PRIMARY KEY, shard TEXT NOT NULL REFERENCES shards(shard),
    idx INTEGER NOT NULL, task TEXT NOT NULL, arch TEXT NOT NULL, activation TEXT NOT NULL,
    hidden INTEGER NOT NULL, l2 REAL NOT NULL, lr REAL NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL, loss REAL, score REAL, passed INTEGER NOT NULL, steps INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS metrics (
    member INTEGER NOT NULL REFERENCES members(member), name TEXT NOT NULL, value REAL,
    PRIMARY KEY (member, name));
"""


class RunError(Exception):
    """A run directory is missing, foreign or corrupt."""


def config_hash(config: dict[str, Any]) -> str:
    """Short SHA-256 of a JSON-able config (key order irrelevant)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def provenance(device: str | torch.device, seed: int | None = None) -> dict[str, Any]:
    """Who/what/when: package and torch versions, device, threads, date, host."""
    return {
        "package_version": __version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def cell_spec(cell: Cell) -> str:
    """A string that rebuilds ``cell``: ``builtin:ARCH:ACTIVATION`` or ``module:MOD:ATTR``."""
    if isinstance(cell, ModuleCell):
        factory = cell.factory
        return f"module:{factory.__module__}:{factory.__qualname__}"
    return f"builtin:{cell.arch}:{cell.activation}"


def cell_from_spec(spec: str) -> Cell:
    kind, _, rest = spec.partition(":")
    if kind == "builtin":
        arch, _, activation = rest.partition(":")
        return make_cell(arch, activation)
    if kind == "module":
        module_name, _, attr = rest.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return ModuleCell(obj)
    raise RunError(f"unknown cell spec {spec!r} in catalog")


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (temp file + fsync + rename)."""
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunError(f"{path}: cannot read weights ({err}); the run directory is corrupt") from err


class RunStore:
    """A run directory. ``RunStore.create(path)`` makes one, ``RunStore(path)`` opens one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        catalog = self.path / CATALOG
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run directory")
        if not catalog.is_file():
            raise RunError(f"{self.path}: not a universality run (no {CATALOG})")
        try:
            with self._connect() as db:
                row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.DatabaseError as err:
            raise RunError(f"{catalog}: corrupt catalog ({err})") from err
        if row is None or row[0] != FORMAT:
            raise RunError(f"{catalog}: not a universality run catalog")

    @classmethod
    def create(cls, path: str | os.PathLike[str], exist_ok: bool = True) -> RunStore:
        """Create (or, with ``exist_ok``, open) a run directory. An existing
        non-empty directory that is not a run is refused."""
        p = Path(path)
        if p.exists():
            if (p / CATALOG).exists():
                if not exist_ok:
                    raise RunError(f"{p}: a run already exists here")
                return cls(p)
            if not p.is_dir() or any(p.iterdir()):
                raise RunError(f"{p}: exists and is not a universality run; choose another --out")
        (p / "shards").mkdir(parents=True, exist_ok=True)
        tmp = p / (CATALOG + ".tmp")
        db = sqlite3.connect(tmp)
        try:
            db.executescript(_SCHEMA)
            db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("created", _now())],
            )
            db.commit()
        finally:
            db.close()
        os.replace(tmp, p / CATALOG)
        return cls(p)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path / CATALOG, timeout=30)
        try:
            with db:
                yield db
        finally:
            db.close()

    # ------------------------------------------------------------------ writing
    def save_population(
        self,
        shard: str,
        population: Population,
        train_config: dict[str, Any],
        results: dict[str, Sequence[Any]],
        device: str | torch.device = "cpu",
    ) -> None:
        """Store a trained shard: weights, member rows and provenance (replaces a shard of
        the same name). ``results`` has per-member lists ``status``, ``loss``, ``score``,
        ``passed``, ``steps``."""
        if not shard.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"shard name {shard!r} must be alphanumeric with - or _")
        task_config = population.task.config()
        spec = cell_spec(population.cell)
        full_config = {"task": task_config, "cell": spec, "hidden": population.hidden_size,
                       "train": train_config, "members": [m.as_dict() for m in population.members]}
        prov = provenance(device, train_config.get("seed"))
        # A fresh file name per save: the catalog switches to it in one transaction, so the
        # weights and the rows describing them always change together.
        file = f"shards/{shard}.{time.time_ns():x}.safetensors"
        atomic_save_tensors(population.params, self.path / file,
                            {"cell": spec, "hidden": str(population.hidden_size), "task": population.task.name})
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock first: worker processes save concurrently
            old_file = db.execute("SELECT file FROM shards WHERE shard = ?", (shard,)).fetchone()
            old = [r[0] for r in db.execute("SELECT member FROM members WHERE shard = ?", (shard,))]
            db.executemany("DELETE FROM metrics WHERE member = ?", [(m,) for m in old])
            db.execute("DELETE FROM members WHERE shard = ?", (shard,))
            db.execute("DELETE FROM shards WHERE shard = ?", (shard,))
            db.execute(
                "INSERT INTO shards VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (shard, population.task.name, json.dumps(task_config), spec, population.hidden_size, file,
                 json.dumps(train_config), config_hash(full_config), json.dumps(prov)),
            )
            next_id = db.execute("SELECT COALESCE(MAX(member) + 1, 0) FROM members").fetchone()[0]
            for i, m in enumerate(population.members):
                db.execute(
                    "INSERT INTO members VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (next_id + i, shard, i, m.task, m.arch, m.activation, m.hidden, m.l2, m.lr, m.seed,
                     results["status"][i], _nan_to_none(results["loss"][i]), _nan_to_none(results["score"][i]),
                     int(bool(results["passed"][i])), int(results["steps"][i])),
                )
        if old_file is not None and old_file[0] != file:
            (self.path / old_file[0]).unlink(missing_ok=True)

    def set_metrics(self, values: dict[int, dict[str, float]]) -> None:
        """Upsert named scalar metrics per member id."""
        with self._connect() as db:
            db.executemany(
                "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?)",
                [(m, k, _nan_to_none(v)) for m, kv in values.items() for k, v in kv.items()],
            )

    # ------------------------------------------------------------------ reading
    def meta(self, key: str) -> str:
        """A value of the catalog's ``meta`` table (``format``, ``schema_version``, ``created``)."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise RunError(f"{self.path}: catalog has no {key!r}")
        return str(row[0])

    def shards(self) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT shard FROM shards ORDER BY rowid")]

    def shard_info(self, shard: str) -> dict[str, Any]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM shards WHERE shard = ?", (shard,)).fetchone()
        if row is None:
            raise RunError(f"{self.path}: no shard {shard!r}; shards are {self.shards()}")
        info = dict(row)
        for key in ("task_config", "train_config", "provenance"):
            info[key] = json.loads(info[key])
        return info

    def members(self) -> list[dict[str, Any]]:
        """Every member row (dicts with the catalog's columns, ``passed`` as bool)."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM members ORDER BY member")]
            metric_rows = db.execute("SELECT member, name, value FROM metrics").fetchall()
        metrics: dict[int, dict[str, float]] = {}
        for member, name, value in metric_rows:
            metrics.setdefault(member, {})[name] = value
        for r in rows:
            r["passed"] = bool(r["passed"])
            r["metrics"] = metrics.get(r["member"], {})
        return rows

    def load_population(self, shard: str, device: str | torch.device = "cpu") -> Population:
        """Rebuild a shard's Population exactly as saved."""
        info = self.shard_info(shard)
        task = task_from_config(info["task_config"])
        cell = cell_from_spec(info["cell"])
        if isinstance(cell, ModuleCell):
            cell.init_params(task.input_size, info["hidden"], torch.Generator().manual_seed(0))
        params = load_tensors(self.path / info["file"])
        rows = [r for r in self.members() if r["shard"] == shard]
        members = [
            Member(r["task"], r["arch"], r["activation"], r["hidden"], r["l2"], r["lr"], r["seed"])
            for r in sorted(rows, key=lambda r: r["idx"])
        ]
        try:
            pop = Population(cell, task, info["hidden"], members, params)
        except ValueError as err:
            raise RunError(f"{self.path}: shard {shard!r} is inconsistent with its catalog ({err})") from err
        return pop.to(device)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return value
