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
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from ..store import RunStore, provenance
from .pipeline import default_workers, run_preset
from .presets import PRESETS

KEPT = ("catalog.sqlite", "shards", "analysis/scaffold", "analysis/geometry", "analysis/topology", "report")


def export(work: RunStore, out: Path, extra: dict[str, Any]) -> Path:
    """Copy the kept parts of an analysed, reported run into ``out/run`` (replacing it) and
    write ``out/provenance.json`` and ``out/SUMMARY.md``."""
    target = out / "run"
    staging = out / "run.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    for part in KEPT:
        src = work.path / part
        if src.is_dir():
            shutil.copytree(src, staging / part)
        elif src.is_file():
            (staging / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, staging / part)
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    store = RunStore(target)
    hashes = {s: store.shard_info(s)["config_hash"] for s in store.shards()}
    record = {**provenance(extra.get("device", "cpu")), **extra, "config_hashes": hashes}
    (out / "provenance.json").write_text(json.dumps(record, indent=1, sort_keys=True))
    report = (target / "report" / "report.md").read_text()
    claims = report[report.index("## Claims"): report.index("## Task:")] if "## Task:" in report else report
    (out / "SUMMARY.md").write_text(
        "# Reference results\n\n"
        f"Produced by `{record['command']}` (preset `reference`; this invocation took "
        f"{record['wall_seconds'] / 60:.1f} min, {record['seconds_since_run_created'] / 60:.1f} min since the run "
        f"directory was created; {record['device']}, {record['workers']} workers, {record['date']}). "
        "Full report: `run/report/report.md`.\n\n" + claims)
    return out


def make_reference(out: str | Path = "reference_results", work: str | Path = "runs/reference",
                   device: str | torch.device = "cpu", workers: int | None = None) -> Path:
    """Run (or resume) the reference preset in ``work`` and export it to ``out``."""
    device = torch.device(device)
    start = time.perf_counter()
    run_preset(PRESETS["reference"], str(work), device, workers=workers)
    store = RunStore(work)
    created = datetime.fromisoformat(store.meta("created"))
    extra = {"command": " ".join(["universality", *sys.argv[1:]]), "preset": PRESETS["reference"].as_dict(),
             "wall_seconds": time.perf_counter() - start,
             "seconds_since_run_created": (datetime.now(UTC) - created).total_seconds(),
             "workers": workers or default_workers(device), "device": str(device)}
    return export(store, Path(out), extra)
