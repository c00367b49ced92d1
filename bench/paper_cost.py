"""Wall time of the ``paper`` preset's whole grid, from measured time per training step.

For each size and architecture, one shard of the preset (its members: 4 L2 values x 10
seeds, batch 64, the sine task, tanh) is trained twice from scratch, for ``--short`` and
``--long`` steps, on one thread; the difference of the two wall times over the difference
of steps is the time per step, free of the one-off costs of a ``train`` call (buffers, the
final evaluation). Every member is active in these steps, so ``steps x time per step`` is
the cost of a shard whose members all train to the preset's step limit: an upper bound
(members that pass stop early).

The grid's other cells are scaled, not measured: ReLU costs what tanh does (the same
kernels), the cdi task what sine does (100 time steps each; 4 inputs instead of 2 is
negligible next to the recurrent weights), the flip-flop 64/100 of it (64 time steps).
The shards are then scheduled longest first onto ``slots`` single-threaded workers (the
way ``universality run --workers`` and the Ray backend hand out shards), and the table
gives the grid's wall time for this machine (2 slots) and for clusters of such machines.

Analysis (``--analysis RUN [RUN ...]``, with the step times of an earlier ``--out`` given
as ``--steps``): every shard of each run (trained networks: the reference at 64 units, a
slice at 128) has its first ``--members`` alive members analysed as ``universality
analyze`` does it (probe states, fixed points with the ``paper`` preset's candidate
budget, the task's scaffold, homology fingerprints), one thread, and the time per member
is recorded per task, architecture, activation and size. Timed together, members are
padded to the slowest of them (as in a run); one member alone is not, so ``--members 1``
gives a lower bound. Sizes or tasks a run does not
hold are extrapolated from the nearest measured size by the architecture's measured
ratio between 128 and 64 units (geometric mean over its measured tasks and activations):
the fixed-point search is dense linear algebra on state-sized matrices, so its cost grows
with size at a rate each cell measures for itself. The per-task geometry (every metric
over all of a task's members, one job in the driver) is timed per pair on random
representations of the grid's widths and the probe trials' length, and scaled to the
grid's pairs. Each shard's analysis runs in the worker after its training, so it is added
to the shard's duration before scheduling; the geometry runs after the shards.

Usage, from the repository root, on an otherwise idle machine::

    .venv/bin/python bench/paper_cost.py [--sizes 64 128 256] [--short 2 --long 12] [--out cost.json]
    .venv/bin/python bench/paper_cost.py --steps cost.json --analysis reference_results/run runs/scale128
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import json
import math
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from universality.cells import make_cell
from universality.dynamics import find_fixed_points
from universality.geometry import METRICS, pairwise_distances
from universality.pipeline.config import PRESETS, Preset, Shard
from universality.pipeline.stages import AnalysisConfig, analysis_config, probe_states
from universality.population import Population
from universality.run.catalog import RunStore
from universality.run.files import RunError
from universality.scaffold import SCAFFOLDS
from universality.scaffold.homology import fingerprint
from universality.tasks import make_task
from universality.training import DIVERGED, TrainConfig, train

#: Time per step of a task relative to the measured sine task (time steps per trial).
TASK_SCALE = {"flipflop": 64 / 100, "sine": 1.0, "cdi": 1.0}

Cell = tuple[str, str, str, int]  # task, arch, activation, hidden


def seconds_per_step(preset: Preset, shard: Shard, short: int, long: int) -> float:
    """Time per training step of ``shard`` (all ``l2 x seeds`` members active), one thread."""
    task = make_task(shard.task, **preset.task_params.get(shard.task, {}))
    seeds, l2 = preset.round_members(0)
    wall = []
    for steps in (1, short, long):  # the first, untimed run warms up the kernels
        pop = Population.create(make_cell(shard.arch, shard.activation), task, shard.hidden, seeds, l2=l2,
                                lr=preset.lr, device=torch.device("cpu"))
        config = TrainConfig(steps=steps, batch_size=preset.batch_size, eval_every=10**9)
        start = time.perf_counter()
        train(pop, config)
        wall.append(time.perf_counter() - start)
    return (wall[2] - wall[1]) / (long - short)


def analysis_seconds(store: RunStore, shard: str, members: int, config: AnalysisConfig) -> float:
    """Seconds per member of ``shard``'s analysis, timed on its first ``members`` alive
    members, one thread: the steps of ``universality analyze`` for a shard (probe states,
    fixed points, the task's scaffold, homology fingerprints), without its files."""
    task = store.shard_record(shard).task
    alive = [r.idx for r in store.members(shard) if r.status != DIVERGED][:members]
    pop = store.load_population(shard).select(alive)
    start = time.perf_counter()
    states = probe_states(pop, config)
    fps = find_fixed_points(pop, config=config.fixed_point_config(task, len(pop.task.conditions())))
    SCAFFOLDS[task].compute(pop, fps)
    for i in range(len(pop)):
        fingerprint(states[i, ..., : pop.hidden_size], n_points=config.homology_points, seed=i)
    return (time.perf_counter() - start) / len(pop)


def geometry_seconds_per_pair(widths: list[int], samples: int, n: int, config: AnalysisConfig) -> float:
    """Seconds per pair of networks of the per-task geometry (every metric of ``config``,
    SVCCA also at ``config.svcca_ks``), timed on ``n`` random representations ``[samples,
    width]`` cycling through ``widths``, one thread. The per-network embeddings are counted
    in, so this is an upper bound for larger ``n``."""
    gen = torch.Generator().manual_seed(0)
    widths_n = itertools.islice(itertools.cycle(widths), n)
    reps = [torch.randn(samples, w, generator=gen, dtype=torch.float64) for w in widths_n]
    start = time.perf_counter()
    for metric in config.metrics:
        extra: dict[str, Any] = {"k": config.k} if "k" in METRICS[metric].params else {}
        pairwise_distances(reps, metric, **extra)
    for k in config.svcca_ks:
        pairwise_distances(reps, "svcca", k=k)
    return (time.perf_counter() - start) / (n * (n - 1) / 2)


def extrapolate(measured: dict[Cell, float], cells: list[Cell]) -> tuple[dict[Cell, float], dict[str, float]]:
    """Seconds per member for every grid cell: measured where it was, else from the nearest
    measured size of the same task, architecture and activation, scaled per doubling of size
    by the architecture's ratio 128 / 64 units (geometric mean over its measured pairs)."""
    ratios: dict[str, list[float]] = defaultdict(list)
    for (task, arch, act, hidden), sec in measured.items():
        if hidden == 64 and (task, arch, act, 128) in measured:
            ratios[arch].append(measured[task, arch, act, 128] / sec)
    ratio = {arch: math.exp(np.mean(np.log(r))) for arch, r in ratios.items()}
    out = {}
    for cell in cells:
        task, arch, act, hidden = cell
        sizes = [h for (t, a, f, h) in measured if (t, a, f) == (task, arch, act)]
        if cell in measured:
            out[cell] = measured[cell]
        elif sizes and arch in ratio:
            near = min(sizes, key=lambda h: abs(math.log2(h / hidden)))
            out[cell] = measured[task, arch, act, near] * ratio[arch] ** math.log2(hidden / near)
        else:
            raise SystemExit(f"no measurement to extrapolate {cell} from: analyse a run holding its task, "
                             f"architecture and activation, and both 64 and 128 units of {arch}")
    return out, ratio


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of ``durations`` scheduled longest first onto ``slots`` workers."""
    free = [0.0] * slots
    for d in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def measure_steps(preset: Preset, sizes: list[int], archs: list[str], short: int, long: int) -> dict[str, float]:
    """Seconds per training step per ``h{size}-{arch}`` (sine, tanh, one thread)."""
    step = {}
    for hidden in sizes:
        for arch in archs:
            step[f"h{hidden}-{arch}"] = seconds_per_step(preset, Shard("sine", arch, "tanh", hidden), short, long)
            print(f"h{hidden} {arch}: {step[f'h{hidden}-{arch}']:.3f} s/step", file=sys.stderr, flush=True)
    return step


def measure_analysis(stores: list[RunStore], members: int, config: AnalysisConfig) -> dict[Cell, float]:
    """Seconds per member of every shard of ``stores``."""
    measured = {}
    for store in stores:
        for shard in store.shards():
            row = store.members(shard)[0]
            cell = (store.shard_record(shard).task, row.arch, row.activation, row.hidden)
            measured[cell] = analysis_seconds(store, shard, members, config)
            print(f"{shard}: {measured[cell]:.1f} s/member", file=sys.stderr, flush=True)
    return measured


def print_header(columns: list[str]) -> None:
    """The head of a markdown table with a ``units`` column, then ``columns``."""
    print("| units | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="hidden sizes (default: the preset's)")
    parser.add_argument("--archs", nargs="+", default=None, help="architectures (default: the preset's)")
    parser.add_argument("--short", type=int, default=2, help="steps of the first timed run")
    parser.add_argument("--long", type=int, default=12, help="steps of the second timed run")
    parser.add_argument("--steps", help="reuse the step times of an earlier --out instead of measuring them")
    parser.add_argument("--analysis", nargs="+", metavar="RUN", help="also time the analysis on these runs' networks")
    parser.add_argument("--members", type=int, default=1, help="members timed per shard of --analysis")
    parser.add_argument("--geometry-networks", type=int, default=48, help="random networks timing the geometry")
    parser.add_argument("--machines", type=int, nargs="+", default=[1, 4, 16, 36],
                        help="cluster sizes, in machines of 2 single-threaded slots like this one")
    parser.add_argument("--out", help="write the measurements and the table as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.short < args.long:
        parser.error("--short must be positive and below --long")
    if args.members < 1 or args.geometry_networks < 2:
        parser.error("--members must be >= 1 and --geometry-networks >= 2")
    torch.set_num_threads(1)
    preset = PRESETS["paper"]
    sizes = args.sizes or list(preset.hidden)
    archs = args.archs or list(preset.archs)
    if args.steps:  # the step times and how they were measured, from an earlier --out
        try:
            earlier = json.loads(Path(args.steps).read_text())
            step, short, long = earlier["seconds_per_step"], earlier["short"], earlier["long"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            parser.error(f"--steps {args.steps}: not the --out file of an earlier run of this script ({err!r})")
        missing = [f"h{h}-{a}" for h in sizes for a in archs if f"h{h}-{a}" not in step]
        if missing:
            parser.error(f"--steps {args.steps} has no step time for {', '.join(missing)}")
    else:
        short, long = args.short, args.long
        step = measure_steps(preset, sizes, archs, short, long)
    grid = dataclasses.replace(preset, hidden=tuple(sizes), archs=tuple(archs)).shards()
    members = len(preset.l2) * preset.seeds
    train_h = {s: step[f"h{s.hidden}-{s.arch}"] * TASK_SCALE[s.task] * preset.steps / 3600 for s in grid}
    report: dict[str, object] = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                                 "short": short, "long": long, "seconds_per_step": step}
    print(f"Time per step, one shard of {members} members (sine, tanh, one thread), "
          f"and hours per shard at {preset.steps} steps:\n")
    print_header(archs)
    for hidden in sizes:
        sec = [step[f"h{hidden}-{a}"] for a in archs]
        print(f"| {hidden} | " + " | ".join(f"{v:.2f} s ({v * preset.steps / 3600:.1f} h)" for v in sec) + " |")
    durations = dict(train_h)
    after_hours = 0.0  # the per-task geometry, in the driver after the shards
    if args.analysis:
        config = analysis_config(preset)
        try:  # every run opened before any is timed
            stores = [RunStore(run) for run in args.analysis]
        except RunError as err:
            parser.error(f"--analysis: {err}")
        measured = measure_analysis(stores, args.members, config)
        cells = [(s.task, s.arch, s.activation, s.hidden) for s in grid]
        per_member, ratio = extrapolate(measured, cells)
        analysis_h = {s: per_member[s.task, s.arch, s.activation, s.hidden] * members / 3600 for s in grid}
        durations = {s: train_h[s] + analysis_h[s] for s in grid}
        n_task = len(sizes) * len(archs) * len(preset.activations) * members
        samples = config.n_trials * max(make_task(t, **preset.task_params.get(t, {})).n_time for t in preset.tasks)
        per_pair = geometry_seconds_per_pair(sizes, samples, args.geometry_networks, config)
        geometry_h = per_pair * n_task * (n_task - 1) / 2 / 3600
        after_hours = geometry_h * len(preset.tasks)
        print(f"\nAnalysis, seconds per member ({args.members} timed per shard; * extrapolated, ratio 128/64 "
              f"units: {', '.join(f'{a} {r:.1f}x' for a, r in ratio.items())}), and hours per shard of "
              f"{members} members, mean over tasks and activations:\n")
        print_header(archs)
        for hidden in sizes:
            row = []
            for a in archs:
                own = [c for c in cells if c[1] == a and c[3] == hidden]
                sec = [per_member[c] for c in own]
                star = "" if all(c in measured for c in own) else "*"
                row.append(f"{min(sec):.0f}-{max(sec):.0f} s{star} ({np.mean(sec) * members / 3600:.1f} h)")
            print(f"| {hidden} | " + " | ".join(row) + " |")
        print(f"\nGeometry: {per_pair * 1e3:.1f} ms per pair ({args.geometry_networks} random networks of widths "
              f"{sizes}, {samples} samples, one thread); {n_task} networks per task: {geometry_h:.1f} h per task, "
              f"{after_hours:.1f} h for the {len(preset.tasks)} tasks, after the shards, in the driver.")
        report.update(analysis_seconds_per_member={"-".join(map(str, c)): v for c, v in measured.items()},
                      analysis_ratio_128_64=ratio, geometry_seconds_per_pair=per_pair, geometry_hours=after_hours,
                      analysis_cpu_hours=sum(analysis_h.values()))
    what = "training and analysis" if args.analysis else "training"
    rows = [(m, 2 * m, makespan(list(durations.values()), 2 * m) + after_hours) for m in args.machines]
    print(f"\nThe grid ({what}): {len(durations)} shards, {sum(durations.values()) + after_hours:.0f} CPU-hours "
          f"(upper bound: every member trains all {preset.steps} steps); the longest shard "
          f"{max(durations.values()):.1f} h.\n")
    print("| machines | slots | wall time |")
    print("|---|---|---|")
    for machines, slots, hours in rows:
        print(f"| {machines} | {slots} | {hours:.1f} h ({hours / 24:.1f} days) |")
    report.update(cpu_hours=sum(durations.values()) + after_hours, longest_shard_hours=max(durations.values()),
                  wall_hours={str(m): hours for m, _, hours in rows})
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
