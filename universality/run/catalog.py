"""The catalog of a run directory: SQLite tables ``meta``, ``shards``, ``members``,
``metrics``, ``files``, read as typed records (:class:`ShardRecord`, :class:`MemberRow`).

Paths come from :mod:`.layout`, file bytes go through :mod:`.files`.

Loading never unpickles. Each save writes a new weights file (temporary name,
fsync, ``os.replace``), then switches the catalog to it in one SQLite transaction and
removes the old file, so a run killed at any moment leaves either the previous
state or the new one (at worst an orphaned, unreferenced weights file).

The catalog records the SHA-256 of every weights file (``shards.sha256``) and of every
analysis file written through :meth:`RunStore.record_file` (table ``files``); loading
checks it, and :meth:`RunStore.damage` lists what no longer matches. Catalogs written
before these columns existed open unchanged (no checksum: not verified); the first write
through a store that opened one adds the missing columns, once.

The catalog itself has a backup, ``DIR/catalog.sqlite.bak``, rewritten (SQLite's backup
API, temporary name, fsync, ``os.replace``) after every committed write, so it always holds
the last or the second-to-last commit. SQLite keeps no checksums of its data, but its
integrity check finds damage to the file's structure (:func:`catalog_problem`); a writer
opening a run whose catalog is damaged or missing (:meth:`RunStore.create`,
:meth:`RunStore.recover`) puts it aside as ``catalog.sqlite.damaged`` and restores the
backup, with a warning. Files the backup does not describe as they are now are then
found by the usual checksums (``run`` retrains or recomputes them). Every
``sqlite3.DatabaseError`` becomes a :class:`CatalogError`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import logging
import os
import platform
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _package_version
from pathlib import Path
from typing import Any

import torch

from ..cells import ModuleCell, cell_from_spec, cell_spec
from ..population import Member, Population
from ..tasks import task_from_config
from ..training import TrainResult
from . import files
from .files import RunError
from .layout import BACKUP, CATALOG, DAMAGED, LOCK, RunLayout, temporary, weights_rel

__all__ = ["CatalogError", "MemberRow", "RunStore", "ShardRecord", "catalog_problem", "config_hash",
           "package_version", "population_from", "provenance"]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: shards.sha256, members.restarts, files
FORMAT = "universality-run"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    shard TEXT PRIMARY KEY, task TEXT NOT NULL, task_config TEXT NOT NULL,
    cell TEXT NOT NULL, hidden INTEGER NOT NULL, file TEXT NOT NULL,
    train_config TEXT NOT NULL, config_hash TEXT NOT NULL, provenance TEXT NOT NULL, sha256 TEXT);
CREATE TABLE IF NOT EXISTS members (
    member INTEGER PRIMARY KEY, shard TEXT NOT NULL REFERENCES shards(shard),
    idx INTEGER NOT NULL, task TEXT NOT NULL, arch TEXT NOT NULL, activation TEXT NOT NULL,
    hidden INTEGER NOT NULL, l2 REAL NOT NULL, lr REAL NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL, loss REAL, score REAL, passed INTEGER NOT NULL, steps INTEGER NOT NULL,
    restarts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS metrics (
    member INTEGER NOT NULL REFERENCES members(member), name TEXT NOT NULL, value REAL,
    PRIMARY KEY (member, name));
CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
"""

#: Columns added after the first schema: (table, column, declaration). Old catalogs read
#: them as their defaults and gain them on their first write.
_ADDED_COLUMNS = (("shards", "sha256", "TEXT"), ("members", "restarts", "INTEGER NOT NULL DEFAULT 0"))


