"""The context-dependent-integration scaffold: one line attractor per context (Fig. 3).

A line attractor is a continuum of (marginally) fixed points, which the default search at
the task's conditions samples sparsely, and which minimising q along an *approximate* line
collapses onto its few true roots. So :func:`compute` re-finds the line per context as the
paper does, with probe inputs: at constant inputs "context c + level a on c's relevant
channel" for ``n_levels`` levels a (0 included) the points of a leaky or exact integrator
sit along its line (h* moves by ~ B a / (1 - lambda_1)). Candidates are ``n_candidates``
states visited on that context's trials (streams on, context forced); slow points are
kept, except points outside the visited region (farther from the candidates' centroid than
``outlier`` times the farthest candidate: e.g. GRU slow points at |h| ~ 14 where every gate
saturates). The line of context c is the union of its points over all levels. On it, batched
over members x contexts x points:

* ``line_pc1``: variance explained by the first principal component of the points (0 when
  fewer than 3 points: two points are trivially collinear), a continuum of points entering
  as its representative and its two ends along its neutral direction;
* ``top_eig`` / ``second_eig``: median |lambda_1| / |lambda_2| of the Jacobian over the points;
* ``alignment``: median |cos| between the slow right eigenvector r_1 and that PC1;
* selection (Mante et al. 2013): the readout gain per unit input that the slow mode
  integrates, ``|W_out r_1 l_1^T B e| / |task.scale|`` for the relevant and the irrelevant
  sensory channel e (B = dF/dx; 1 = the task's integration gain), and their ratio;
* ``spectrum``: the mean sorted |lambda| over the points (Fig. 3e);
* ``modes_90`` (Fig. 3f): the linearised readout response to a unit pulse on the relevant
  channel, summed over a finite horizon of n steps (n = the trial length by default):
  ``W_out sum_k r_k l_k^T B e g_k`` with ``g_k = sum_{t<n} lambda_k^t = (1 - lambda_k^n) /
  (1 - lambda_k)`` (= n at lambda_k = 1, so exact integrators stay finite). Keeping the m
  modes of largest |lambda| (real part of the partial sum), ``modes_90`` is the smallest m
  whose response is within 10% of the full one; median over the points.

Invariance of ``Scaffold.vector``: eigenvalues, the selection gains and ratio and
``modes_90`` are invariant under any invertible affine change of state coordinates (W r_k
and l_k B are); ``line_pc1`` (and ``alignment``, which is not in the vector) under
orthogonal changes and permutations of units (exactly where the points found are
isolated, e.g. one per probe input; an exact continuum, sigma_min(J - I) <= tol_neutral,
enters as its one representative point, see :class:`~universality.dynamics.FixedPoints`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import cdist
from torch import Tensor

from ..dynamics import FixedPointConfig, FixedPoints, find_fixed_points
from ..population import READOUT_WEIGHT, Population
from .base import Scaffold, ScaffoldSpec

log = logging.getLogger(__name__)

#: The project's reading of the paper's CDI claims (docs/methods.md, "CDI scaffold"; the
#: paper gives no numbers). A context holds a line attractor when the points' PC1 explains
#: >= ``line_pc1`` of their variance, ``| |lambda_1| - 1 | <= top_eig_tol`` and the relevant
#: selection gain exceeds the irrelevant one ``selection_ratio`` times; ``canonical`` needs
#: both contexts. ``response_fraction``: ``modes_90`` counts the modes reproducing this
#: fraction of the linearised unit-input response.
THRESHOLDS: dict[str, float] = {
    "line_pc1": 0.9,
    "top_eig_tol": 0.02,
    "selection_ratio": 1.0,
    "response_fraction": 0.9,
}
#: Sensory input channels (then the context channels, see ``tasks/cdi.py``); context k selects channel k.
SENSORY = (0, 1)
#: ``modes_90`` enters the vector capped at this many modes, divided by it.
MODES_CAP = 10
_FLOOR = 1e-12  # smallest |irrelevant selection| in the ratio; |1 - lambda| below which g = n


@dataclass(frozen=True)
class CdiConfig:
    """Settings of :func:`compute`.

    ``n_trials`` task trials per context (``seed``) supply ``n_candidates`` candidate
    states per context and probe level; the ``n_levels`` (odd, so 0 is one) probe levels
    span ``probe * [-m, m]`` with m the task's largest stream mean ``mean_max`` (its
    ``noise`` if that is 0), within the means the task asks to integrate; ``horizon``: steps
    of the linearised response (default: the task's trial length); ``n_spectrum``: leading
    sorted |lambda| reported; ``outlier``: see the module docstring; ``fixed_points``: the
    search settings (slow points must be included: a trained line is mostly slow points).
    """

    n_trials: int = 16
    n_candidates: int = 32
    n_levels: int = 9
    probe: float = 0.5
    outlier: float = 2.0
    seed: int = 0
    horizon: int | None = None
    n_spectrum: int = 10
    fixed_points: FixedPointConfig = field(default_factory=lambda: FixedPointConfig(include_slow=True))


def compute(population: Population, fixed_points: FixedPoints, config: CdiConfig | None = None) -> list[Scaffold]:
    """One :class:`Scaffold` per member (see the module docstring).

    ``fixed_points`` are those at the task's conditions ``[C=2, I]`` (each context, zero
    sensory input); their ``conditions`` are the contexts whose lines are searched.
    """
    cfg = CdiConfig() if config is None else config
    cond = fixed_points.conditions.to(torch.float64)
    if cond.shape != (2, population.task.input_size) or cond[:, list(SENSORY)].abs().amax() > 0:
        raise ValueError(
            "cdi scaffold: fixed_points must be found at the task's conditions (each context with zero "
            f"sensory input, [2, {population.task.input_size}]); got conditions {cond.tolist()}"
        )
    probes = probe_conditions(population.task, cond, cfg)  # [C * L, I]
    cand = _candidates(population, cond, cfg).cpu()  # [P, C, K, S]
    init = cand.repeat_interleave(cfg.n_levels, dim=1)  # [P, C * L, K, S]
    fp = find_fixed_points(population, conditions=probes, initial_states=init, config=cfg.fixed_points)
    centre = cand.mean(2, keepdim=True)  # [P, C, 1, S]
    radius = (cand - centre).norm(dim=-1).amax(-1, keepdim=True)  # [P, C, 1]
    inside = (fp.points.view(*cand.shape[:2], -1, cand.shape[-1]) - centre).norm(dim=-1) <= cfg.outlier * radius
    horizon = cfg.horizon if cfg.horizon is not None else population.task.n_time
    scale = float(getattr(population.task, "scale", 1.0))
    stats = line_statistics(fp, len(cond), _readout_matrix(population), horizon, scale, cfg.n_spectrum, inside)
    scaffolds = [_scaffold(stats, i) for i in range(len(population))]
    log.info("cdi scaffold: %d of %d members canonical", sum(s.canonical for s in scaffolds), len(scaffolds))
    return scaffolds


def probe_conditions(task: Any, contexts: Tensor, config: CdiConfig) -> Tensor:
    """Probe inputs ``[C * L, I]``: for each context row of ``contexts [C, I]`` (in order),
    its ``L = n_levels`` levels on that context's relevant channel ``SENSORY[c]``."""
    if config.n_levels < 1 or config.n_levels % 2 == 0:
        raise ValueError(f"CdiConfig.n_levels must be a positive odd number (0 is a level), got {config.n_levels}")
    span = config.probe * (float(getattr(task, "mean_max", 0.0)) or float(getattr(task, "noise", 1.0)))
    levels = torch.linspace(-span, span, config.n_levels, dtype=torch.float64)
    out = contexts.to(torch.float64).unsqueeze(1).repeat(1, config.n_levels, 1)  # [C, L, I]
    for c in range(len(contexts)):
        out[c, :, SENSORY[c]] = levels
    return out.flatten(0, 1)


