"""Representational geometry: all-pairs SVCCA, CCA, CKA and Procrustes distances.

A *representation* is one network's states on a shared set of trials, stacked over
trials x time into a ``[M, U]`` matrix (M samples, U units). Every metric factors as

1. a per-network *embedding* ``Z_n`` (centring, PCA, whitening, normalisation), done once
   per network: ``[M, U_n] -> [M, w]``;
2. a pairwise *score* of the cross product ``C_ab = Z_a^T Z_b`` (``[w, w]``).

All pairs are then computed tile by tile: a tile of ``b x b`` networks is one GEMM plus one
batched reduction (e.g. ``svdvals``), so memory stays bounded and only tiles on or above the
diagonal are computed.

Metrics (each a distance, 0 for identical inputs):

* ``svcca``: ``1 - mean canonical correlation`` of the top-``k`` principal subspaces
  (Raghu et al. 2017; the paper's definition).
* ``cca_angular``: ``arccos(mean canonical correlation)``, a proper metric (Williams et al.
  2021, whitened shape metric).
* ``cka``: ``1 - linear CKA`` (Kornblith et al. 2019).
* ``procrustes``: angular Procrustes shape distance ``arccos ||X_a^T X_b||_*`` for centred,
  Frobenius-normalised, zero-padded representations (Williams et al. 2021).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["DEFAULT_K", "METRICS", "Metric", "distance", "pairwise_distances", "svcca_k"]

log = logging.getLogger(__name__)

DEFAULT_K = 10
"""Default number of principal components kept by the CCA metrics.

Fixed across networks so every pair compares k canonical correlations. Ten exceeds the
intrinsic dimensionality of the tasks' dynamics (3-bit flip-flop ~3, sine ~2, context
integration a few), so the task subspace is kept, while the low-variance directions, where
CCA would match noise, are dropped (docs/methods.md, "Geometry").
"""

Representations = Tensor | np.ndarray | Sequence[Tensor | np.ndarray]


def svcca_k(representations: Sequence[Tensor | np.ndarray], k: int = DEFAULT_K) -> int:
    """The number of components the CCA metrics keep for a set of networks: ``k``, lowered
    to the smallest numerical rank of a centred representation ``[M, U_n]`` among them, so
    every network has that many principal components."""
    ranks = [int(torch.linalg.matrix_rank(x - x.mean(0))) for x in (torch.as_tensor(r) for r in representations)]
    return min([k, *ranks])


@dataclass(frozen=True)
class Metric:
    """A distance between representations, split into per-network and pairwise parts.

    ``embed(X [b, M, W], **params) -> Z [b, M, w]`` receives centred (zero-padded)
    representations; ``score(C [..., w, w]) -> [...]`` maps cross products
    ``C = Z_a^T Z_b`` to distances. ``params`` maps each accepted parameter to its default.
    """

    name: str
    embed: Callable[..., Tensor]
    score: Callable[[Tensor], Tensor]
    params: Mapping[str, Any]


# ---------------------------------------------------------------- embeddings [b, M, W] -> [b, M, w]


def _top_k_basis(x: Tensor, *, k: int = DEFAULT_K) -> Tensor:
    """Orthonormal basis of the top-k principal subspace: ``[b, M, W] -> [b, M, k]``.

    The whitened top-k principal components of ``X = U S V^T`` are the columns of ``U[:, :k]``,
    so the CCA of two networks needs nothing else.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    m = x.shape[-2]
    if k > m - 1:
        raise ValueError(f"k={k} needs more than k samples (after centring rank <= M-1), got M={m}")
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    rank = (s > s[..., :1] * _rtol(x)).sum(-1)
    if bool((rank < k).any()):
        raise _BadNetworks(rank < k, f"have numerical rank {rank[rank < k].tolist()} < k={k}; pass a smaller k")
    return u[..., :k]


def _unit_frobenius(x: Tensor) -> Tensor:
    """Scale each ``[M, W]`` matrix to unit Frobenius norm: ``[b, M, W] -> [b, M, W]``."""
    return x / torch.linalg.matrix_norm(x)[..., None, None]


def _unit_self_similarity(x: Tensor) -> Tensor:
    """Scale so that ``||Z^T Z||_F = 1``, making CKA the plain ``||Z_a^T Z_b||_F^2``."""
    return x / torch.linalg.matrix_norm(x.mT @ x)[..., None, None].sqrt()


class _BadNetworks(ValueError):
    """Raised by an embedding for some networks of a block (``bad [b]`` bool mask)."""

    def __init__(self, bad: Tensor, reason: str) -> None:
        super().__init__(reason)
        self.indices = torch.nonzero(bad).flatten().tolist()
        self.reason = reason


# ---------------------------------------------------------------- scores [..., w, w] -> [...]


def _svcca_score(c: Tensor) -> Tensor:
    return (1 - torch.linalg.svdvals(c).mean(-1)).clamp_min(0)


def _cca_angular_score(c: Tensor) -> Tensor:
    return torch.linalg.svdvals(c).mean(-1).clamp(-1, 1).arccos()


def _cka_score(c: Tensor) -> Tensor:
    return (1 - c.square().sum((-2, -1))).clamp_min(0)


def _procrustes_score(c: Tensor) -> Tensor:
    return torch.linalg.svdvals(c).sum(-1).clamp(-1, 1).arccos()


METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        "svcca": Metric("svcca", _top_k_basis, _svcca_score, {"k": DEFAULT_K}),
        "cca_angular": Metric("cca_angular", _top_k_basis, _cca_angular_score, {"k": DEFAULT_K}),
        "cka": Metric("cka", _unit_self_similarity, _cka_score, {}),
        "procrustes": Metric("procrustes", _unit_frobenius, _procrustes_score, {}),
    }
)
"""Registry of metric name -> :class:`Metric`."""


