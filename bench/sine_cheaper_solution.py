"""Does a cheaper solution than a limit cycle pass the sine task, and do the trained networks use one?

Two measurements (from the repository root, one thread)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/sine_cheaper_solution.py [--run reference_results/run] [--trials 10]

1. **A damped oscillation on the task.** The output ``A exp(-t / tau) sin(w t)``, t = 0..T-1,
   at each of the task's frequencies (equally weighted, as the task samples them), scored
   with the task's normalised MSE, for tau = T, 2T, 5T, 10T and no decay; with A = 1 and with
   the least-squares gain A (a network could start above the target's amplitude to meet it
   on average). Also the smallest tau the scaffold's ``limit_cycle`` amplitude test accepts
   (the two halves of its window, ``n_measure / 2`` steps apart, within
   ``max_amplitude_change``).
2. **The stored networks beyond the trial.** Every passed sine network of the run, at every
   frequency's input, from the zero state (as a trial starts), for ``--trials`` trial lengths
   in float64. Per trial-length window k the readout amplitude is sqrt(2) x its standard
   deviation over the whole periods of the target that fit in the window's first T steps.
   An input *decays or grows* when the last window's amplitude differs from the middle
   window's (k = K // 2) by more than the scaffold's ``max_amplitude_change`` (10 %): the
   oscillation is not yet a cycle after K / 2 trials. Printed per architecture x
   activation: networks; networks with such an input (canonical ones among them); those
   inputs, and how many of them the stored scaffold already marks as having no limit
   cycle; their frequencies; and the median over networks of the median over inputs of
   amplitude_(K-1) / amplitude_0 (the settled cycle against the trial's own amplitude).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import brentq

from universality.run.cache import load_scaffolds
from universality.run.catalog import RunStore
from universality.scaffold.sine import SineConfig
from universality.tasks import SineWave, make_task
from universality.tasks.base import normalised_mse


def damped_nmse(task: SineWave, tau: float, best_gain: bool) -> float:
    """Normalised MSE of ``A exp(-t / tau) sin(w t)`` against ``sin(w t)`` over the task's
    frequencies and T steps (A = 1, or the least-squares gain)."""
    t = torch.arange(task.n_time, dtype=torch.float64)
    target = torch.sin(task.frequencies()[:, None] * t)  # [F, T]
    output = torch.exp(-t / tau) * target
    if best_gain:
        output = output * (output * target).sum() / output.square().sum()
    return float(normalised_mse(output[..., None], target[..., None], torch.ones_like(target[..., None])))


def amplitudes(y: np.ndarray, omega: np.ndarray, n_time: int) -> np.ndarray:
    """Readout amplitude per window: ``y [P, F, K * T]``, ``omega [F]`` -> ``[P, F, K]``,
    sqrt(2) x the standard deviation over the whole target periods fitting in T steps."""
    k = y.shape[-1] // n_time
    out = np.empty((*y.shape[:2], k))
    for j, w in enumerate(omega):
        period = 2 * math.pi / w
        length = max(2, round(math.floor(n_time / period) * period)) if period <= n_time else n_time
        windows = y[:, j, : k * n_time].reshape(y.shape[0], k, n_time)[..., :length]
        out[:, j] = math.sqrt(2) * windows.std(-1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("reference_results/run"))
    parser.add_argument("--trials", type=int, default=10, help="trial lengths to run each network for")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    task = make_task("sine")
    assert isinstance(task, SineWave)
    n = task.n_time
    print(f"1. damped oscillation A exp(-t/tau) sin(w t), T = {n}, task pass at NMSE <= {task.pass_threshold}")
    print("   tau      NMSE (A = 1)   NMSE (best A)")
    for factor in (1, 2, 5, 10, math.inf):
        tau = factor * n
        print(f"   {factor:>4g} T   {damped_nmse(task, tau, False):.4f}         {damped_nmse(task, tau, True):.4f}")
    for best in (False, True):
        tau = brentq(lambda f: damped_nmse(task, f * n, best) - task.pass_threshold, 0.5, 100.0)  # noqa: B023
        print(f"   passes the task from tau = {tau:.2f} T ({'best A' if best else 'A = 1'})")
    cfg = SineConfig()
    tau_min = (cfg.n_measure / 2) / -math.log(1 - cfg.max_amplitude_change)
    print(f"   the scaffold's limit_cycle test (steps {cfg.n_transient + 1}..{cfg.n_transient + cfg.n_measure}"
          f" from a kick off zero; halves within {cfg.max_amplitude_change:.0%}) accepts a decay only with "
          f"tau >= {tau_min:.0f} steps = {tau_min / n:.1f} T")

    store = RunStore(args.run)
    mid, last = args.trials // 2, args.trials - 1
    print(f"\n2. passed sine networks of {args.run}, from the zero state for {args.trials} T; an input decays or "
          f"grows when its amplitude in window {last} is not within {cfg.max_amplitude_change:.0%} of window {mid}")
    print("   group          nets  with such inputs (canonical)  inputs  of them without a cycle in the scaffold  "
          "frequencies                 median amplitude_last / amplitude_0")
    rows_out: dict[str, list[tuple[np.ndarray, np.ndarray, bool]]] = defaultdict(list)
    omega = np.empty(0)
    for shard in store.shards():
        info = store.shard_record(shard)
        if info.task != "sine":
            continue
        rows = store.members(shard)
        passed = [r.idx for r in rows if r.passed]
        if not passed:
            continue
        numbers, _ = load_scaffolds(store, shard)
        pop = store.load_population(shard).select(passed).to("cpu", torch.float64)
        sine_task = pop.task
        assert isinstance(sine_task, SineWave)
        omega = sine_task.frequencies().numpy()
        conditions = sine_task.conditions().to(torch.float64)  # [F, 1]
        inputs = conditions[:, None, :].expand(-1, args.trials * n, -1)  # [F, K T, 1]
        with torch.no_grad():
            _, outputs = pop.run(inputs)  # [P, F, K T, 1]
        amp = amplitudes(outputs[..., 0].numpy(), omega, n)  # [P, F, K]
        for i, idx in enumerate(passed):
            has_cycle = np.isfinite(np.asarray(numbers[idx]["cycle_freq"], dtype=np.float64))  # [F]
            rows_out[f"{rows[idx].arch}/{rows[idx].activation}"].append(
                (amp[i], has_cycle, bool(numbers[idx]["canonical"])))
    for group, nets in sorted(rows_out.items()):
        moving = [np.abs(a[:, last] / a[:, mid] - 1) > cfg.max_amplitude_change for a, _, _ in nets]  # [F] each
        n_nets = sum(bool(m.any()) for m in moving)
        n_canonical = sum(bool(m.any()) and c for m, (_, _, c) in zip(moving, nets, strict=True))
        n_inputs = sum(int(m.sum()) for m in moving)
        flagged = sum(int((m & ~h).sum()) for m, (_, h, _) in zip(moving, nets, strict=True))
        freqs = sorted({round(float(w), 2) for m in moving for w in omega[m]})
        shown = ", ".join(f"{w:g}" for w in freqs[:4]) + (f" ... ({len(freqs)})" if len(freqs) > 4 else "")
        kept = np.median([np.median(a[:, last] / a[:, 0]) for a, _, _ in nets])
        print(f"   {group:<14} {len(nets):>4}  {n_nets:>3} ({n_canonical})                     {n_inputs:>6}  "
              f"{flagged:>6}                                   {shown or '-':<27} {kept:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