def package_version() -> str:
    """The installed package's version (its metadata is the one source)."""
    try:
        return _package_version("universality")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def config_hash(config: dict[str, Any]) -> str:
    """Short SHA-256 of a JSON-able config (key order irrelevant)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def provenance(device: str | torch.device, seed: int | None = None) -> dict[str, Any]:
    """Who/what/when: package and torch versions, device, threads, date, host."""
    return {
        "package_version": package_version(),
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "seed": seed,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


def population_from(cell: str, task_config: dict[str, Any], hidden: int, members: list[Member],
                    params: dict[str, torch.Tensor]) -> Population:
    """A shard's population from its cell spec, task config, size, members (P) and stacked
    ``params [P, ...]``; :class:`RunError` for an unknown cell spec, ValueError when the
    parameters do not fit the cell, task and members."""
    task = task_from_config(task_config)
    try:
        built = cell_from_spec(cell)
    except ValueError as err:
        raise RunError(f"{err} in catalog") from None
    if isinstance(built, ModuleCell):
        built.init_params(task.input_size, hidden, torch.Generator().manual_seed(0))
    return Population(built, task, hidden, members, params)


@dataclass(frozen=True)
class ShardRecord:
    """A shard's catalog row: ``file`` is its weights file relative to the run directory,
    ``sha256`` that file's checksum (None in catalogs that predate checksums), ``provenance``
    where and with what it was trained."""

    shard: str
    task: str
    task_config: dict[str, Any]
    cell: str
    hidden: int
    file: str
    train_config: dict[str, Any]
    config_hash: str
    provenance: dict[str, Any]
    sha256: str | None = None


@dataclass(frozen=True)
class MemberRow(Member):
    """One member of a run as the catalog records it: its configuration (the
    :class:`~universality.population.Member` fields) and its outcome. ``member`` is its id
    in the run, ``idx`` its position in its shard's stacked weights; ``loss``/``score`` are
    None when not finite; ``restarts`` counts divergence restarts in training (0 in
    catalogs written before it was recorded); ``metrics`` holds the named scalars of
    :meth:`RunStore.set_metrics`."""

    member: int
    shard: str
    idx: int
    status: str
    loss: float | None
    score: float | None
    passed: bool
    steps: int
    restarts: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict, compare=False)

    def spec(self) -> Member:
        """The configuration alone, as a :class:`Population` takes it."""
        return Member(*(getattr(self, f.name) for f in dataclasses.fields(Member)))


_MEMBER_COLUMNS = tuple(f.name for f in dataclasses.fields(MemberRow) if f.name != "metrics")


@dataclass(frozen=True)
class Damage:
    """A file of a run that no longer matches the catalog: ``kind`` is ``weights`` or
    ``analysis``, ``owner`` the shard (weights) or the analysis file's relative path."""

    kind: str
    path: str
    owner: str
    problem: str  # "missing", "checksum mismatch"

    def __str__(self) -> str:
        return f"{self.kind} {self.path}: {self.problem}"


class CatalogError(RunError):
    """The catalog cannot be read: SQLite reports it damaged, or it is missing."""


def catalog_problem(path: Path) -> str | None:
    """What is wrong with the catalog file at ``path`` (None: nothing): missing, unreadable,
    not a run catalog, or the findings of SQLite's ``PRAGMA integrity_check``."""
    if not path.is_file():
        return "missing"
    try:
        db = sqlite3.connect(path, timeout=30)  # read-write: a hot journal left by a crash is rolled back
        try:
            found = [str(r[0]) for r in db.execute("PRAGMA integrity_check")]
            if found != ["ok"]:
                return "SQLite integrity check: " + "; ".join(" ".join(f.split()) for f in found[:3])
            row = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        return f"unreadable ({err})"
    return None if row is not None and row[0] == FORMAT else "not a universality run catalog"


