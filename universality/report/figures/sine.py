"""The sine's figures: the linearised frequency against the target, and its bias against
|lambda| - 1, with the table of per-network bias slopes."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import ARCH_COLOURS, FigureContext, colour_of, plt, save


def figures(ctx: FigureContext) -> list[str]:
    """The linearised frequency of the pair against the target per network
    (``sine_frequency_tracking.png``), and the bias: relative error against |lambda| - 1
    pooled over the passed networks, by architecture (``sine_frequency_bias.png``), with a
    table of the per-network bias slopes."""
    rows = [(r, ctx.scaffolds[r.member].numbers) for r in ctx.passed if r.member in ctx.scaffolds]
    if not rows:
        return []
    target = np.asarray(rows[0][1].omega, dtype=np.float64)
    curves: dict[str, list[np.ndarray]] = defaultdict(list)
    points: dict[str, list[np.ndarray]] = defaultdict(list)
    slopes: dict[str, list[float]] = defaultdict(list)
    for r, numbers in rows:
        omega = np.asarray(numbers.omega, dtype=np.float64)
        freq = np.asarray(numbers.linear_freq, dtype=np.float64)
        if omega.shape == target.shape and np.allclose(omega, target):
            curves[f"{r.arch}/{r.activation}"].append(freq)
        points[r.arch].append(np.stack([np.asarray(numbers.abs_lambda, dtype=np.float64) - 1,
                                        (freq - omega) / omega]))
        slopes[r.arch].append(float(numbers.bias_slope))
    frequency_tracking(target, {k: np.stack(v) for k, v in curves.items()}, ctx.path("sine_frequency_tracking.png"))
    frequency_bias({a: np.concatenate(v, axis=1) for a, v in points.items()}, ctx.path("sine_frequency_bias.png"))
    lines = [ctx.image("sine_frequency_tracking.png", "linearised vs target frequency"), "",
             ctx.image("sine_frequency_bias.png", "relative frequency error vs |λ| - 1"), "",
             "| architecture | networks | median bias slope (relative error per unit of \\|λ\\| - 1) |",
             "|---|---|---|"]
    for arch, values in sorted(slopes.items()):
        finite = [v for v in values if math.isfinite(v)]
        lines.append(f"| {arch} | {len(values)} | {np.median(finite):.3g} |" if finite
                     else f"| {arch} | {len(values)} | n/a |")
    return lines + [""]


def frequency_tracking(target: np.ndarray, linearised: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Linearised frequency |arg lambda| vs target omega: ``linearised[label] [N_nets, F]``."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for label, curves in linearised.items():
        for i, curve in enumerate(curves):
            ax.plot(target, curve, c=colour_of(ARCH_COLOURS, label.split("/")[0]), lw=0.8, alpha=0.7,
                    label=label if i == 0 else None)
    ax.plot(target, target, "k--", lw=1, label="identity")
    ax.set_xlabel("target frequency (rad/step)")
    ax.set_ylabel("linearised |arg λ| (rad/step)")
    ax.legend(fontsize=7)
    save(fig, path)


def frequency_bias(points_by_arch: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Relative error of the linearised frequency, (|arg λ| - ω) / ω, against |λ| - 1, pooled
    over networks and inputs: ``points_by_arch[arch] [2, M]`` (rows |λ| - 1 and the error;
    NaN columns, inputs without a pair, are skipped)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    for arch, (growth, error) in points_by_arch.items():
        ok = np.isfinite(growth) & np.isfinite(error)
        ax.scatter(growth[ok], error[ok], s=6, alpha=0.5, c=colour_of(ARCH_COLOURS, arch), label=arch, lw=0)
    ax.axhline(0, c="k", lw=0.5, ls="--")
    ax.set_xlabel("|λ| - 1 of the unstable complex pair")
    ax.set_ylabel("(|arg λ| - ω) / ω")
    ax.legend(fontsize=7, markerscale=2)
    save(fig, path)
