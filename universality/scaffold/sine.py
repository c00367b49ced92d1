"""Frequency-cued sine-wave scaffold: input-dependent unstable spirals and limit cycles.

For each frequency's static input x_j (the task's conditions, target w_j):

* **Linearised dynamics.** The number of (certified) fixed points (a continuum counts
  once), and the dominant eigenvalue lambda (largest |lambda|) of the most unstable point:
  for the canonical scaffold the only point, an unstable spiral whose linearised
  frequency |arg lambda| tracks w_j.
* **Autonomous trajectory.** Every member runs at every input at once (float64) from a
  small seeded kick off the zero state for ``n_transient + n_measure`` steps; on the last
  ``n_measure`` steps the readout y(t) is measured: its frequency (peak of the
  Hann-windowed, zero-padded spectrum, refined by parabolic interpolation), and whether
  it is a limit cycle (finite; amplitude ``std y >= min_amplitude``; neither decaying nor
  growing: the two halves' amplitudes differ by at most ``max_amplitude_change``;
  periodic: ``corr(y_t, y_{t+period}) >= min_periodicity``). The readout is used because
  it is the same in every coordinate system of the state space.
* **Homology** (a check, not in the signature): at ``n_homology`` evenly spaced inputs,
  ripser on the measured state trajectory; ``frac_h1_loop`` is the fraction with exactly
  one long-lived H1 bar (a single loop).

Signature ``vector`` ``[C * 5]``: per input ``[min(n_fixed, max_n_fixed), |lambda|,
|arg lambda| / w, has_cycle, cycle_freq / w]`` (zeros where undefined); distance: the
mean over inputs of the L1 difference of these five numbers.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..dynamics import FixedPoints
from ..dynamics.linearise import float64_params
from ..population import Population
from ..tasks import SineWave
from .base import Scaffold, ScaffoldSpec
from .homology import n_long_lived, persistence

log = logging.getLogger(__name__)

#: The project's reading of the paper's sine claim (docs/methods.md, "Sine scaffold"; the paper states the sine
#: scaffold qualitatively; these numbers are ours). A member is canonical when, over the
#: task's inputs, at least 90 % have exactly one fixed point, unstable with a complex
#: dominant pair; at least 90 % end on a limit cycle; the linearised frequency |arg lambda|
#: correlates with the target w at Pearson r >= 0.95; and its median relative error
#: |arg lambda - w| / w is at most 15 %.
CANONICAL_THRESHOLDS: dict[str, float] = {
    "min_frac_one_unstable_oscillatory": 0.9,
    "min_frac_limit_cycle": 0.9,
    "min_corr": 0.95,
    "max_median_rel_error": 0.15,
}

FEATURES = ("n_fixed", "abs_lambda", "linear_freq_ratio", "has_cycle", "cycle_freq_ratio")


@dataclass(frozen=True)
class SineConfig:
    """Settings of the trajectory measurements (readout units for amplitudes).

    ``n_transient = 300`` steps are dropped (a unit growing at |lambda| = 1.05 goes from
    the ``kick = 1e-3`` to O(1) in ~140 steps); ``n_measure = 512`` covers 8 periods of
    the slowest default frequency (0.1 rad/step). ``min_amplitude = 0.05`` is 7 % of the
    target's std (1/sqrt 2).
    """

    n_transient: int = 300
    n_measure: int = 512
    kick: float = 1e-3
    seed: int = 0
    min_amplitude: float = 0.05
    max_amplitude_change: float = 0.1
    min_periodicity: float = 0.9
    max_n_fixed: int = 5
    n_homology: int = 5
    homology_points: int = 200
    h1_threshold: float = 0.5


def compute(population: Population, fixed_points: FixedPoints, config: SineConfig | None = None) -> list[Scaffold]:
    """One sine :class:`Scaffold` per member from ``fixed_points`` found at the task's inputs."""
    cfg = config or SineConfig()
    task = population.task
    if not isinstance(task, SineWave):
        raise ValueError(f"the sine scaffold needs a SineWave task, got {task.name!r}")
    omega = task.frequency_of(fixed_points.conditions[:, 0]).numpy()  # [C]

    # Linearised dynamics at the most unstable fixed point of each (member, input).
    certified = fixed_points.mask & fixed_points.fixed  # slow points are ignored
    n_fixed = certified.sum(-1)  # [P, C]
    top = fixed_points.eigenvalues[..., 0]  # [P, C, N] dominant eigenvalue per point
    lam = np.full(n_fixed.shape, complex(math.nan, math.nan))  # [P, C]
    if top.shape[-1]:
        best = torch.where(certified, top.abs(), -math.inf).argmax(-1, keepdim=True)
        lam = np.where(n_fixed > 0, top.gather(-1, best).squeeze(-1).numpy(), lam)
    abs_lam, linear_freq = np.abs(lam), np.abs(np.angle(lam))  # [P, C]
    one_unstable_osc = (n_fixed.numpy() == 1) & (abs_lam > 1) & (linear_freq > 1e-6)

    readout, states = _simulate(population, fixed_points.conditions, _homology_inputs(len(omega), cfg), cfg)
    cycle_freq, has_cycle = _oscillation(readout, cfg)  # [P, C]

    rel_error = np.abs(linear_freq - omega) / omega
    cycle_error = np.where(has_cycle, np.abs(cycle_freq - omega) / omega, np.nan)
    features = np.stack([
        np.minimum(n_fixed.numpy(), cfg.max_n_fixed),
        np.nan_to_num(abs_lam),
        np.nan_to_num(linear_freq / omega),
        has_cycle.astype(np.float64),
        np.where(has_cycle, cycle_freq / omega, 0.0),
    ], axis=-1)  # [P, C, 5]

    scaffolds = []
    for m in range(len(population)):
        loops = [_one_loop(s, cfg) for s in states[m]]
        numbers = {
            "n_inputs": len(omega),
            "max_n_fixed": int(n_fixed[m].max()) if len(omega) else 0,
            "corr": _pearson(linear_freq[m], omega),
            "median_rel_error": _nanmedian(rel_error[m]),
            "frac_one_unstable_oscillatory": float(one_unstable_osc[m].mean()),
            "frac_limit_cycle": float(has_cycle[m].mean()),
            "median_cycle_freq_error": _nanmedian(cycle_error[m]),
            "frac_h1_loop": float(np.mean(loops)) if loops else math.nan,
        }
        scaffolds.append(Scaffold("sine", is_canonical(numbers), numbers, features[m].reshape(-1)))
    log.info("sine scaffold: %d of %d members canonical", sum(s.canonical for s in scaffolds), len(scaffolds))
    return scaffolds