class RunStore:
    """A run directory. ``RunStore.create(path)`` makes one (or opens one to write to),
    ``RunStore(path)`` opens one."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.layout = RunLayout(self.path)
        self._migrated = False
        catalog = self.layout.catalog
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run directory")
        if not catalog.is_file():
            if self.layout.backup.is_file():
                raise CatalogError(f"{catalog}: missing; {self._restore_hint()}")
            raise RunError(f"{self.path}: not a universality run (no {CATALOG})")
        if self.meta("format") != FORMAT:
            raise RunError(f"{catalog}: not a universality run catalog")

    @classmethod
    def create(cls, path: str | os.PathLike[str], exist_ok: bool = True) -> RunStore:
        """Create (or, with ``exist_ok``, open to write to: :meth:`recover`) a run directory.
        An existing non-empty directory that is not a run is refused (its lock file aside)."""
        p, layout = Path(path), RunLayout(path)
        if p.exists():
            if layout.catalog.exists() or layout.backup.exists():
                if not exist_ok:
                    raise RunError(f"{p}: a run already exists here")
                return cls.recover(p)
            if not p.is_dir() or any(child.name != LOCK for child in p.iterdir()):
                raise RunError(f"{p}: exists and is not a universality run; choose another --out")
        layout.shards.mkdir(parents=True, exist_ok=True)
        tmp = temporary(layout.catalog)
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp)
        try:
            db.executescript(_SCHEMA)
            db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION)), ("created", _now())],
            )
            db.commit()
        finally:
            db.close()
        os.replace(tmp, layout.catalog)
        store = cls(p)
        store._backup()
        return store

    @classmethod
    def recover(cls, path: str | os.PathLike[str]) -> RunStore:
        """Open the run at ``path`` to write to it. A catalog that is damaged or missing
        (:func:`catalog_problem`) is put aside as ``catalog.sqlite.damaged`` and its backup
        restored, with a warning; :class:`CatalogError` when there is no intact backup."""
        p, layout = Path(path), RunLayout(path)
        catalog, backup = layout.catalog, layout.backup
        problem = catalog_problem(catalog) if p.is_dir() else None
        if problem is None or (problem == "missing" and not backup.exists()):
            return cls(p)
        if catalog_problem(backup) is not None:
            raise CatalogError(f"{catalog}: {problem}, and there is no intact backup ({BACKUP}) to restore; the "
                               "runs it described are lost: move the directory away and run again")
        if catalog.exists():
            os.replace(catalog, layout.damaged)
        tmp = temporary(catalog)
        shutil.copyfile(backup, tmp)
        os.replace(tmp, catalog)
        log.warning("%s: %s; restored the backup written at its last commit (the damaged catalog is kept as %s)",
                    catalog, problem, DAMAGED)
        return cls(p)

    def _restore_hint(self) -> str:
        return (f"a writing command (e.g. `universality run --out {self.path}` with its preset) restores it from its "
                f"backup {BACKUP}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection to the catalog (committed on success); SQLite errors become
        :class:`CatalogError`."""
        catalog = self.layout.catalog
        try:
            db = sqlite3.connect(catalog, timeout=30)
            try:
                with db:
                    yield db
            finally:
                db.close()
        except sqlite3.DatabaseError as err:
            raise CatalogError(f"{catalog}: cannot read the catalog ({err}); {self._restore_hint()}") from err

    def _backup(self) -> None:
        """Copy the committed catalog to ``catalog.sqlite.bak`` (atomically)."""
        tmp = temporary(self.layout.backup)
        tmp.unlink(missing_ok=True)
        with self._connect() as db:
            target = sqlite3.connect(tmp)
            try:
                db.backup(target)
            finally:
                target.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, self.layout.backup)

    def integrity(self) -> str | None:
        """What SQLite's integrity check finds wrong with the catalog (None: nothing)."""
        return catalog_problem(self.layout.catalog)

    def _columns(self, db: sqlite3.Connection, table: str) -> set[str]:
        return {r[1] for r in db.execute(f"PRAGMA table_info({table})")}

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Bring an older catalog to the current schema (inside a write transaction), once
        per opened store."""
        if self._migrated:
            return
        db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL)")
        for table, column, declaration in _ADDED_COLUMNS:
            if column not in self._columns(db, table):
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        self._migrated = True

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's lock from its start, on a catalog brought to
        the current schema; the backup is rewritten once it is committed."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            self._migrate(db)
            yield db
        self._backup()

    # ------------------------------------------------------------------ writing
    def save_population(self, shard: str, population: Population, train_config: dict[str, Any],
                        result: TrainResult, device: str | torch.device = "cpu",
                        origin: dict[str, Any] | None = None) -> None:
        """Store a trained shard: weights (with their SHA-256), one member row per member
        from ``result`` and provenance (replaces a shard of the same name). ``origin``: the
        provenance of a shard trained elsewhere (another process or node), recorded instead
        of this process's."""
        if not shard.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"shard name {shard!r} must be alphanumeric with - or _")
        if len(result.status) != len(population):
            raise ValueError(f"result has {len(result.status)} members, the population {len(population)}")
        task_config = population.task.config()
        spec = cell_spec(population.cell)
        full_config = {"task": task_config, "cell": spec, "hidden": population.hidden_size,
                       "train": train_config, "members": [m.as_dict() for m in population.members]}
        prov = origin if origin is not None else provenance(device, train_config.get("seed"))
        restarts = result.restarts or [0] * len(population)  # empty: not recorded
        # A fresh file name per save: the catalog switches to it in one transaction, so the
        # weights and the rows describing them always change together.
        file = weights_rel(shard, f"{time.time_ns():x}")
        digest = files.save_tensors(population.params, {"cell": spec, "hidden": str(population.hidden_size),
                                                        "task": population.task.name}, self.layout.file(file))
        with self._write() as db:
            old_file = db.execute("SELECT file FROM shards WHERE shard = ?", (shard,)).fetchone()
            old = [r[0] for r in db.execute("SELECT member FROM members WHERE shard = ? ORDER BY idx", (shard,))]
            db.executemany("DELETE FROM metrics WHERE member = ?", [(m,) for m in old])
            db.execute("DELETE FROM members WHERE shard = ?", (shard,))
            # an upsert keeps a replaced shard's place in the run (its rowid), so a retrained
            # shard is analysed and reported in the same order as before
            db.execute(
                "INSERT INTO shards (shard, task, task_config, cell, hidden, file, train_config, config_hash, "
                "provenance, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (shard) DO UPDATE SET "
                "task = excluded.task, task_config = excluded.task_config, cell = excluded.cell, "
                "hidden = excluded.hidden, file = excluded.file, train_config = excluded.train_config, "
                "config_hash = excluded.config_hash, provenance = excluded.provenance, sha256 = excluded.sha256",
                (shard, population.task.name, json.dumps(task_config), spec, population.hidden_size, file,
                 json.dumps(train_config), config_hash(full_config), json.dumps(prov), digest),
            )
            # members of a replaced shard keep their ids (by index); further members get new ones
            next_id = db.execute("SELECT COALESCE(MAX(member) + 1, 0) FROM members").fetchone()[0]
            next_id = max(next_id, max(old, default=-1) + 1)
            ids = old[: len(population)] + list(range(next_id, next_id + len(population) - len(old)))
            rows = [MemberRow(**dataclasses.asdict(m), member=ids[i], shard=shard, idx=i, status=result.status[i],
                              loss=_nan_to_none(result.loss[i]), score=_nan_to_none(result.score[i]),
                              passed=bool(result.passed[i]), steps=int(result.steps[i]), restarts=int(restarts[i]))
                    for i, m in enumerate(population.members)]
            db.executemany(
                f"INSERT INTO members ({', '.join(_MEMBER_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_MEMBER_COLUMNS))})",
                [tuple(getattr(r, c) for c in _MEMBER_COLUMNS) for r in rows],
            )
        if old_file is not None and old_file[0] != file:
            self.layout.file(old_file[0]).unlink(missing_ok=True)

    def set_metrics(self, values: dict[int, dict[str, float]]) -> None:
        """Upsert named scalar metrics per member id."""
        with self._write() as db:
            db.executemany(
                "INSERT OR REPLACE INTO metrics (member, name, value) VALUES (?, ?, ?)",
                [(m, k, _nan_to_none(v)) for m, kv in values.items() for k, v in kv.items()],
            )

    def record_file(self, path: Path, digest: str | None = None) -> None:
        """Record the SHA-256 of a file under the run directory (computed when not given)."""
        rel = self.layout.relative(path)
        digest = digest or files.file_sha256(self.layout.file(rel))
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO files (path, sha256) VALUES (?, ?)", (rel, digest))

    def forget_file(self, path: Path) -> None:
        """Delete a file under the run directory and its checksum (it will be recomputed)."""
        rel = self.layout.relative(path)
        self.layout.file(rel).unlink(missing_ok=True)
        with self._write() as db:
            db.execute("DELETE FROM files WHERE path = ?", (rel,))

    def set_meta(self, key: str, value: str) -> None:
        """Set a value of the catalog's ``meta`` table."""
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ reading
    def meta(self, key: str, default: str | None = None) -> str:
        """A value of the catalog's ``meta`` table (``format``, ``schema_version``, ``created``,
        ...); ``default`` when absent (None: :class:`RunError`)."""
        with self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0])
        if default is None:
            raise RunError(f"{self.path}: catalog has no {key!r}")
        return default

    def shards(self) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT shard FROM shards ORDER BY rowid")]

    def shard_record(self, shard: str) -> ShardRecord:
        """The shard's catalog row, configs and provenance decoded."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            row = db.execute("SELECT * FROM shards WHERE shard = ?", (shard,)).fetchone()
        if row is None:
            raise RunError(f"{self.path}: no shard {shard!r}; shards are {self.shards()}")
        values = dict(row)
        for key in ("task_config", "train_config", "provenance"):
            values[key] = json.loads(values[key])
        return ShardRecord(**values)

    def members(self, shard: str | None = None) -> list[MemberRow]:
        """Member rows: every member by id, or those of ``shard`` by their index in it."""
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            if shard is None:
                rows = db.execute("SELECT * FROM members ORDER BY member").fetchall()
            else:
                rows = db.execute("SELECT * FROM members WHERE shard = ? ORDER BY idx", (shard,)).fetchall()
            metric_rows = db.execute("SELECT member, name, value FROM metrics").fetchall()
        metrics: dict[int, dict[str, float | None]] = {}
        for member, name, value in metric_rows:
            metrics.setdefault(member, {})[name] = value
        out = []
        for r in rows:
            values = {k: r[k] for k in _MEMBER_COLUMNS if k in r.keys()}  # restarts: absent in old catalogs
            values["passed"] = bool(values["passed"])
            out.append(MemberRow(**values, metrics=metrics.get(r["member"], {})))
        return out

    def file_checksum(self, path: Path) -> str | None:
        """The recorded SHA-256 of a file under the run directory, or None if none."""
        rel = self.layout.relative(path)
        with self._connect() as db:
            try:
                row = db.execute("SELECT sha256 FROM files WHERE path = ?", (rel,)).fetchone()
            except sqlite3.OperationalError:  # a catalog from before checksums: nothing recorded
                return None
        return None if row is None else str(row[0])

    def read_file(self, path: Path) -> bytes:
        """The bytes of a file of the run, checked against its recorded SHA-256."""
        return files.read_checked(self.layout.file(self.layout.relative(path)), self.file_checksum(path))

    def load_file(self, path: Path) -> dict[str, torch.Tensor]:
        """Read a tensor file of the run, checked against its recorded SHA-256."""
        return files.decode(self.read_file(path), path)

    def check_file(self, path: Path) -> None:
        """Raise :class:`RunError` unless the file exists and matches its recorded SHA-256."""
        problem = self._problem(self.layout.relative(path), self.file_checksum(path))
        if problem:
            raise RunError(f"{path}: {problem}; the run directory is damaged "
                           f"(`universality verify {self.path}` lists the damage)")

    def damage(self, analysis: bool = True) -> list[Damage]:
        """Every weights file and (with ``analysis``) recorded analysis file that is missing
        or no longer matches its SHA-256 (files without a recorded checksum are not judged)."""
        out = []
        for shard in self.shards():
            record = self.shard_record(shard)
            problem = self._problem(record.file, record.sha256)
            if problem:
                out.append(Damage("weights", record.file, shard, problem))
        if not analysis:
            return out
        with self._connect() as db:
            try:
                files = db.execute("SELECT path, sha256 FROM files ORDER BY path").fetchall()
            except sqlite3.OperationalError:
                files = []
        for rel, digest in files:
            problem = self._problem(rel, digest)
            if problem:
                out.append(Damage("analysis", rel, rel, problem))
        return out

    def checked_files(self) -> int:
        """How many files carry a recorded checksum (weights and analysis)."""
        with self._connect() as db:
            try:
                files = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
            except sqlite3.OperationalError:
                files = 0
            if "sha256" not in self._columns(db, "shards"):
                return int(files)
            weights = db.execute("SELECT COUNT(*) FROM shards WHERE sha256 IS NOT NULL").fetchone()[0]
        return int(files) + int(weights)

    def _problem(self, rel: str, digest: str | None) -> str | None:
        path = self.layout.file(rel)
        if not path.is_file():
            return "missing"
        if digest is not None and files.file_sha256(path) != digest:
            return "checksum mismatch"
        return None

    def load_population(self, shard: str, device: str | torch.device = "cpu") -> Population:
        """Rebuild a shard's Population exactly as saved (its weights checked against
        their recorded SHA-256)."""
        record = self.shard_record(shard)
        params = files.load_tensors(self.layout.file(record.file), record.sha256)
        members = [r.spec() for r in self.members(shard)]
        try:
            pop = population_from(record.cell, record.task_config, record.hidden, members, params)
        except ValueError as err:
            raise RunError(f"{self.path}: shard {shard!r} is inconsistent with its catalog ({err})") from err
        return pop.to(device)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    return value
