"""``universality check MODULE:ATTR``: hold a new architecture against the reference.

Trains a population of the user's cell on each task with a preset's settings, analyses it
exactly as the reference populations, places it among them (geometry and topology
distances to every passed reference member, MDS with the new architecture highlighted)
and evaluates the scaffold claims for it.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..cells import ModuleCell
from ..compare import mds
from ..geometry import pairwise_distances
from ..scaffold import SCAFFOLDS, distance_matrix
from ..store import RunStore
from .analyze import AnalysisConfig, analyze_run, load_scaffolds, load_states, probe_states
from .claims import SCAFFOLD_CLAIMS, THRESHOLDS
from .pipeline import analysis_config, train_shard
from .presets import Preset, Shard

PROTOCOL = (
    "a cell is MODULE:ATTR naming a torch.nn.Module class or factory: ATTR(input_size, hidden_size) -> "
    "nn.Module whose forward(x [B, I], state [B, S]) returns the new state [B, S]; an optional int "
    "attribute state_size (default hidden_size); the readout reads the first hidden_size state entries"
)


class CheckError(ValueError):
    """The cell cannot be loaded or does not follow the protocol."""


def load_cell(spec: str) -> ModuleCell:
    """Import ``MODULE:ATTR`` (the working directory is importable) and check the protocol."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CheckError(f"expected MODULE:ATTR, got {spec!r}; {PROTOCOL}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise CheckError(f"cannot import module {module_name!r} ({err})") from None
    try:
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise CheckError(f"module {module_name!r} has no attribute {attr!r}") from None
    try:
        module = obj(3, 4)
        if not isinstance(module, nn.Module):
            raise TypeError(f"ATTR(3, 4) returned {type(module).__name__}, not an nn.Module")
        size = getattr(module, "state_size", 4)
        out = module(torch.zeros(2, 3), torch.zeros(2, size))
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, size):
            raise TypeError(f"forward(x [2, 3], state [2, {size}]) returned {getattr(out, 'shape', type(out))}")
    except Exception as err:  # any failure here is the user's protocol, reported as such
        raise CheckError(f"{spec} does not follow the cell protocol ({err}); {PROTOCOL}") from None
    return ModuleCell(obj)


@dataclass(frozen=True)
class Verdict:
    """One line of the verdict table; ``passed`` is None for placements (information)."""

    task: str
    check: str
    value: float
    threshold: str
    passed: bool | None
    detail: dict[str, Any] = field(default_factory=dict)


def check_cell(cell: ModuleCell, reference: RunStore, preset: Preset, tasks: tuple[str, ...], out: str | Path,
               device: str | torch.device = "cpu") -> list[Verdict]:
    """Train, analyse and place ``cell`` (see the module docstring); the report goes to
    ``out/report/check.md`` with its figures."""
    store = RunStore.create(out)
    device = torch.device(device)
    hidden = preset.hidden[0]
    for task in tasks:
        shard = Shard(task, cell.arch, "custom", hidden)
        if shard.name not in store.shards():
            train_shard(store, preset, shard, device, cell=cell)
    analyze_run(store, analysis_config(preset), device)
    verdicts: list[Verdict] = []
    figures = store.path / "report" / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        new = _members(store, task)
        passed = [r for r in new if r["passed"]]
        cond = f"fraction canonical >= {THRESHOLDS['scaffold_fraction']} (>= 1 passed member)"
        fraction = float(np.mean([r["scaffold"]["canonical"] for r in passed])) if passed else float("nan")
        verdicts.append(Verdict(task, SCAFFOLD_CLAIMS[task], fraction, cond,
                                bool(passed) and fraction >= THRESHOLDS["scaffold_fraction"],
                                {"passed_members": len(passed), "members": len(new)}))
        refs = [r for r in _members(reference, task) if r["passed"]]
        if passed and refs:
            verdicts += _placement(task, passed, refs, store, reference, figures)
    _write(store, verdicts)
    return verdicts


