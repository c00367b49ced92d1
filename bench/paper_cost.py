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

Usage, from the repository root, on an otherwise idle machine::

    .venv/bin/python bench/paper_cost.py [--sizes 64 128 256] [--short 2 --long 12] [--out cost.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import json
import platform
import sys
import time

import torch

from universality.benchmark import PRESETS
from universality.benchmark.presets import Preset, Shard
from universality.cells import make_cell
from universality.population import Population
from universality.tasks import make_task
from universality.training import TrainConfig, train

#: Time per step of a task relative to the measured sine task (time steps per trial).
TASK_SCALE = {"flipflop": 64 / 100, "sine": 1.0, "cdi": 1.0}


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


def makespan(durations: list[float], slots: int) -> float:
    """Wall time of ``durations`` scheduled longest first onto ``slots`` workers."""
    free = [0.0] * slots
    for d in sorted(durations, reverse=True):
        heapq.heappush(free, heapq.heappop(free) + d)
    return max(free)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="hidden sizes (default: the preset's)")
    parser.add_argument("--archs", nargs="+", default=None, help="architectures (default: the preset's)")
    parser.add_argument("--short", type=int, default=2, help="steps of the first timed run")
    parser.add_argument("--long", type=int, default=12, help="steps of the second timed run")
    parser.add_argument("--machines", type=int, nargs="+", default=[1, 4, 16, 36],
                        help="cluster sizes, in machines of 2 single-threaded slots like this one")
    parser.add_argument("--out", help="write the measurements and the table as JSON here")
    args = parser.parse_args(argv)
    if not 0 < args.short < args.long:
        parser.error("--short must be positive and below --long")
    torch.set_num_threads(1)
    preset = PRESETS["paper"]
    sizes = args.sizes or list(preset.hidden)
    archs = args.archs or list(preset.archs)
    step: dict[tuple[int, str], float] = {}
    for hidden in sizes:
        for arch in archs:
            step[hidden, arch] = seconds_per_step(preset, Shard("sine", arch, "tanh", hidden), args.short, args.long)
            print(f"h{hidden} {arch}: {step[hidden, arch]:.3f} s/step", file=sys.stderr, flush=True)
    grid = dataclasses.replace(preset, hidden=tuple(sizes), archs=tuple(archs)).shards()
    durations = [step[s.hidden, s.arch] * TASK_SCALE[s.task] * preset.steps / 3600 for s in grid]
    print(f"Time per step, one shard of {len(preset.l2) * preset.seeds} members (sine, tanh, one thread), "
          f"and hours per shard at {preset.steps} steps:\n")
    print("| units | " + " | ".join(archs) + " |")
    print("|---|" + "---|" * len(archs))
    for hidden in sizes:
        cells = [f"{step[hidden, a]:.2f} s ({step[hidden, a] * preset.steps / 3600:.1f} h)" for a in archs]
        print(f"| {hidden} | " + " | ".join(cells) + " |")
    rows = [(m, 2 * m, makespan(durations, 2 * m)) for m in args.machines]
    print(f"\nThe grid: {len(durations)} shards, {sum(durations):.0f} CPU-hours (upper bound: every member "
          f"trains all {preset.steps} steps); the longest shard {max(durations):.1f} h.\n")
    print("| machines | slots | wall time |")
    print("|---|---|---|")
    for machines, slots, hours in rows:
        print(f"| {machines} | {slots} | {hours:.1f} h ({hours / 24:.1f} days) |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
                       "short": args.short, "long": args.long,
                       "seconds_per_step": {f"h{h}-{a}": v for (h, a), v in step.items()},
                       "cpu_hours": sum(durations), "longest_shard_hours": max(durations),
                       "wall_hours": {str(m): hours for m, _, hours in rows}}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
