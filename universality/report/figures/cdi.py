"""The cdi's figures: sorted spectra (Fig. 3e), response against modes retained (Fig. 3f),
the modes table, each network's one-dimensionality against the PC1 share, and the hold
table per architecture x activation."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...scaffold.cdi import THRESHOLDS, CdiNumbers
from .common import ARCH_COLOURS, FigureContext, colour_of, plt, save


def figures(ctx: FigureContext) -> list[str]:
    """Sorted spectra (Fig. 3e), response vs modes retained (Fig. 3f), the modes table, each
    network's one-dimensionality (curve R^2) against the old PC1 share, and the hold test
    per architecture x activation (networks holding in both contexts; medians of the
    smallest and largest kept fraction and of the irrelevant stream's largest movement)."""
    passed = [r for r in ctx.passed if r.member in ctx.scaffolds]
    lines: list[str] = []
    for key, draw, name, caption in ((_spectrum, spectra, "cdi_spectra", "sorted eigenvalue spectra"),
                                     (_response_curve, mode_curves, "cdi_mode_curves",
                                      "linearised response vs modes retained")):
        by_arch = _curves_by_arch(passed, ctx, key)
        if by_arch:
            draw(by_arch, ctx.path(f"{name}.png"))
            lines += [ctx.image(f"{name}.png", caption), ""]
    modes: dict[str, list[float]] = defaultdict(list)
    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in passed:
        numbers = ctx.scaffolds[r.member].numbers
        if numbers.modes_90 is not None and np.isfinite(numbers.modes_90):
            modes[r.arch].append(numbers.modes_90)
        pc1, r2 = numbers.line_pc1, numbers.curve_r2
        if pc1 is not None and r2 is not None and np.isfinite(pc1) and np.isfinite(r2):
            scores[f"{r.arch}/{r.activation}"].append((pc1, r2))
    if scores:
        line_scores({k: np.array(v) for k, v in scores.items()}, THRESHOLDS["line_pc1"], THRESHOLDS["curve_r2"],
                    ctx.path("cdi_line_scores.png"))
        lines += [ctx.image("cdi_line_scores.png", "one-dimensionality: curve R^2 vs PC1 share"), ""]
    if modes:
        lines += ["| architecture | modes for 90% of the linearised response (median) | networks |", "|---|---|---|"]
        lines += [f"| {a} | {np.median(v):g} | {len(v)} |" for a, v in sorted(modes.items())]
        lines += [""]
    holds: dict[str, list[tuple[bool, float, float, float]]] = defaultdict(list)
    for r in passed:
        stored = ctx.scaffolds[r.member]
        holds[f"{r.arch}/{r.activation}"].append((stored.met("hold"), stored.numbers.kept_min,
                                                 stored.numbers.kept_max, stored.numbers.moved))
    if holds:
        lines += ["| group | hold in both contexts | kept fraction, smallest (median) | largest (median) | "
                  "irrelevant movement / value (median) |", "|---|---|---|---|---|"]
        for g, v in sorted(holds.items()):
            held, lo, hi, moved = zip(*v, strict=True)
            lines.append(f"| {g} | {sum(held)}/{len(v)} | {np.nanmedian(lo):.3g} | {np.nanmedian(hi):.3g} | "
                         f"{np.nanmedian(moved):.3g} |")
        lines += [""]
    return lines


def _spectrum(numbers: CdiNumbers) -> list[float]:
    return numbers.spectrum


def _response_curve(numbers: CdiNumbers) -> list[float]:
    return numbers.response_curve


def _curves_by_arch(passed: Sequence[Any], ctx: FigureContext, key: Callable[[CdiNumbers], list[float]],
                    width: int = 10) -> dict[str, np.ndarray]:
    """Per architecture, the ``[N_nets, K]`` stack of each passed member's scaffold list
    ``key(numbers)`` (its spectrum or response curve; first ``width`` values, cut to the
    shortest)."""
    lists: dict[str, list[list[float]]] = defaultdict(list)
    for r in passed:
        values = key(ctx.scaffolds[r.member].numbers)
        if values:
            lists[r.arch].append(list(values)[:width])
    if not lists:
        return {}
    k = min(len(v) for vs in lists.values() for v in vs)
    return {a: np.array([v[:k] for v in vs]) for a, vs in lists.items()}


def spectra(spectra_by_arch: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Mean ± s.e.m. of sorted |eigenvalue| spectra per architecture: ``[N_nets, K]`` each."""
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for arch, values in spectra_by_arch.items():
        mean = values.mean(0)
        sem = values.std(0) / np.sqrt(max(len(values), 1))
        x = np.arange(1, len(mean) + 1)
        ax.errorbar(x, mean, yerr=sem, c=colour_of(ARCH_COLOURS, arch), label=arch, capsize=2)
    ax.axhline(1, c="k", lw=0.5, ls="--")
    ax.set_xlabel("eigenvalue rank")
    ax.set_ylabel("|λ|")
    ax.legend(fontsize=7)
    save(fig, path)


def mode_curves(curves_by_arch: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Fraction of the linearised unit-input response kept vs modes retained: ``[N_nets, K]`` each."""
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for arch, values in curves_by_arch.items():
        mean = np.nanmean(values, 0)
        ax.plot(np.arange(1, len(mean) + 1), mean, c=colour_of(ARCH_COLOURS, arch), label=arch, marker="o", ms=3)
    ax.axhline(0.9, c="k", lw=0.5, ls="--")
    ax.set_xlabel("modes retained (largest |λ| first)")
    ax.set_ylabel("response accuracy")
    ax.legend(fontsize=7)
    save(fig, path)


def line_scores(scores: Mapping[str, np.ndarray], pc1_threshold: float, r2_threshold: float,
                    path: str | Path) -> None:
    """Per network, the cdi line's one-dimensionality (curve R^2, y) against the old
    straightness test (PC1 share, x): ``scores[label] [N_nets, 2]`` (pc1, r2) per
    ``arch/activation``, with both thresholds dashed."""
    fig, ax = plt.subplots(figsize=(4.4, 4))
    for label, values in sorted(scores.items()):
        arch, _, act = label.partition("/")
        ax.scatter(values[:, 0], values[:, 1], s=18, c=colour_of(ARCH_COLOURS, arch),
                   marker="o" if act != "relu" else "^", label=label, alpha=0.8)
    ax.axvline(pc1_threshold, c="k", lw=0.5, ls="--")
    ax.axhline(r2_threshold, c="k", lw=0.5, ls="--")
    ax.set_xlabel("PC1 share of the line's points (old test)")
    ax.set_ylabel("variance explained by a curve in the readout")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    save(fig, path)

