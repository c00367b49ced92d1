"""What every task's figures share: the context a figure module reads, the colours, the
drawing helpers, and the figures drawn for every task (example trajectories, MDS of the
distances).

Imported only by the report layer (``universality.report``); nothing in the science core
(tasks, cells, dynamics, scaffold, geometry, claims, pipeline) imports a figure module.
Drawing functions take plain arrays, draw one figure and save it as PNG to ``path``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ...geometry import mds  # noqa: E402
from ...run.layout import RunLayout  # noqa: E402

ARCH_COLOURS = {"vanilla": "#1f77b4", "ugrnn": "#2ca02c", "gru": "#d62728", "lstm": "#9467bd"}
ACT_COLOURS = {"tanh": "#ff7f0e", "relu": "#17becf"}
INDEX_COLOURS = ["black", "red", "green", "blue", "orange", "purple"]  # the paper's Fig. 1e code


@dataclass(frozen=True)
class FigureContext:
    """What a task's figure module reads: the ``task``, its passed members' rows
    (``member``, ``shard``, ``idx``, ``arch``, ``activation``, ``hidden``), their stored
    scaffolds by member id (:class:`~universality.scaffold.StoredScaffold`), loaders by
    shard name (``fixed_points``: its ``FixedPoints``; ``states``: probe states
    ``[P, B, T, S]``) and the run's ``layout``, whose figure folder it draws into."""

    task: str
    passed: Sequence[Any]
    scaffolds: Mapping[int, Any]
    fixed_points: Callable[[str], Any]
    states: Callable[[str], Any]
    layout: RunLayout

    def path(self, name: str) -> Path:
        """Where the figure file ``name`` is drawn."""
        return self.layout.figure(name)

    def image(self, name: str, caption: str) -> str:
        """The report's Markdown image line of figure file ``name`` (a link relative to the report)."""
        return f"![{caption}]({self.path(name).relative_to(self.layout.report).as_posix()})"


#: A task's figure hook: draws its figures, returns the report's Markdown lines.
FigureHook = Callable[[FigureContext], list[str]]


def colour_of(table: Mapping[str, str], label: str) -> str:
    return table.get(label, "grey")


def save(fig: plt.Figure, path: str | Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pca_basis(points: np.ndarray, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [S], components [S, n])`` of ``points [M, S]``."""
    mean = points.mean(0)
    _, _, vt = np.linalg.svd(points - mean, full_matrices=False)
    return mean, vt[:n].T


def trajectories(panels: Mapping[str, np.ndarray], path: str | Path, title: str) -> None:
    """One 2-D PCA panel per label: ``states [B, T, S]`` of one network each."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, (label, states) in zip(axes[0], panels.items(), strict=True):
        mean, basis = pca_basis(states.reshape(-1, states.shape[-1]), 2)
        for trial in states[: min(8, len(states))]:
            xy = (trial - mean) @ basis
            ax.plot(xy[:, 0], xy[:, 1], lw=0.8)
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    save(fig, path)


def mds_by_label(embedding: np.ndarray, archs: Sequence[str], activations: Sequence[str], path: str | Path,
                 title: str, highlight: Sequence[bool] | None = None) -> None:
    """Two panels of a 2-D embedding ``[N, 2]``: coloured by architecture, then activation.
    Points where ``highlight [N]`` is True (a checked new architecture) are black stars on
    top, labelled "new"; their arch/activation labels are not used."""
    new = np.zeros(len(embedding), dtype=bool) if highlight is None else np.asarray(highlight, dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, labels, table, name in ((axes[0], archs, ARCH_COLOURS, "architecture"),
                                    (axes[1], activations, ACT_COLOURS, "activation")):
        for label in sorted({v for v, n in zip(labels, new, strict=True) if not n}):
            idx = [i for i, v in enumerate(labels) if v == label and not new[i]]
            ax.scatter(embedding[idx, 0], embedding[idx, 1], s=18, c=colour_of(table, label), label=label)
        if new.any():
            ax.scatter(embedding[new, 0], embedding[new, 1], s=80, c="black", marker="*", zorder=3, label="new")
        ax.set_title(f"{title}: by {name}", fontsize=9)
        ax.legend(fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    save(fig, path)


# ---------------------------------------------------------------------------- every task
def trajectory_section(ctx: FigureContext) -> list[str]:
    """Example trajectories, one passed network per architecture x activation."""
    panels: dict[str, np.ndarray] = {}
    for r in ctx.passed:
        key = f"{r.arch}/{r.activation}"
        if key not in panels:
            panels[key] = ctx.states(r.shard)[r.idx, ..., : r.hidden].numpy()
    if not panels:
        return []
    name = f"{ctx.task}_trajectories.png"
    trajectories(panels, ctx.path(name), f"{ctx.task}: hidden states, 2-D PCA")
    return [ctx.image(name, f"{ctx.task} trajectories"), ""]


def mds_section(ctx: FigureContext, members: Sequence[int], distances: Mapping[str, np.ndarray]) -> list[str]:
    """MDS of each of ``distances`` (name -> ``[N, N]`` over ``members``: ``svcca``,
    ``topology``, ``dynamics``) over the passed members, coloured by architecture and by
    activation; nothing with fewer than 3 passed members."""
    by_id = {r.member: r for r in ctx.passed}
    keep = [i for i, m in enumerate(members) if m in by_id]
    if len(keep) < 3:
        return []
    archs = [by_id[members[i]].arch for i in keep]
    acts = [by_id[members[i]].activation for i in keep]
    lines = []
    for name, matrix in distances.items():
        d = matrix[np.ix_(keep, keep)]
        emb = mds(d + 0.0, seed=0) if np.any(d > 0) else np.zeros((len(keep), 2))
        file = f"{ctx.task}_mds_{name}.png"
        mds_by_label(emb, archs, acts, ctx.path(file), f"{ctx.task} {name} MDS")
        lines += [ctx.image(file, f"{ctx.task} {name} MDS"), ""]
    return lines
