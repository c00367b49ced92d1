"""``universality zoo``: every cell of a zoo checked on every task, one table of the outcomes.

A zoo maps a short name to a cell's ``MODULE:ATTR`` (by default ``examples.zoo:ZOO``,
imported from the working directory, the repository root). For each cell in turn:

* ``check`` runs in ``WORK/<name>`` with the reference's settings and the learning-rate
  screen (:mod:`.screen`); an interrupted cell resumes from the networks stored there;
* the results are exported to ``OUT/<name>/``, as reference results are stored:
  ``run/`` (catalog, weights, scaffold numbers and the report with ``check.json``,
  ``check.md`` and the figures) and ``provenance.json`` (command, cell, preset, learning-rate
  grid and the rates chosen, the reference's fingerprint, versions, wall time);
* a cell already exported against the same reference, preset and grid is skipped, so the
  zoo fills across several invocations (``again`` re-checks it).

After each cell, ``OUT/ZOO.md`` (cell x task x claim, each with its verdict and reason, and
the trainability of every cell beside the reference architectures') is rewritten from every
exported cell, and so is the README's table between :data:`README_MARKERS`. A cell not yet
checked is listed as such.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..claims import Claim
from ..pipeline.config import Preset
from ..run.catalog import RunStore, provenance
from ..run.files import write_atomic
from ..run.layout import RunLayout
from ..run.lock import run_lock
from ..scaffold import SCAFFOLDS
from .check import CheckError, _importable, check_cell, exit_code, load_cell, universality_claims
from .reference import EXPORTED_RUN, PROVENANCE, copy_kept
from .screen import default_grid

log = logging.getLogger(__name__)

#: The default zoo: ``examples/zoo`` of the repository.
DEFAULT_ZOO = "examples.zoo:ZOO"
TABLE = "ZOO.md"
#: The README's zoo table lies between these two lines.
README_MARKERS = ("<!-- zoo table: written by `universality zoo` -->", "<!-- end of zoo table -->")


def load_zoo(spec: str = DEFAULT_ZOO) -> dict[str, str]:
    """The mapping name -> ``MODULE:ATTR`` named by ``spec`` (``MODULE:ATTR`` of a dict),
    importable from the working directory; :class:`CheckError` when it is not."""
    module, _, attr = spec.partition(":")

    with _importable(str(Path.cwd())):
        try:
            zoo = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise CheckError(f"cannot load the zoo {spec!r} ({err}); run from the repository root, where "
                             "examples/zoo lies, or pass --zoo MODULE:ATTR") from None
    if not isinstance(zoo, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in zoo.items()):
        raise CheckError(f"{spec} is not a mapping of names to MODULE:ATTR cell specs")
    return dict(zoo)


def reference_fingerprint(reference: RunStore) -> str:
    """A short hash of the reference's shards and their training configs: a zoo export made
    against another reference is out of date."""
    hashes = {s: reference.shard_record(s).config_hash for s in reference.shards()}
    counts = sorted((r.shard, r.member, r.passed) for r in reference.members())
    return hashlib.sha256(json.dumps([hashes, counts], sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ZooSettings:
    """What a zoo export depends on: the ``preset``'s name and fields, the ``grid`` of
    learning rates, the ``tasks`` and the ``reference`` fingerprint."""

    preset: dict[str, Any]
    grid: tuple[float, ...]
    tasks: tuple[str, ...]
    reference: str

    def matches(self, stored: Mapping[str, Any]) -> bool:
        return (stored.get("preset") == self.preset and tuple(stored.get("lr_grid", ())) == self.grid
                and tuple(stored.get("tasks", ())) == self.tasks and stored.get("reference") == self.reference)


def run_zoo(zoo: Mapping[str, str], names: Sequence[str], reference: RunStore, preset: Preset,
            tasks: Sequence[str], work: Path, out: Path, device: torch.device, command: str,
            grid: Sequence[float] | None = None, again: bool = False, readme: Path | None = None) -> list[str]:
    """Check each cell ``names`` of ``zoo`` not yet exported with these settings (module
    docstring), holding its work directory's lock; returns the names checked in this call. A
    cell that cannot be checked (:class:`CheckError`) is logged and skipped, and after the
    others one :class:`CheckError` names every such cell."""
    rates = tuple(dict.fromkeys(default_grid(preset) if grid is None else grid))
    settings = ZooSettings(json.loads(json.dumps(preset.as_dict())), rates, tuple(tasks),
                           reference_fingerprint(reference))
    done: list[str] = []
    failed: list[str] = []
    for name in names:
        spec, record = zoo[name], out / name / PROVENANCE
        if not again and record.is_file() and settings.matches(json.loads(record.read_text())):
            log.info("zoo: %s already checked with these settings (%s)", name, record)
            continue
        log.info("zoo: checking %s (%s)", name, spec)
        start = time.time()
        try:
            with run_lock(work / name, command), _importable(str(Path.cwd())):
                cell = load_cell(spec)
                rows = check_cell(cell, reference, preset, tuple(tasks), work / name, device, rates)
        except CheckError as err:  # one cell's failure does not stop the others
            log.error("zoo: %s: %s", name, err)
            failed.append(f"{name}: {err}")
            continue
        export_cell(name, spec, RunStore(work / name), out, settings, rows, command, time.time() - start, device)
        write_table(zoo, out, preset.tasks, readme, reference)
        done.append(name)
    write_table(zoo, out, preset.tasks, readme, reference)
    if failed:
        raise CheckError(f"{len(failed)} cell(s) could not be checked (the others were): {'; '.join(failed)}")
    return done


def export_cell(name: str, spec: str, work: RunStore, out: Path, settings: ZooSettings, rows: list[Claim],
                command: str, seconds: float, device: torch.device) -> Path:
    """Copy the cell's checked run to ``out/<name>/run`` and write its ``provenance.json``."""
    target = out / name
    target.mkdir(parents=True, exist_ok=True)
    copy_kept(work, target / EXPORTED_RUN)
    chosen = {r.group: r.detail["lr"] for r in rows if r.claim == "trainability"}
    record = {**provenance(device), "command": command, "cell": name, "spec": spec, "preset": settings.preset,
              "lr_grid": list(settings.grid), "lr_chosen": chosen, "tasks": list(settings.tasks),
              "reference": settings.reference, "wall_seconds": seconds, "exit_code": exit_code(rows)}
    write_atomic(target / PROVENANCE, json.dumps(record, indent=1, sort_keys=True).encode())
    return target


