"""Recall helpers of :func:`~universality.dynamics.find_fixed_points`: seeds between known
stable points (targeted saddle search) and continua of fixed points.

* :func:`pair_seeds`: saddles between two attractors lie on or near the segment between
  them (an index-1 saddle on the basin boundary crossed by the segment, an index-k saddle
  at the centre of a k-face of a flip-flop cube: the midpoint of two memories differing
  in k bits). Every pair of a member's stable points gives candidates at fixed fractions
  of the segment plus small noise; a second LM round from them finds the saddles the
  first round's basins hid.
* :func:`continua`: points with an (exactly) neutral direction, sigma_min(J - I) below a
  tolerance, form a continuum when the segment between them stays slow; every continuum is
  reported as one representative (its best residual) with its neutral dimension and
  extent, never as copies along the neutral direction.

Everything is batched over ``[G, N, S]`` groups (a group = one member at one condition)
and depends on a group's own points only.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..population import Population


def pair_seeds(points: Tensor, usable: Tensor, fractions: tuple[float, ...], noise: float, max_pairs: int,
               seed: int) -> Tensor:
    """Candidates between pairs of points: ``points [G, N, S]``, ``usable [G, N]`` ->
    ``[G, M * F, S]`` (M = ``max_pairs``, F = ``len(fractions)``; NaN rows where a group
    has fewer pairs).

    For a pair (a, b) of usable points the seeds are ``a + t (b - a)`` for t in
    ``fractions`` plus Gaussian noise of std ``noise * |b - a|_2 / sqrt(S)`` per
    coordinate (``noise`` is a fraction of the pair's distance whatever the state size).
    A group uses its ``max_pairs`` closest pairs (adjacent memories first: their saddles
    are the memory graph's edges). The noise ``[M, F, S]`` comes from ``seed`` and is the
    same for every group, so a group's seeds depend on its own points only.
    """
    g, n, s = points.shape
    f = len(fractions)
    out = torch.full((g, max_pairs * f, s), math.nan, dtype=points.dtype, device=points.device)
    if n < 2 or g == 0:
        return out
    i, j = torch.triu_indices(n, n, 1, device=points.device)  # [Q] all slot pairs
    ok = usable[:, i] & usable[:, j]  # [G, Q]
    dist = (points[:, i] - points[:, j]).norm(dim=-1)  # [G, Q]
    order = torch.where(ok, dist, math.inf).argsort(dim=-1, stable=True)[:, :max_pairs]  # [G, M']
    m = order.shape[1]
    valid = ok.gather(1, order)
    a = points.gather(1, i[order].unsqueeze(-1).expand(g, m, s))
    b = points.gather(1, j[order].unsqueeze(-1).expand(g, m, s))
    t = torch.tensor(fractions, dtype=points.dtype, device=points.device).view(1, 1, f, 1)
    seeds = a.unsqueeze(2) + t * (b - a).unsqueeze(2)  # [G, M', F, S]
    gen = torch.Generator().manual_seed(seed)
    gauss = torch.randn(max_pairs, f, s, generator=gen, dtype=points.dtype).to(points.device)[:m]
    seeds = seeds + (noise * (b - a).norm(dim=-1) / math.sqrt(s))[:, :, None, None] * gauss
    seeds = torch.where(valid[:, :, None, None], seeds, math.nan)
    out[:, : m * f] = seeds.reshape(g, m * f, s)
    return out


def continua(population: Population, params: dict[str, Tensor], points: Tensor, inputs: Tensor, neutral: Tensor,
             tol_slow: float, fractions: tuple[float, ...] = (0.25, 0.5, 0.75)) -> Tensor:
    """Continuum labels of member points: ``points [P, G, N, S]`` at ``inputs [P, G, I]``,
    ``neutral [P, G, N]`` (the points with a neutral direction) -> ``label [P, G, N]``.

    Two neutral points are linked when q stays <= ``tol_slow`` at the ``fractions`` of the
    segment between them (they lie on one slow set, not merely near each other); a
    continuum is a connected component of links (so a curved continuum sampled densely
    enough is one). ``label`` is the slot of the component's first point (its lowest slot);
    non-neutral points are labelled with their own slot.
    """
    p, g, n, s = points.shape
    if n < 2 or not bool(neutral.any()):
        return torch.arange(n, device=points.device).expand(p, g, n).clone()
    i, j = torch.triu_indices(n, n, 1, device=points.device)
    both = neutral[..., i] & neutral[..., j]  # [P, G, Q]
    linked = torch.zeros(p, g, n, n, dtype=torch.bool, device=points.device)
    pm, gm, qm = both.nonzero(as_tuple=True)
    if len(pm):
        a, b = points[pm, gm, i[qm]], points[pm, gm, j[qm]]  # [L, S]
        t = torch.tensor(fractions, dtype=points.dtype, device=points.device).view(1, -1, 1)
        on_segment = a.unsqueeze(1) + t * (b - a).unsqueeze(1)  # [L, F, S]
        slow = torch.ones(len(pm), dtype=torch.bool, device=points.device)
        # evaluate member by member (population.step is batched per member)
        for member in pm.unique().tolist():
            rows = (pm == member).nonzero().flatten()
            h = on_segment[rows].reshape(1, -1, s)
            x = inputs[member, gm[rows]].unsqueeze(1).expand(-1, len(fractions), -1).reshape(1, -1, inputs.shape[-1])
            sub = {k: v[member : member + 1] for k, v in params.items()}
            with torch.no_grad():
                r = population.step(x, h, sub) - h
            q = (0.5 * r.square().sum(-1)).view(len(rows), len(fractions)).nan_to_num(math.inf)
            slow[rows] = (q <= tol_slow).all(-1)
        linked[pm, gm, i[qm], j[qm]] = slow
        linked[pm, gm, j[qm], i[qm]] = slow
    label = torch.arange(n, device=points.device).expand(p, g, n).clone()
    while True:  # propagate the lowest slot along links until every component agrees
        spread = torch.where(linked, label.unsqueeze(-2), n).amin(-1)  # [P, G, N]
        new = torch.minimum(label, spread)
        if torch.equal(new, label):
            return label
        label = new
