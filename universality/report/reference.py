"""``universality reference``: run the ``reference`` preset and export its results.

The export (``reference_results/`` by default) keeps what the claims tests and ``check``
need and stays small: the catalog and trained weights (``run/catalog.sqlite``,
``run/shards/``), each member's scaffold signature and key numbers
(``run/analysis/scaffold/``), the geometry and topology distance matrices
(``run/analysis/{geometry,topology}/``), the report with ``claims.json``, a
``provenance.json`` and a Markdown ``SUMMARY.md``. Probe states and fixed points are
recomputable from the weights and left out.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ..claims import STATEMENTS, Claim
from ..pipeline.config import PRESETS
from ..pipeline.driver import default_workers, run_preset
from ..run.catalog import RunStore, provenance
from ..run.layout import ANALYSIS, BACKUP, CATALOG, REPORT, SHARDS, RunLayout, temporary
from .report import claims_section
from .tables import number

#: The export directory's parts: the kept run, its provenance and its summary.
EXPORTED_RUN, PROVENANCE, SUMMARY = "run", "provenance.json", "SUMMARY.md"
#: The parts of the run directory exported (probe states and fixed points are left out).
KEPT = (CATALOG, SHARDS, f"{ANALYSIS}/scaffold", f"{ANALYSIS}/geometry", f"{ANALYSIS}/topology", REPORT)


@dataclass(frozen=True)
class ExportRecord:
    """How the exported run was produced: the ``command`` line, the ``preset`` (as a dict),
    the ``device`` and number of ``workers``, the ``wall_seconds`` of this invocation and the
    ``seconds_since_run_created`` (a resumed run took longer than one invocation)."""

    command: str
    preset: dict[str, Any]
    wall_seconds: float
    seconds_since_run_created: float
    workers: int
    device: str = "cpu"


def export(work: RunStore, out: Path, record: ExportRecord) -> Path:
    """Copy the kept parts of an analysed, reported run into ``out/run`` (replacing it) and
    write ``out/provenance.json`` and ``out/SUMMARY.md`` (the claims table, from the run's
    ``claims.json``)."""
    target = out / EXPORTED_RUN
    old_claims, old_provenance = RunLayout(target).claims_json, out / PROVENANCE
    previous = json.loads(old_claims.read_text()) if old_claims.is_file() else None
    previous_preset = json.loads(old_provenance.read_text()).get("preset") if old_provenance.is_file() else None
    store = copy_kept(work, target)
    hashes = {s: store.shard_record(s).config_hash for s in store.shards()}
    full = {**provenance(record.device), **vars(record), "config_hashes": hashes}
    (out / PROVENANCE).write_text(json.dumps(full, indent=1, sort_keys=True))
    claims = [Claim.from_dict(c) for c in json.loads(store.layout.claims_json.read_text())]
    (out / SUMMARY).write_text("\n".join(summary(record, full["date"], claims, previous, previous_preset)) + "\n")
    return out


def copy_kept(work: RunStore, target: Path) -> RunStore:
    """Copy the :data:`KEPT` parts of ``work`` into ``target`` (replacing it, through a
    staging directory) with a catalog that forgets the analysis files left out."""
    staging = temporary(target)
    shutil.rmtree(staging, ignore_errors=True)
    for part in KEPT:
        src = work.path / part
        if src.is_dir():
            shutil.copytree(src, staging / part)
        elif src.is_file():
            (staging / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, staging / part)
    kept = RunStore(staging)
    for damage in kept.damage():  # the analysis files left out (states, fixed points) leave the catalog too
        if damage.kind == "analysis" and damage.problem == "missing":
            kept.forget_file(staging / damage.path)
    (staging / BACKUP).unlink(missing_ok=True)  # the run's own backup is not exported
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return RunStore(target)


def summary(record: ExportRecord, date: str, claims: list[Claim], previous: list[dict[str, Any]] | None = None,
            previous_preset: dict[str, Any] | None = None) -> list[str]:
    """The lines of ``SUMMARY.md``: how the results were produced; each claim in two lines
    (what it tests, what the paper shows) with its verdicts; the claims table; and, given the
    ``previous`` reference's ``claims.json`` rows (and its preset), the verdicts before and now."""
    lines = ["# Reference results", "",
             f"Produced by `{record.command}` (preset `reference`; this invocation took "
             f"{record.wall_seconds / 60:.1f} min, {record.seconds_since_run_created / 60:.1f} min since the run "
             f"directory was created; {record.device}, {record.workers} workers, {date}). "
             "Full report: `run/report/report.md`.", "", "## The claims", ""]
    for key in dict.fromkeys(c.claim for c in claims):
        rows = [c for c in claims if c.claim == key]
        said, shown = STATEMENTS.get(key, (key, ""))
        if len(rows) <= 3:
            verdicts = ", ".join(f"{c.group} {c.verdict.upper()}" for c in rows)
        else:  # a pooled row and its groups
            groups = [c.verdict for c in rows if c.group != "all"]
            counts = ", ".join(f"{groups.count(v)} {v}" for v in ("pass", "fail", "inconclusive"))
            verdicts = ", ".join(f"{c.group} {c.verdict.upper()}" for c in rows if c.group == "all")
            verdicts += f" (groups: {counts})"
        lines += [f"* **{key}**: {said} Verdict: {verdicts}.", f"  {shown}"]
    lines += ["", *claims_section(claims)]
    if previous is not None:
        lines += changes(previous, claims, record.preset, previous_preset)
    return lines


