"""``FixedPoints``: unique fixed points per member and condition, padded, with masks."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..run import files
from .linearise import timescales

FORMAT = "universality-fixed-points"
#: Per-candidate outcomes, in the order of ``FixedPoints.status_counts``'s last axis.
STATUSES = ("fixed", "slow", "unconverged")
_COMPLEX = ("eigenvalues", "right", "left")


@dataclass(frozen=True)
class FixedPoints:
    """Unique points of P members x C conditions, padded to N per (member, condition).

    Shapes (CPU tensors): ``points [P, C, N, S]`` (float64), ``mask [P, C, N]`` (True
    where a slot holds a point; padded slots hold zeros), ``fixed [P, C, N]`` (certified:
    residual <= tol_fixed; False only for kept slow points), ``residual [P, C, N]``
    (max-norm of F(h*) - h*, re-evaluated in float64), ``q [P, C, N]`` (1/2 ||F - h||^2),
    ``sigma_min [P, C, N]`` (smallest singular value of J - I; residual / sigma_min bounds
    the distance to the true root to first order), ``cluster_size [P, C, N]`` (candidates
    that converged to the point, or to any point of its continuum), ``neutral_dim [P, C,
    N]`` (int64: singular values of J - I <= ``tol_neutral``; > 0 marks a continuum of
    fixed or slow points, reported once), ``extent [P, C, N]`` (float64: the largest
    Euclidean distance between the found points of the continuum, 0 for an isolated
    point; a lower bound of its true extent), ``index [P, C, N]`` (stability index, #|lambda| > 1),
    ``eigenvalues [P, C, N, S]`` (complex, |lambda| descending), ``right [P, C, N, S, S]``
    (columns: right eigenvectors), ``left [P, C, N, S, S]`` (rows: left eigenvectors,
    ``left @ right = I``), ``jacobian [P, C, N, S, S]`` (dF/dh), ``input_jacobian
    [P, C, N, S, I]`` (dF/dx), ``conditions [C, I]`` and ``status_counts [P, C, 3]``
    (LM runs per outcome in :data:`STATUSES` order: the initial candidates, the restarts of
    those not certified, and the seeds between stable points). Points are ordered by stability
    index. ``config`` is the :class:`FixedPointConfig` used, as a dict.
    """

    points: Tensor
    mask: Tensor
    fixed: Tensor
    residual: Tensor
    q: Tensor
    sigma_min: Tensor
    cluster_size: Tensor
    neutral_dim: Tensor
    extent: Tensor
    index: Tensor
    eigenvalues: Tensor
    right: Tensor
    left: Tensor
    jacobian: Tensor
    input_jacobian: Tensor
    conditions: Tensor
    status_counts: Tensor
    config: dict[str, Any]

    # ------------------------------------------------------------------ shape facts
    @property
    def n_members(self) -> int:
        """P."""
        return self.points.shape[0]

    @property
    def counts(self) -> Tensor:
        """Unique points per member and condition, ``[P, C]``."""
        return self.mask.sum(-1)

    @property
    def timescales(self) -> Tensor:
        """``-1 / log|lambda|`` per mode, ``[P, C, N, S]`` (negative for unstable modes)."""
        return timescales(self.eigenvalues)

    def _tensors(self) -> dict[str, Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config"}

    # ------------------------------------------------------------------ views
    def member(self, i: int) -> dict[str, np.ndarray]:
        """Member ``i``'s points, unpadded: every field concatenated over conditions,
        ``[n, ...]``, plus ``condition [n]`` (the row of ``conditions`` of each point)."""
        if not -self.n_members <= i < self.n_members:
            raise IndexError(f"member {i} out of range for {self.n_members} members")
        keep = self.mask[i]  # [C, N]
        out = {
            name: value[i][keep].numpy()
            for name, value in self._tensors().items()
            if name not in ("mask", "conditions", "status_counts")
        }
        out["condition"] = keep.nonzero()[:, 0].numpy()
        return out

    def summary(self) -> list[dict[str, Any]]:
        """Per member, over certified points: ``count`` (unique points over all conditions),
        ``stable`` (index 0), ``continua`` (points with a neutral direction, one per
        continuum), ``index_counts`` ({str(index): count}), ``max_residual``, ``min_sigma``;
        ``slow`` (slow points kept, when the search included them) and ``candidates``
        ({status: count} over all candidates)."""
        rows = []
        for i in range(self.n_members):
            keep = self.mask[i] & self.fixed[i]
            index = self.index[i][keep]
            values, counts = index.unique(return_counts=True)
            residual = self.residual[i][keep]
            sigma = self.sigma_min[i][keep]
            rows.append({
                "count": int(keep.sum()),
                "slow": int((self.mask[i] & ~self.fixed[i]).sum()),
                "continua": int((self.neutral_dim[i][keep] > 0).sum()),
                "stable": int((index == 0).sum()),
                "index_counts": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
                "max_residual": float(residual.max()) if len(residual) else float("nan"),
                "min_sigma": float(sigma.min()) if len(sigma) else float("nan"),
                "candidates": dict(zip(STATUSES, self.status_counts[i].sum(0).tolist(), strict=True)),
            })
        return rows

    def select(self, rows: list[int]) -> FixedPoints:
        """The members ``rows`` (in that order), as a new result."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        fields = {name: (v if name == "conditions" else v[idx]) for name, v in self._tensors().items()}
        return FixedPoints(**fields, config=self.config)

    @classmethod
    def empty(cls, n_members: int, conditions: Tensor, state_size: int, config: dict[str, Any]) -> FixedPoints:
        """A result without points for ``n_members`` members at ``conditions [C, I]``."""
        p, c, i, s = n_members, conditions.shape[0], conditions.shape[1], state_size
        f64, cplx = torch.float64, torch.complex128
        return cls(points=torch.zeros(p, c, 0, s, dtype=f64), mask=torch.zeros(p, c, 0, dtype=torch.bool),
                   fixed=torch.zeros(p, c, 0, dtype=torch.bool), residual=torch.zeros(p, c, 0, dtype=f64),
                   q=torch.zeros(p, c, 0, dtype=f64), sigma_min=torch.zeros(p, c, 0, dtype=f64),
                   cluster_size=torch.zeros(p, c, 0, dtype=torch.int64),
                   neutral_dim=torch.zeros(p, c, 0, dtype=torch.int64), extent=torch.zeros(p, c, 0, dtype=f64),
                   index=torch.zeros(p, c, 0, dtype=torch.int64),
                   eigenvalues=torch.zeros(p, c, 0, s, dtype=cplx), right=torch.zeros(p, c, 0, s, s, dtype=cplx),
                   left=torch.zeros(p, c, 0, s, s, dtype=cplx), jacobian=torch.zeros(p, c, 0, s, s, dtype=f64),
                   input_jacobian=torch.zeros(p, c, 0, s, i, dtype=f64), conditions=conditions.to(f64),
                   status_counts=torch.zeros(p, c, len(STATUSES), dtype=torch.int64), config=config)

    def expand(self, rows: list[int], n_members: int) -> FixedPoints:
        """Place this result's members at ``rows`` of a result with ``n_members`` members;
        the other members get no points (all-False mask, zero candidate counts)."""
        if len(rows) != self.n_members or len(set(rows)) != len(rows) or not all(0 <= r < n_members for r in rows):
            raise ValueError(f"expand: need {self.n_members} distinct rows in [0, {n_members}), got {rows}")
        idx = torch.as_tensor(rows, dtype=torch.long)
        fields = {}
        for name, v in self._tensors().items():
            if name == "conditions":
                fields[name] = v
                continue
            out = torch.zeros((n_members, *v.shape[1:]), dtype=v.dtype)
            out[idx] = v
            fields[name] = out
        return FixedPoints(**fields, config=self.config)

    # ------------------------------------------------------------------ persistence
    def to_tensors(self, metadata: dict[str, str] | None = None) -> tuple[dict[str, Tensor], dict[str, str]]:
        """The tensors of a fixed-points file (complex ones as ``.real``/``.imag``) and its
        string metadata (``metadata`` with the format and the config)."""
        tensors: dict[str, Tensor] = {}
        for name, value in self._tensors().items():
            if value.is_complex():
                tensors[name + ".real"], tensors[name + ".imag"] = value.real, value.imag
            else:
                tensors[name] = value
        return tensors, {**(metadata or {}), "format": FORMAT, "config": json.dumps(self.config, sort_keys=True)}

    def save(self, path: str | os.PathLike[str], metadata: dict[str, str] | None = None) -> None:
        """Write a safetensors file of :meth:`to_tensors` atomically."""
        files.save_tensors(*self.to_tensors(metadata), path=Path(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FixedPoints:
        """Read a file written by :meth:`save`."""
        data = files.read_checked(Path(path))
        return cls.from_tensors(files.decode(data, Path(path)), files.metadata(data) or {}, path)

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], metadata: dict[str, str],
                     path: str | os.PathLike[str] = "<tensors>") -> FixedPoints:
        """The fixed points of :meth:`to_tensors`'s output (``path`` names it in errors)."""
        if metadata.get("format") != FORMAT:
            raise ValueError(f"{path}: not a fixed-points file (format {metadata.get('format')!r})")
        fields = {name: torch.complex(tensors[name + ".real"], tensors[name + ".imag"]) for name in _COMPLEX}
        fields.update({k: v for k, v in tensors.items() if "." not in k})
        # files written before continua were reported: every point isolated
        fields.setdefault("neutral_dim", torch.zeros_like(fields["cluster_size"]))
        fields.setdefault("extent", torch.zeros_like(fields["residual"]))
        return cls(**fields, config=json.loads(metadata["config"]))
