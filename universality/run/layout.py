"""Every path of a run directory, in one place.

::

    DIR/catalog.sqlite                         the catalog (:mod:`.catalog`)
    DIR/catalog.sqlite.bak                     its backup as of the last commit
    DIR/catalog.sqlite.damaged                 a damaged catalog put aside when the backup is restored
    DIR/run.lock                               the writer's lock (:mod:`.lock`)
    DIR/shards/<shard>.<stamp>.safetensors     stacked weights [P, ...] of one shard
    DIR/analysis/<kind>/<shard>.safetensors    per-shard analyses (SHARD_KINDS)
    DIR/analysis/<kind>/<task>.safetensors     per-task analyses (TASK_KINDS)
    DIR/report/report.md, claims.json          the report (``universality run`` / ``report``)
    DIR/report/check.md, check.json            ``universality check``'s report
    DIR/report/figures/*.png                   figures of either

The catalog names files by their path relative to ``DIR`` (POSIX separators): the
``rel`` functions below build those names, :class:`RunLayout` the absolute paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CATALOG = "catalog.sqlite"
BACKUP = CATALOG + ".bak"
DAMAGED = CATALOG + ".damaged"
LOCK = "run.lock"
SHARDS = "shards"
ANALYSIS = "analysis"
REPORT = "report"
FIGURES = "figures"

#: Analysis kinds with one file per shard, and with one file per task.
SHARD_KINDS = ("states", "fixed_points", "scaffold")
TASK_KINDS = ("geometry", "topology")
ANALYSIS_KINDS = SHARD_KINDS + TASK_KINDS


def weights_rel(shard: str, stamp: str) -> str:
    """``shards/<shard>.<stamp>.safetensors``: a fresh weights file name per save."""
    return f"{SHARDS}/{shard}.{stamp}.safetensors"


def analysis_rel(kind: str, name: str) -> str:
    """``analysis/<kind>/<name>.safetensors`` (``name``: a shard or a task)."""
    if kind not in ANALYSIS_KINDS:
        raise ValueError(f"unknown analysis kind {kind!r}; known: {ANALYSIS_KINDS}")
    return f"{ANALYSIS}/{kind}/{name}.safetensors"


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run directory ``root``."""

    root: Path

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    def file(self, rel: str) -> Path:
        """The absolute path of a catalog-relative name."""
        return self.root / rel

    def relative(self, path: str | os.PathLike[str]) -> str:
        """``path`` (under the run directory, or already relative to it) relative to it."""
        p = Path(path)
        for base in (self.root, self.root.resolve()):
            try:
                return (p if base == self.root else p.resolve()).relative_to(base).as_posix()
            except ValueError:
                continue
        if p.is_absolute():
            raise ValueError(f"{p} is not inside the run directory {self.root}")
        return p.as_posix()

    @property
    def catalog(self) -> Path:
        return self.root / CATALOG

    @property
    def backup(self) -> Path:
        return self.root / BACKUP

    @property
    def damaged(self) -> Path:
        return self.root / DAMAGED

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def shards(self) -> Path:
        return self.root / SHARDS

    @property
    def analysis_root(self) -> Path:
        return self.root / ANALYSIS

    def analysis(self, kind: str, name: str) -> Path:
        """``DIR/analysis/<kind>/<name>.safetensors``."""
        return self.root / analysis_rel(kind, name)

    @property
    def report(self) -> Path:
        return self.root / REPORT

    @property
    def figures(self) -> Path:
        return self.root / REPORT / FIGURES

    def figure(self, name: str) -> Path:
        """``DIR/report/figures/<name>`` (a figure's file name, e.g. ``flipflop_trajectories.png``)."""
        return self.figures / name

    @property
    def report_md(self) -> Path:
        return self.report / "report.md"

    @property
    def claims_json(self) -> Path:
        return self.report / "claims.json"

    @property
    def check_md(self) -> Path:
        return self.report / "check.md"

    @property
    def check_json(self) -> Path:
        return self.report / "check.json"


def temporary(path: Path) -> Path:
    """The temporary sibling ``<path>.tmp`` an atomic write goes through."""
    return path.with_name(path.name + ".tmp")