# --------------------------------------------------------------------------- the table
def exported(zoo: Mapping[str, str], out: Path) -> dict[str, tuple[dict[str, Any], list[Claim]]]:
    """Each exported cell of ``zoo``: its provenance and its check rows."""
    cells = {}
    for name in zoo:
        record, rows = out / name / PROVENANCE, RunLayout(out / name / EXPORTED_RUN).check_json
        if record.is_file() and rows.is_file():
            cells[name] = (json.loads(record.read_text()),
                           [Claim.from_dict(r) for r in json.loads(rows.read_text())])
    return cells


def _learned(train: Claim) -> str:
    """``passed/trained at lr X`` of a trainability row."""
    passed = round(train.value * train.n) if train.n else 0
    lr = train.detail.get("lr")
    return f"{passed}/{train.n}" + ("" if lr is None else f" at lr {lr:g}")


def _verdict(row: Claim | None) -> str:
    return "not checked" if row is None else f"**{row.verdict.upper()}**: {row.detail.get('reason', '')}"


def readme_table(zoo: Mapping[str, str], out: Path, tasks: Sequence[str]) -> list[str]:
    """The README's table: per cell and task, trainability and the universality rows (a
    task not in the cell's export: not checked yet)."""
    cells = exported(zoo, out)
    lines = ["| cell | task | learns (passed / trained, lr) | scaffold | topology among the reference |",
             "|---|---|---|---|---|"]
    for name in zoo:
        rows = cells[name][1] if name in cells else []
        for task in tasks:
            by = {r.claim: r for r in rows if r.group == task}
            if not by:
                lines.append(f"| {name} | {task} | not checked yet | | |")
                continue
            train = by.get("trainability")
            learned = "n/a" if train is None else f"{_learned(train)} ({train.verdict})"
            scaffold = by.get(SCAFFOLDS[task].claim)
            lines.append(f"| {name} | {task} | {learned} | "
                         f"{_verdict(scaffold)} | {_verdict(by.get('topology_among_reference'))} |")
    return lines