def is_canonical(numbers: dict[str, float]) -> bool:
    """Whether a member's ``numbers`` meet :data:`CANONICAL_THRESHOLDS` (NaN fails)."""
    t = CANONICAL_THRESHOLDS
    return bool(
        numbers["frac_one_unstable_oscillatory"] >= t["min_frac_one_unstable_oscillatory"]
        and numbers["frac_limit_cycle"] >= t["min_frac_limit_cycle"]
        and numbers["corr"] >= t["min_corr"]
        and numbers["median_rel_error"] <= t["max_median_rel_error"]
    )


def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Mean over inputs of the L1 difference of the per-input features:
    ``u [N, C * 5], v [M, C * 5] -> [N, M]``."""
    u, v = np.atleast_2d(u), np.atleast_2d(v)
    if u.shape[1] != v.shape[1] or u.shape[1] % len(FEATURES):
        raise ValueError(f"sine signatures must share a length C * {len(FEATURES)}; got {u.shape[1]}, {v.shape[1]}")
    diff = np.abs(u[:, None, :] - v[None, :, :]).reshape(len(u), len(v), -1, len(FEATURES))
    return diff.sum(-1).mean(-1)


SPEC = ScaffoldSpec("sine", compute, distance)


# ---------------------------------------------------------------------- helpers
def _homology_inputs(n_inputs: int, cfg: SineConfig) -> Tensor:
    """Indices of the inputs whose trajectories get persistent homology (evenly spaced)."""
    return torch.linspace(0, n_inputs - 1, min(cfg.n_homology, n_inputs)).round().long().unique()


def _simulate(population: Population, conditions: Tensor, keep: Tensor, cfg: SineConfig) -> tuple[Tensor, Tensor]:
    """Autonomous runs at every input from a seeded kick off zero, batched over members x inputs.

    Returns the first readout channel over the measured window, ``[P, C, n_measure]``
    (float64), and the states at the inputs ``keep`` over that window, ``[P, len(keep),
    n_measure, S]`` (CPU).
    """
    p, c, s, dev = len(population), len(conditions), population.state_size, population.device
    params = float64_params(population)
    readout_params = {k: v.detach().to(torch.float64) for k, v in population.params.items()}
    gen = torch.Generator().manual_seed(cfg.seed)
    h = (cfg.kick * torch.randn(c, s, generator=gen, dtype=torch.float64)).expand(p, c, s).to(dev)
    x = conditions.to(dev, torch.float64).expand(p, c, -1)
    keep = keep.to(dev)
    ys, kept = [], []
    with torch.no_grad():
        for t in range(cfg.n_transient + cfg.n_measure):
            h = population.step(x, h, params)
            if t >= cfg.n_transient:
                ys.append(population.readout(h, readout_params)[..., 0])
                kept.append(h[:, keep])
    return torch.stack(ys, -1).cpu(), torch.stack(kept, 2).cpu()


def _oscillation(y: Tensor, cfg: SineConfig) -> tuple[np.ndarray, np.ndarray]:
    """Frequency (rad/step) and limit-cycle flag of readout traces ``y [..., T]``."""
    t = y.shape[-1]
    finite = torch.isfinite(y).all(-1)
    y = torch.where(finite.unsqueeze(-1), y, 0.0)
    z = y - y.mean(-1, keepdim=True)
    n_fft = 4 * 2 ** math.ceil(math.log2(t))
    power = torch.fft.rfft(z * torch.hann_window(t, periodic=False, dtype=y.dtype), n=n_fft).abs().square()
    power[..., 0] = 0.0
    k = power[..., 1:-1].argmax(-1, keepdim=True) + 1
    a, b, c = (power.clamp_min(1e-300).log().gather(-1, k + d).squeeze(-1) for d in (-1, 0, 1))
    shift = (0.5 * (a - c) / (a - 2 * b + c)).nan_to_num(0.0).clamp(-0.5, 0.5)
    freq = 2 * math.pi * (k.squeeze(-1) + shift) / n_fft

    half = t // 2
    amp1, amp2 = z[..., :half].std(-1), z[..., half:].std(-1)
    steady = (amp2 >= cfg.min_amplitude) & ((amp2 / amp1.clamp_min(1e-300) - 1).abs() <= cfg.max_amplitude_change)
    lag = (2 * math.pi / freq).round().long().clamp(1, t - 2)  # one period, in steps
    idx = torch.arange(t)
    a_idx = idx.expand(*lag.shape, t)
    valid = a_idx + lag.unsqueeze(-1) < t
    b_val = z.gather(-1, (a_idx + lag.unsqueeze(-1)).clamp(max=t - 1))
    num = (z * b_val * valid).sum(-1)
    den = ((z.square() * valid).sum(-1) * (b_val.square() * valid).sum(-1)).sqrt().clamp_min(1e-300)
    periodic = num / den >= cfg.min_periodicity
    return freq.numpy(), (finite & steady & periodic).numpy()


def _one_loop(states: Tensor, cfg: SineConfig) -> bool:
    """Whether a trajectory ``[T, S]`` has exactly one long-lived H1 bar (False if not finite)."""
    if not bool(torch.isfinite(states).all()):
        return False
    return n_long_lived(persistence(states, cfg.homology_points, cfg.seed)[1], cfg.h1_threshold) == 1


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation over the entries finite in both (NaN if fewer than 2 or constant)."""
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 2 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return math.nan
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _nanmedian(a: np.ndarray) -> float:
    """Median of the finite entries (NaN if none)."""
    a = a[np.isfinite(a)]
    return float(np.median(a)) if len(a) else math.nan