def _members(store: RunStore, task: str) -> list[dict[str, Any]]:
    """Rows of ``task`` with their probe states ``[B, T, H]`` and scaffold (numbers, vector)."""
    rows = []
    for shard in store.shards():
        if store.shard_info(shard)["task"] != task:
            continue
        numbers, tensors = load_scaffolds(store, shard)
        path = store.path / "analysis" / "states" / f"{shard}.safetensors"
        # stored reference results keep weights, not states: recompute on the same probe trials
        states = load_states(store, shard) if path.is_file() else probe_states(store.load_population(shard),
                                                                                 AnalysisConfig())
        for r in store.members(shard):
            if r.status != "diverged":
                rows.append({**r.as_dict(), "scaffold": numbers[r.idx], "vector": tensors["vectors"][r.idx].numpy(),
                             "states": states[r.idx, ..., : r.hidden]})
    return rows


def _placement(task: str, new: list[dict[str, Any]], refs: list[dict[str, Any]], store: RunStore,
               reference: RunStore, figures: Path) -> list[Verdict]:
    """Geometry and topology distances of the new members to the reference members."""
    everyone = refs + new
    labels = [r["arch"] for r in refs] + ["NEW"] * len(new)
    reps = [r["states"].reshape(-1, r["states"].shape[-1]) for r in everyone]
    k = min([10, *(int(torch.linalg.matrix_rank(x - x.mean(0))) for x in reps)])
    geometry = pairwise_distances(reps, "svcca", k=k).numpy()
    topology = distance_matrix(SCAFFOLDS[task], np.stack([r["vector"] for r in everyone]))
    out = []
    for name, d in (("geometry (SVCCA)", geometry), ("topology (scaffold)", topology)):
        n_ref = len(refs)
        block = d[n_ref:, :n_ref]  # [new, ref]
        by_arch = {a: float(block[:, [i for i, r in enumerate(refs) if r["arch"] == a]].mean())
                   for a in sorted({r["arch"] for r in refs})}
        nearest = min(by_arch, key=by_arch.__getitem__)
        masked = d + np.diag(np.full(len(d), np.inf))
        own = float(np.mean([labels[int(np.argmin(masked[i]))] == "NEW" for i in range(n_ref, len(d))]))
        out.append(Verdict(task, f"{name}: nearest reference architecture", by_arch[nearest], nearest, None,
                           {"mean_distance_by_arch": by_arch,
                            "new_members_whose_nearest_neighbour_is_new": own}))
        emb = mds(d, seed=0) if np.any(d > 0) else np.zeros((len(d), 2))
        _plot(emb, everyone, len(refs), figures / f"{task}_{name.split()[0]}_placement.png", f"{task}: {name}")
    return out


def _plot(embedding: np.ndarray, rows: list[dict[str, Any]], n_ref: int, path: Path, title: str) -> None:
    """MDS panels by architecture and activation, the new members (after ``n_ref``) as stars."""
    from .. import plots  # matplotlib only here

    plots.mds_by_label(embedding, [r["arch"] for r in rows], [r["activation"] for r in rows], path, title,
                       highlight=[i >= n_ref for i in range(len(rows))])


def _write(store: RunStore, verdicts: list[Verdict]) -> None:
    report = store.path / "report"
    (report / "check.json").write_text(json.dumps([asdict(v) for v in verdicts], indent=1, default=str))
    lines = ["# Architecture check", "", "| task | check | value | threshold / answer | verdict |",
             "|---|---|---|---|---|"]
    for v in verdicts:
        verdict = "info" if v.passed is None else ("PASS" if v.passed else "FAIL")
        lines.append(f"| {v.task} | {v.check} | {v.value:.3g} | {v.threshold} | {verdict} |")
    lines += [""] + [f"![{p.stem}](figures/{p.name})" for p in sorted((report / "figures").glob("*_placement.png"))]
    (report / "check.md").write_text("\n".join(lines) + "\n")
