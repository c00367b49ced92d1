"""Matplotlib figures for reports. Imported only by the report; the core never imports it.

Every function takes plain arrays, draws one figure and saves it as PNG to ``path``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ARCH_COLOURS = {"vanilla": "#1f77b4", "ugrnn": "#2ca02c", "gru": "#d62728", "lstm": "#9467bd"}
ACT_COLOURS = {"tanh": "#ff7f0e", "relu": "#17becf"}
INDEX_COLOURS = ["black", "red", "green", "blue", "orange", "purple"]  # the paper's Fig. 1e code


def _colour(table: Mapping[str, str], label: str) -> str:
    return table.get(label, "grey")


def _save(fig: plt.Figure, path: str | Path) -> None:
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
    _save(fig, path)


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
            ax.scatter(embedding[idx, 0], embedding[idx, 1], s=18, c=_colour(table, label), label=label)
        if new.any():
            ax.scatter(embedding[new, 0], embedding[new, 1], s=80, c="black", marker="*", zorder=3, label="new")
        ax.set_title(f"{title}: by {name}", fontsize=9)
        ax.legend(fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    _save(fig, path)


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
    _save(fig, path)


def frequency_tracking(target: np.ndarray, linearised: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Linearised frequency |arg lambda| vs target omega: ``linearised[label] [N_nets, F]``."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for label, curves in linearised.items():
        for i, curve in enumerate(curves):
            ax.plot(target, curve, c=_colour(ARCH_COLOURS, label.split("/")[0]), lw=0.8, alpha=0.7,
                    label=label if i == 0 else None)
    ax.plot(target, target, "k--", lw=1, label="identity")
    ax.set_xlabel("target frequency (rad/step)")
    ax.set_ylabel("linearised |arg λ| (rad/step)")
    ax.legend(fontsize=7)
    _save(fig, path)


def spectra(spectra_by_arch: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Mean ± s.e.m. of sorted |eigenvalue| spectra per architecture: ``[N_nets, K]`` each."""
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for arch, values in spectra_by_arch.items():
        mean = values.mean(0)
        sem = values.std(0) / np.sqrt(max(len(values), 1))
        x = np.arange(1, len(mean) + 1)
        ax.errorbar(x, mean, yerr=sem, c=_colour(ARCH_COLOURS, arch), label=arch, capsize=2)
    ax.axhline(1, c="k", lw=0.5, ls="--")
    ax.set_xlabel("eigenvalue rank")
    ax.set_ylabel("|λ|")
    ax.legend(fontsize=7)
    _save(fig, path)


def mode_curves(curves_by_arch: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Fraction of the linearised unit-input response kept vs modes retained: ``[N_nets, K]`` each."""
    fig, ax = plt.subplots(figsize=(4.5, 3.6))
    for arch, values in curves_by_arch.items():
        mean = np.nanmean(values, 0)
        ax.plot(np.arange(1, len(mean) + 1), mean, c=_colour(ARCH_COLOURS, arch), label=arch, marker="o", ms=3)
    ax.axhline(0.9, c="k", lw=0.5, ls="--")
    ax.set_xlabel("modes retained (largest |λ| first)")
    ax.set_ylabel("response accuracy")
    ax.legend(fontsize=7)
    _save(fig, path)


def flipflop_functional_memory(groups: Mapping[str, np.ndarray], n_patterns: int, hold: int,
                               path: str | Path) -> None:
    """Patterns held and the shortest escape time per network, one column per group:
    ``groups[label] [N_nets, 2]`` (patterns held, shortest escape time over patterns in
    steps) over ``n_patterns`` patterns and a hold of ``hold`` steps."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    rng = np.random.default_rng(0)
    labels = list(groups)
    for i, label in enumerate(labels):
        values = groups[label]
        x = i + rng.uniform(-0.15, 0.15, len(values))
        colour = _colour(ARCH_COLOURS, label.split("/")[0])
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
    _save(fig, path)


def sine_frequency_bias(points_by_arch: Mapping[str, np.ndarray], path: str | Path) -> None:
    """Relative error of the linearised frequency, (|arg λ| - ω) / ω, against |λ| - 1, pooled
    over networks and inputs: ``points_by_arch[arch] [2, M]`` (rows |λ| - 1 and the error;
    NaN columns, inputs without a pair, are skipped)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.8))
    for arch, (growth, error) in points_by_arch.items():
        ok = np.isfinite(growth) & np.isfinite(error)
        ax.scatter(growth[ok], error[ok], s=6, alpha=0.5, c=_colour(ARCH_COLOURS, arch), label=arch, lw=0)
    ax.axhline(0, c="k", lw=0.5, ls="--")
    ax.set_xlabel("|λ| - 1 of the unstable complex pair")
    ax.set_ylabel("(|arg λ| - ω) / ω")
    ax.legend(fontsize=7, markerscale=2)
    _save(fig, path)


def cdi_line_scores(scores: Mapping[str, np.ndarray], pc1_threshold: float, r2_threshold: float,
                    path: str | Path) -> None:
    """Per network, the cdi line's one-dimensionality (curve R^2, y) against the old
    straightness test (PC1 share, x): ``scores[label] [N_nets, 2]`` (pc1, r2) per
    ``arch/activation``, with both thresholds dashed."""
    fig, ax = plt.subplots(figsize=(4.4, 4))
    for label, values in sorted(scores.items()):
        arch, _, act = label.partition("/")
        ax.scatter(values[:, 0], values[:, 1], s=18, c=_colour(ARCH_COLOURS, arch),
                   marker="o" if act != "relu" else "^", label=label, alpha=0.8)
    ax.axvline(pc1_threshold, c="k", lw=0.5, ls="--")
    ax.axhline(r2_threshold, c="k", lw=0.5, ls="--")
    ax.set_xlabel("PC1 share of the line's points (old test)")
    ax.set_ylabel("variance explained by a curve in the readout")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    _save(fig, path)