# ---------------------------------------------------------------- public API


def pairwise_distances(
    representations: Representations,
    metric: str = "svcca",
    *,
    block_size: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
    **params: Any,
) -> Tensor:
    """All-pairs distances between N networks' representations.

    Args:
        representations: ``[N, M, U]`` tensor, or a sequence of N ``[M, U_n]`` tensors/arrays
            (same M = samples, i.e. trials x time, any unit counts U_n).
        metric: a key of :data:`METRICS`.
        block_size: networks per tile side; a tile holds ``block_size**2`` pairs and needs
            about ``block_size**2 * w**2 + 2 * block_size * M * w`` numbers (w = k for the CCA
            metrics, max U_n otherwise). Default: 32 on CPU (GEMM-bound already; smaller tiles
            waste less on the diagonal), 256 on accelerators (fewer kernel launches).
        device: where to compute; default: the device of the (first) input tensor.
        dtype: compute dtype.
        **params: metric parameters (``k`` for ``svcca`` and ``cca_angular``).

    Returns:
        ``[N, N]`` symmetric distance matrix with zero diagonal, on ``device``.
    """
    spec = _metric(metric, params)
    xs = _as_list(representations)
    dev = torch.device(device) if device is not None else xs[0].device
    if block_size is None:
        block_size = 32 if dev.type == "cpu" else 256
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    n = len(xs)

    # Per-network work, once per network, in chunks of block_size (zero-padded to a common
    # width, which changes neither the principal subspace nor any norm or cross product).
    width = max(x.shape[1] for x in xs)
    chunks = []
    for start in range(0, n, block_size):
        chunk = torch.stack([_pad(x.to(device=dev, dtype=dtype), width) for x in xs[start : start + block_size]])
        centred = chunk - chunk.mean(-2, keepdim=True)
        flat = torch.linalg.matrix_norm(centred) <= _rtol(chunk) * torch.linalg.matrix_norm(chunk)
        if bool(flat.any()):
            bad = [start + i for i in torch.nonzero(flat).flatten().tolist()]
            raise ValueError(f"networks {bad} have constant states (zero variance); drop them first")
        try:
            z = spec.embed(centred, **spec.params)
        except _BadNetworks as err:
            bad = [start + i for i in err.indices]
            raise ValueError(f"{metric}: networks {bad} {err.reason}") from None
        chunks.append(z.mT.contiguous())
    zt = torch.cat(chunks)  # [N, w, M]
    w = zt.shape[1]

    log.debug("%s: %d networks, %d samples, width %d, block %d", metric, n, zt.shape[2], w, block_size)
    out = torch.zeros(n, n, device=dev, dtype=dtype)
    for i in range(0, n, block_size):
        a = zt[i : i + block_size]
        a2 = a.reshape(-1, a.shape[-1])
        for j in range(i, n, block_size):
            b = zt[j : j + block_size]
            c = (a2 @ b.reshape(-1, b.shape[-1]).T).view(len(a), w, len(b), w).transpose(1, 2)
            out[i : i + len(a), j : j + len(b)] = spec.score(c)  # [len(a), len(b)]
    out = out.triu(1)  # tiles on the diagonal hold both (a, b) and (b, a): keep i < j only
    return out + out.T


def distance(
    x: Tensor | np.ndarray,
    y: Tensor | np.ndarray,
    metric: str = "svcca",
    **params: Any,
) -> float:
    """Distance between two representations ``x [M, U_x]`` and ``y [M, U_y]``."""
    return float(pairwise_distances([x, y], metric, **params)[0, 1])


# ---------------------------------------------------------------- validation helpers


def _metric(name: str, params: Mapping[str, Any]) -> Metric:
    """Look up a metric and bind its parameters (defaults filled in, unknown ones rejected)."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}")
    spec = METRICS[name]
    unknown = set(params) - set(spec.params)
    if unknown:
        accepted = sorted(spec.params) or "none"
        raise ValueError(f"metric {name!r} got unknown parameters {sorted(unknown)}; accepted: {accepted}")
    return Metric(spec.name, spec.embed, spec.score, {**spec.params, **params})


def _as_list(representations: Representations) -> list[Tensor]:
    """Validate and split representations into N ``[M, U_n]`` tensors."""
    if isinstance(representations, (Tensor, np.ndarray)):
        if representations.ndim != 3:
            raise ValueError(
                f"a stacked representation tensor must be [N, M, U], got shape {tuple(representations.shape)}"
            )
    xs = [torch.as_tensor(x) for x in representations]
    if not xs:
        raise ValueError("need at least one representation")
    m = xs[0].shape[0] if xs[0].ndim == 2 else None
    for i, x in enumerate(xs):
        if x.ndim != 2:
            raise ValueError(f"representation {i} must be [M, U] (samples x units), got shape {tuple(x.shape)}")
        if x.shape[0] != m:
            raise ValueError(
                f"representation {i} has {x.shape[0]} samples but representation 0 has {m}; "
                "all networks must be run on the same trials"
            )
        if x.shape[1] == 0:
            raise ValueError(f"representation {i} has no units")
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"representation {i} must be real-valued, got dtype {x.dtype}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"representation {i} contains NaN or inf; drop or fix diverged networks first")
    if m is not None and m < 2:
        raise ValueError(f"need at least 2 samples per representation, got {m}")
    return xs


def _rtol(x: Tensor) -> float:
    """Relative tolerance for rank decisions on ``[..., M, W]`` matrices (as numpy's matrix_rank)."""
    return max(x.shape[-2:]) * torch.finfo(x.dtype).eps


def _pad(x: Tensor, width: int) -> Tensor:
    """Zero-pad ``[M, U]`` to ``[M, width]``."""
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))