def line_statistics(
    fp: FixedPoints,
    n_contexts: int,
    readout: Tensor,
    horizon: int,
    scale: float = 1.0,
    n_spectrum: int = 10,
    keep: Tensor | None = None,
) -> dict[str, Tensor]:
    """Per-member, per-context statistics of the points in ``fp``, whose conditions are
    ``n_contexts`` consecutive groups (one per context; context c's relevant channel =
    ``SENSORY[c]``; a group's points form its line), under ``readout [P, O, S]``;
    ``keep [P, C, L * N]`` (grouped point slots) drops points from the lines.

    Returns ``[P, C]`` tensors ``n_dropped`` (points ``keep`` drops), ``n_points``,
    ``line_pc1``, ``top_eig``, ``second_eig``, ``alignment``, ``selection_relevant``,
    ``selection_irrelevant``, ``selection_ratio``, ``modes_90`` (NaN where a context has
    no points), ``spectrum [P, C, n_spectrum']`` and ``response_curve [P, C, n_spectrum']``
    (Fig. 3f: accuracy of the linearised response keeping the top m modes, m = 1, 2, ...).
    """
    p, c, s = fp.n_members, n_contexts, fp.points.shape[-1]

    def group(x: Tensor) -> Tensor:  # [P, C * L, N, ...] -> [P, C, L * N, ...]
        return x.reshape(p, c, -1, *x.shape[3:])

    mask, points = group(fp.mask), group(fp.points)
    mask = mask if keep is None else mask & keep
    eigenvalues, right, left, input_jacobian = map(group, (fp.eigenvalues, fp.right, fp.left, fp.input_jacobian))
    n_points = mask.sum(-1)
    line_pc1, pc1 = _first_component(*_with_continua(points, mask, *map(group, (fp.jacobian, fp.extent,
                                                                                 fp.neutral_dim))))

    absval = eigenvalues.abs()  # [P, C, N, S], descending
    second = absval[..., 1] if s > 1 else torch.zeros_like(absval[..., 0])
    r1 = right[..., :, 0]  # [P, C, N, S]
    alignment = (r1.conj() * pc1.unsqueeze(2).to(r1.dtype)).sum(-1).abs() / r1.norm(dim=-1)

    wr, lb_rel, sel_rel, sel_irr = _selection(right, left, input_jacobian, readout, scale)
    k = min(n_spectrum, s)
    modes, accuracy, finite = _response(eigenvalues, wr, lb_rel, horizon, k)

    def med(x: Tensor) -> Tensor:
        return torch.where(mask, x.to(torch.float64), math.nan).nanmedian(-1).values

    rel, irr = med(sel_rel), med(sel_irr)
    spectrum = torch.where(mask.unsqueeze(-1), absval[..., :k], 0.0).sum(2) / n_points.unsqueeze(-1)
    curve = torch.where(mask.unsqueeze(-1) & finite.unsqueeze(-1), accuracy, 0.0).sum(2) / n_points.unsqueeze(-1)
    return {
        "n_dropped": (group(fp.mask) & ~mask).sum(-1),
        "n_points": n_points,
        "line_pc1": line_pc1,
        "top_eig": med(absval[..., 0]),
        "second_eig": med(second),
        "alignment": med(alignment),
        "selection_relevant": rel,
        "selection_irrelevant": irr,
        "selection_ratio": rel / irr.clamp_min(_FLOOR),
        "modes_90": med(modes),
        "spectrum": spectrum,
        "response_curve": curve,
    }


