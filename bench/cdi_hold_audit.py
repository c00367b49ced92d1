"""Pulse-and-hold audit of trained context-integration networks, independent of the scaffold code.

For each passed cdi network: in each context, the relevant stream is pulsed with a constant
amplitude for 25 steps (so the integrated target reaches v in {-R, -R/2, R/2, R}), then the
sensory input is zero for one trial (T steps) with the context on. The kept fraction is the
readout at the end of the hold over the readout at the end of the pulse. A network *keeps*
its integral when every kept fraction lies in [0.8, 1.25] in both contexts.

    python bench/cdi_hold_audit.py RUN_DIR
prints, per architecture x activation, how many passed networks keep their integral, the
median of the worst kept fraction and how many grow (> 1.25).
"""

from __future__ import annotations

import statistics
import sys

import torch

from universality.run.catalog import RunStore


def kept_fractions(pop, pulse: int = 25) -> torch.Tensor:
    """``[P, 2 contexts, 4 values]`` readout(end of hold) / readout(end of pulse)."""
    task = pop.task
    T, R = task.n_time, task.output_range
    values = torch.tensor([-1.0, -0.5, 0.5, 1.0]) * R
    out = []
    for c in (0, 1):
        x = torch.zeros(len(values), pulse + T, 4)
        x[:, :pulse, c] = (values / (task.scale * pulse))[:, None]  # stream c is relevant in context c
        x[:, :, 2 + c] = 1.0
        with torch.no_grad():
            _, y = pop.run(x)  # [P, K, T', 1]
        out.append(y[:, :, -1, 0] / y[:, :, pulse - 1, 0])
    return torch.stack(out, 1)


def main(path: str) -> None:
    torch.set_num_threads(1)
    store = RunStore(path)
    print("| group | passed | keep (0.8-1.25, both contexts) | median worst kept fraction | grow > 1.25 |")
    print("|---|---|---|---|---|")
    for shard in store.shards():
        info = store.shard_record(shard)
        if info.task != "cdi":
            continue
        rows = store.members(shard)
        pop = store.load_population(shard)
        passed = [i for i, r in enumerate(rows) if r.passed]
        if not passed:
            print(f"| {rows[0].arch}/{rows[0].activation} | 0/{len(rows)} | - | - | - |")
            continue
        k = kept_fractions(pop)[passed].flatten(1)  # [n, 8]
        keep = ((k >= 0.8) & (k <= 1.25)).all(1)
        worst = [float(v) for v in k.gather(1, (k - 1).abs().argmax(1, keepdim=True)).flatten()]
        grow = int((k > 1.25).any(1).sum())
        print(f"| {rows[0].arch}/{rows[0].activation} | {len(passed)}/{len(rows)} | {int(keep.sum())}/{len(passed)} "
              f"| {statistics.median(worst):.3f} | {grow} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reference_results/run")
