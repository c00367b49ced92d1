"""The flip-flop's figures: each architecture's fixed points by stability index, and the
functional memory (patterns held, shortest escape time) per architecture x activation."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .common import ARCH_COLOURS, INDEX_COLOURS, FigureContext, colour_of, pca_basis, plt, save


def figures(ctx: FigureContext) -> list[str]:
    """One network's fixed points (by number of unstable dimensions) per architecture, and
    the functional memory (patterns held, shortest escape time over patterns: the median is
    the hold length wherever most patterns are held) per architecture x activation."""
    passed = list(ctx.passed)
    lines = []
    for arch in sorted({r.arch for r in passed}):
        r = next(r for r in passed if r.arch == arch)
        member = ctx.fixed_points(r.shard).member(r.idx)
        example = np.asarray(ctx.states(r.shard)[r.idx])
        cloud = example.reshape(-1, example.shape[-1])[:, : member["points"].shape[-1]]
        name = f"flipflop_fixed_points_{arch}.png"
        fixed_points_pca(cloud, member["points"], member["index"], ctx.path(name),
                         f"{arch}/{r.activation} member {r.member}: fixed points by # unstable dims")
        lines += [ctx.image(name, f"fixed points {arch}")]
    lines += [""]
    groups: dict[str, list[tuple[int, float]]] = {}
    hold, n_patterns = None, None
    for r in passed:
        if r.member in ctx.scaffolds:
            numbers = ctx.scaffolds[r.member].numbers
            groups.setdefault(f"{r.arch}/{r.activation}", []).append((numbers.patterns_held,
                                                                       min(numbers.escape_times)))
            hold, n_patterns = numbers.hold_steps, len(numbers.escape_times)
    if groups and hold is not None and n_patterns is not None:
        name = "flipflop_functional_memory.png"
        functional_memory({g: np.array(v, dtype=np.float64) for g, v in sorted(groups.items())}, n_patterns, hold,
                          ctx.path(name))
        lines += [ctx.image(name, "functional memory: patterns held and escape time"), ""]
    return lines


def fixed_points_pca(states: np.ndarray, points: np.ndarray, index: np.ndarray, path: str | Path,
                     title: str) -> None:
    """Fixed points ``[N, S]`` coloured by stability index over a trajectory cloud ``[M, S]``, in 3-D PCA."""
    mean, basis = pca_basis(states, 3)
    fig = plt.figure(figsize=(4.5, 4.2))
    ax = fig.add_subplot(projection="3d")
    cloud = (states - mean) @ basis
    ax.plot(cloud[:, 0], cloud[:, 1], cloud[:, 2], lw=0.3, c="lightgrey")
    xyz = (points - mean) @ basis
    for k in sorted(set(index.tolist())):
        sel = index == k
        ax.scatter(xyz[sel, 0], xyz[sel, 1], xyz[sel, 2], s=25, c=INDEX_COLOURS[min(k, 5)],
                   label=f"{k} unstable")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    save(fig, path)


def functional_memory(groups: Mapping[str, np.ndarray], n_patterns: int, hold: int, path: str | Path) -> None:
    """Patterns held and the shortest escape time per network, one column per group:
    ``groups[label] [N_nets, 2]`` (patterns held, shortest escape time over patterns in
    steps) over ``n_patterns`` patterns and a hold of ``hold`` steps."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    rng = np.random.default_rng(0)
    labels = list(groups)
    for i, label in enumerate(labels):
        values = groups[label]
        x = i + rng.uniform(-0.15, 0.15, len(values))
        colour = colour_of(ARCH_COLOURS, label.split("/")[0])
        axes[0].scatter(x, values[:, 0], s=14, c=colour)
        axes[1].scatter(x, values[:, 1] / hold, s=14, c=colour)
    for ax, ylabel, top in ((axes[0], f"patterns held (of {n_patterns})", n_patterns),
                            (axes[1], f"shortest escape time / hold ({hold} steps)", 1.0)):
        ax.axhline(top, c="k", lw=0.5, ls="--")
        ax.set_ylim(-0.05 * top, 1.05 * top)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(ylabel, fontsize=8)
    fig.suptitle("flip-flop functional memory: patterns written from rest, held at zero input", fontsize=9)
    save(fig, path)