def table(zoo: Mapping[str, str], out: Path, tasks: Sequence[str], reference: RunStore | None = None) -> list[str]:
    """``ZOO.md``: the README table, every cell x task x claim with verdict and reason, and
    per task the trainability of each cell beside the reference architectures'."""
    cells = exported(zoo, out)
    judged = universality_claims()
    lines = ["# The architecture zoo", "",
             "Every cell of the zoo checked on every task at the reference's settings, after the learning-rate "
             "screen. Written by `universality zoo`; each cell's report is `<cell>/run/report/check.md` and its "
             "provenance `<cell>/provenance.json`.", "", *readme_table(zoo, out, tasks), "",
             "## Every claim", "", "| cell | task | claim | universality row | verdict | value | n | reason |",
             "|---|---|---|---|---|---|---|---|"]
    for name, (_, rows) in cells.items():
        for r in rows:
            value = "n/a" if not np.isfinite(r.value) else f"{r.value:.3g}"
            lines.append(f"| {name} | {r.group} | {r.claim} | {'yes' if r.claim in judged else 'no'} | "
                         f"{r.verdict} | {value} | {r.n} | {r.detail.get('reason', '')} |")
    lines += ["", "## Trainability beside the reference architectures", "",
              "| task | network | passed / trained | median steps of the passed | lr |", "|---|---|---|---|---|"]
    for task in tasks:
        if reference is not None:
            groups: dict[str, list[Any]] = {}
            for m in reference.members():
                if m.task == task:
                    groups.setdefault(f"{m.arch}/{m.activation} (reference)", []).append(m)
            for group, members in sorted(groups.items()):
                steps = [m.steps for m in members if m.passed]
                lines.append(f"| {task} | {group} | {sum(m.passed for m in members)}/{len(members)} | "
                             f"{np.median(steps):.0f} | {members[0].lr:g} |" if steps else
                             f"| {task} | {group} | 0/{len(members)} | n/a | {members[0].lr:g} |")
        for name, (_, rows) in cells.items():
            train = next((r for r in rows if r.group == task and r.claim == "trainability"), None)
            if train is None:
                continue
            median = train.detail.get("median_steps_passed")
            passed, _, lr = _learned(train).partition(" at lr ")
            lines.append(f"| {task} | {name} | {passed} | {'n/a' if median is None else f'{median:.0f}'} | "
                         f"{lr or 'n/a'} |")
    return lines


def write_table(zoo: Mapping[str, str], out: Path, tasks: Sequence[str], readme: Path | None = None,
                reference: RunStore | None = None) -> None:
    """Write ``out/ZOO.md`` and, given ``readme``, replace its table between the markers
    (rows: every cell of ``zoo`` x ``tasks``)."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / TABLE, ("\n".join(table(zoo, out, tasks, reference)) + "\n").encode())
    if readme is None or not readme.is_file():
        return
    text = readme.read_text()
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise CheckError(f"{readme} has no zoo table markers ({start!r} ... {end!r})")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    body = "\n".join(readme_table(zoo, out, tasks))
    write_atomic(readme, f"{head}{start}\n{body}\n{end}{tail}".encode())