def _selection(right: Tensor, left: Tensor, input_jacobian: Tensor, readout: Tensor,
               scale: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per point, the readout of each mode ``wr [P, C, N, O, S]``, each mode's drive by the
    context's relevant input ``lb_rel [P, C, N, S]`` (left eigenvector times dF/dx), and the
    selection gains of the slowest mode for the relevant / irrelevant input ``[P, C, N]``
    (readout of mode 1 times its input drive, per unit of the task's ``scale``)."""
    p, c, n, s = right.shape[:4]
    relevant = torch.tensor(SENSORY).view(1, c, 1, 1, 1).expand(p, c, n, s, 1)
    irrelevant = relevant.flip(1)
    lb = left @ input_jacobian.to(left.dtype)  # [P, C, N, S(modes), I]
    lb_rel, lb_irr = lb.gather(-1, relevant)[..., 0], lb.gather(-1, irrelevant)[..., 0]  # [P, C, N, S]
    wr = torch.einsum("pos,pcnsk->pcnok", readout.to(right.dtype), right)  # [P, C, N, O, S]
    sel_rel = (wr[..., 0] * lb_rel[..., None, 0]).norm(dim=-1) / abs(scale)
    sel_irr = (wr[..., 0] * lb_irr[..., None, 0]).norm(dim=-1) / abs(scale)
    return wr, lb_rel, sel_rel, sel_irr


def _response(eigenvalues: Tensor, wr: Tensor, lb_rel: Tensor, horizon: int, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """The linearised response to a constant relevant input over ``horizon`` steps, mode by
    mode (gain ``(1 - λ^T) / (1 - λ)``, ``T`` where λ ≈ 1): per point the number of modes
    that reach ``response_fraction`` of it (``modes [P, C, N]``, float64), the accuracy
    ``1 - |partial - full| / |full|`` of the top-m response for m = 1..k (``[P, C, N, k]``,
    Fig. 3f) and whether the response is finite (``[P, C, N]``)."""
    s = eigenvalues.shape[-1]
    lam = eigenvalues
    near_one = (1 - lam).abs() < _FLOOR
    gain = torch.where(near_one, torch.full_like(lam, horizon), (1 - lam**horizon) / torch.where(near_one, 1, 1 - lam))
    partial = (wr * (lb_rel * gain).unsqueeze(-2)).cumsum(-1).real  # [P, C, N, O, S]: top-m modes kept
    err = (partial - partial[..., -1:]).norm(dim=-2)
    ok = err <= (1 - THRESHOLDS["response_fraction"]) * partial[..., -1].norm(dim=-1, keepdim=True)
    finite = torch.isfinite(partial).all(-1).all(-1)
    modes = torch.where(finite, 1 + ok.to(torch.uint8).argmax(-1), s).to(torch.float64)  # first m within 10%
    accuracy = (1 - err / partial[..., -1].norm(dim=-1, keepdim=True).clamp_min(_FLOOR)).clamp(0, 1)[..., :k]
    return modes, accuracy, finite


def distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """L1 distance between scaffold vectors: ``u [N, D], v [M, D] -> [N, M]``."""
    u, v = np.atleast_2d(np.asarray(u, dtype=np.float64)), np.atleast_2d(np.asarray(v, dtype=np.float64))
    return cdist(u, v, "cityblock")


# ---------------------------------------------------------------------- helpers
def _candidates(population: Population, cond: Tensor, cfg: CdiConfig) -> Tensor:
    """``[P, C, K, S]`` states visited on ``n_trials`` trials per context (context channels
    forced to each condition's), ``K = n_candidates`` time points drawn uniformly."""
    gen = torch.Generator().manual_seed(cfg.seed)
    inputs = population.task.sample(cfg.n_trials, gen).inputs.to(torch.float64)  # [B, T, I]
    context = [i for i in range(cond.shape[1]) if i not in SENSORY]
    batch = inputs.unsqueeze(0).repeat(len(cond), 1, 1, 1)  # [C, B, T, I]
    batch[..., context] = cond[:, None, None, context]
    with torch.no_grad():
        states, _ = population.run(batch.flatten(0, 1))  # [P, C*B, T, S]
    p, s = len(population), population.state_size
    flat = states.to(torch.float64).reshape(p, len(cond), -1, s)
    pick = torch.randint(flat.shape[2], (cfg.n_candidates,), generator=gen).to(flat.device)
    return flat[:, :, pick]


def _readout_matrix(population: Population) -> Tensor:
    """``W_out`` over the whole state, ``[P, O, S]`` (zeros past the first H entries)."""
    w = population.params[READOUT_WEIGHT].detach().to("cpu", torch.float64)
    return torch.nn.functional.pad(w, (0, population.state_size - population.hidden_size))


def _first_component(points: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Explained-variance ratio ``[P, C]`` and direction ``[P, C, S]`` of the first PC of
    the masked ``points [P, C, N, S]`` (ratio 0 with fewer than 3 points or no spread)."""
    w = mask.to(points.dtype).unsqueeze(-1)
    count = w.sum(2).clamp_min(1)
    centred = (points - (w * points).sum(2, keepdim=True) / count.unsqueeze(2)) * w
    values, vectors = torch.linalg.eigh(centred.transpose(-1, -2) @ centred)
    total = values.sum(-1)
    ratio = torch.where((mask.sum(-1) >= 3) & (total > 0), values[..., -1] / total.clamp_min(1e-300), 0.0)
    return ratio, vectors[..., -1]


def _with_continua(points: Tensor, mask: Tensor, jacobian: Tensor, extent: Tensor,
                   neutral_dim: Tensor) -> tuple[Tensor, Tensor]:
    """``points [P, C, N, S]`` and ``mask [P, C, N]`` plus, for each continuum (a point with
    ``neutral_dim > 0``), its two ends along its neutral direction: the representative
    +- extent / 2 times the null right singular vector of J - I (``jacobian [P, C, N, S,
    S]``). A continuum arrives as one point (see ``FixedPoints``); its ends let the line's
    principal component see it as the segment it is. Returns ``[P, C, 3N, S]``, ``[P, C, 3N]``."""
    continuum = mask & (neutral_dim > 0)
    eye = torch.eye(points.shape[-1], dtype=points.dtype, device=points.device)
    safe = torch.where(continuum[..., None, None], jacobian.to(points.dtype) - eye, eye)  # no SVD of padding
    direction = torch.linalg.svd(safe).Vh[..., -1, :]  # [P, C, N, S]: the neutral direction
    half = (extent.to(points.dtype) / 2).unsqueeze(-1) * direction
    return torch.cat([points, points + half, points - half], 2), torch.cat([mask, continuum, continuum], 2)


def _scaffold(stats: dict[str, Tensor], i: int) -> Scaffold:
    """Member ``i``'s :class:`Scaffold` from :func:`line_statistics`' tensors."""
    per = {k: v[i].tolist() for k, v in stats.items()}  # per context
    ctx = range(len(per["line_pc1"]))
    numbers: dict[str, Any] = {f"{k}_ctx{c}": per[k][c] for k in per for c in ctx}
    deviation = [abs(1 - t) if t == t else math.inf for t in per["top_eig"]]
    worst = int(np.argmax(deviation))
    line = [
        per["line_pc1"][c] >= THRESHOLDS["line_pc1"]
        and deviation[c] <= THRESHOLDS["top_eig_tol"]
        and per["selection_relevant"][c] > THRESHOLDS["selection_ratio"] * per["selection_irrelevant"][c]
        for c in ctx
    ]
    numbers.update(
        {
            "line_pc1": float(np.min(per["line_pc1"])),
            "top_eig": per["top_eig"][worst],
            "second_eig": float(np.max(per["second_eig"])),
            "alignment": float(np.min(per["alignment"])),
            "selection_relevant": float(np.min(per["selection_relevant"])),
            "selection_irrelevant": float(np.max(per["selection_irrelevant"])),
            "selection_ratio": float(np.min(per["selection_ratio"])),
            "modes_90": float(np.max(per["modes_90"])),
            "spectrum": np.mean(per["spectrum"], axis=0).tolist(),
            "response_curve": np.mean(per["response_curve"], axis=0).tolist(),
        }
    )
    log_ratio = np.clip(np.log10(np.maximum(per["selection_ratio"], 1e-300)), -2, 2) / 4
    vector = np.concatenate(
        [
            per["line_pc1"],
            per["top_eig"],
            per["second_eig"],
            log_ratio,
            [np.minimum(numbers["modes_90"], MODES_CAP) / MODES_CAP],
        ]
    )
    return Scaffold("cdi", all(line), numbers, np.nan_to_num(vector, nan=0.0))  # missing (no points) -> 0


SPEC = ScaffoldSpec("cdi", compute, distance)