def describe_preset(preset: dict[str, Any]) -> str:
    """The population-shaping fields of a preset dict, in words."""
    return (f"hidden {'/'.join(map(str, preset['hidden']))}, L2 {'/'.join(f'{v:g}' for v in preset['l2'])}, "
            f"{preset['seeds']} seeds per L2 value, at least {preset.get('min_passed', 0)} passed per group")


def changes(previous: list[dict[str, Any]], claims: list[Claim], preset: dict[str, Any] | None = None,
            previous_preset: dict[str, Any] | None = None) -> list[str]:
    """A table of each claim row's verdict before (``previous`` claims.json rows; old rows
    without ``verdict`` read ``passed``) and now; the two presets described above it."""
    def verdict(row: dict[str, Any]) -> str:
        return str(row.get("verdict") or ("pass" if row.get("passed") else "fail"))

    def shown(v: tuple[str, Any] | None) -> str:
        return "absent" if v is None else f"{v[0].upper()} ({number(v[1])})"

    old = {(r["claim"], r["group"]): (verdict(r), r.get("value")) for r in previous}
    new = {(c.claim, c.group): (c.verdict, c.value) for c in claims}
    lines = ["## Against the previous reference", ""]
    if preset and previous_preset:
        lines += [f"Previous: {describe_preset(previous_preset)}. Now: {describe_preset(preset)}.", ""]
    lines += ["| claim | group | previous verdict (value) | verdict now (value) |", "|---|---|---|---|"]
    for key in dict.fromkeys([*old, *new]):
        before, now = old.get(key), new.get(key)
        lines.append(f"| {key[0]} | {key[1]} | {shown(before)} | {shown(now)} |")
    return lines + [""]


def make_reference(command: str, out: str | Path = "reference_results", work: str | Path = "runs/reference",
                   device: str | torch.device = "cpu", workers: int | None = None) -> Path:
    """Run (or resume) the reference preset in ``work`` and export it to ``out``;
    ``command`` is the command line recorded in the provenance."""
    device = torch.device(device)
    start = time.perf_counter()
    run_preset(PRESETS["reference"], str(work), device, workers=workers)
    store = RunStore(work)
    created = datetime.fromisoformat(store.meta("created"))
    record = ExportRecord(command=command, preset=PRESETS["reference"].as_dict(),
                          wall_seconds=time.perf_counter() - start,
                          seconds_since_run_created=(datetime.now(UTC) - created).total_seconds(),
                          workers=workers or default_workers(device), device=str(device))
    return export(store, Path(out), record)
