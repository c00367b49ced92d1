"""Recall of :func:`find_fixed_points` against an independent gradient search, on the stored
reference flip-flop networks (``reference_results/run``; passed members, zero input).

For every architecture x activation group, both methods start from the same initial
states (``sample_initial_states`` at zero input with ``FixedPointConfig(n_initial=K)``, as
``analyze`` draws them: K noisy visited states and K/8 ends of holds):

* the reference: float64 Adam on q(h) = 1/2 |F(h) - h|^2, each candidate its own Adam
  state (the loss is the sum of the candidates' q, so every coordinate's moments are its
  own), ``--adam-iters`` iterations at learning rate ``--lr``, then ``--newton`` Newton
  steps (least squares on J - I) from wherever it ended; a root is *certified* when its
  float64 max-norm residual is <= 1e-10 and sigma_min(J - I) >= 1e-8 (isolated);
  certified roots are deduplicated at 1e-3 (max norm);
* ``find_fixed_points`` with the default settings (its own search and certificates).

A reference root is *found* when a point of ``find_fixed_points`` lies within 1e-3 (max
norm) of it. Usage (from the repository root, one thread)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/recall_reference.py [--candidates 512] [--run DIR]

Prints one row per group: networks, reference roots, found, missed (with their stability
indices), points of find_fixed_points, and the seconds each method took.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from universality.dynamics import FixedPointConfig, deduplicate, find_fixed_points, sample_initial_states
from universality.dynamics.linearise import float64_params, stability_index, state_jacobians
from universality.population import Population
from universality.run.catalog import RunStore

ROOT = Path(__file__).resolve().parents[1]


def adam_newton_roots(pop: Population, init: Tensor, iters: int, lr: float, newton: int,
                      tol: float = 1e-10, min_sigma: float = 1e-8, tol_unique: float = 1e-3) -> list[Tensor]:
    """Certified unique roots per member (``[n_m, S]`` each) of the reference search from
    ``init [P, K, S]`` at zero input."""
    params = float64_params(pop)
    p, k, s = init.shape
    x = torch.zeros(p, k, pop.task.input_size, dtype=torch.float64)
    h = init.clone().requires_grad_(True)
    opt = torch.optim.Adam([h], lr=lr)
    for _ in range(iters):
        q = 0.5 * (pop.step(x, h, params) - h).square().sum()
        opt.zero_grad()
        q.backward()
        opt.step()
    h = h.detach()
    eye = torch.eye(s, dtype=torch.float64)
    with torch.no_grad():
        for _ in range(newton):
            f, jac = state_jacobians(pop, params, h, x)
            step = torch.linalg.lstsq(jac - eye, -(f - h).unsqueeze(-1)).solution.squeeze(-1)
            h = torch.where(torch.isfinite(step).all(-1, keepdim=True), h + step, h)
        f, jac = state_jacobians(pop, params, h, x)
    residual = (f - h).abs().amax(-1).nan_to_num(math.inf)
    sigma = torch.linalg.svdvals(jac - eye)[..., -1].nan_to_num(0.0)
    keep = (residual <= tol) & (sigma >= min_sigma)
    rep, _ = deduplicate(h, keep, residual, tol_unique)
    return [h[m][rep[m]] for m in range(p)]


def index_of(pop: Population, m: int, points: Tensor) -> list[int]:
    """Stability indices of member ``m``'s ``points [n, S]``."""
    if len(points) == 0:
        return []
    params = {k: v[m : m + 1] for k, v in float64_params(pop).items()}
    x = torch.zeros(1, len(points), pop.task.input_size, dtype=torch.float64)
    _, jac = state_jacobians(pop, params, points.unsqueeze(0), x)
    return stability_index(torch.linalg.eigvals(jac[0])).tolist()


def compare_shard(store: RunStore, shard: str, args: argparse.Namespace) -> dict[str, object]:
    def field(row: Any, name: str) -> Any:  # catalog rows: dicts (older stores) or MemberRow
        return row[name] if isinstance(row, dict) else getattr(row, name)

    idx = sorted(int(field(r, "idx")) for r in store.members() if field(r, "shard") == shard and field(r, "passed"))
    if args.members:
        idx = idx[: args.members]
    pop = store.load_population(shard).select(idx)
    zero = torch.zeros(1, pop.task.input_size)
    init = sample_initial_states(pop, FixedPointConfig(n_initial=args.candidates), zero)[:, 0]  # [P, K + H, S]
    start = time.perf_counter()
    reference = adam_newton_roots(pop, init, args.adam_iters, args.lr, args.newton)
    t_ref = time.perf_counter() - start
    start = time.perf_counter()
    fp = find_fixed_points(pop, conditions=zero, initial_states=init)
    t_ffp = time.perf_counter() - start
    found = missed = 0
    missed_index: list[int] = []
    for m in range(len(pop)):
        ours = fp.points[m, 0][fp.mask[m, 0]]
        roots = reference[m]
        if len(roots) == 0:
            continue
        near = (torch.cdist(roots, ours, p=math.inf) < 1e-3).any(-1) if len(ours) else torch.zeros(len(roots)) > 0
        found += int(near.sum())
        missed += int((~near).sum())
        missed_index += index_of(pop, m, roots[~near])
    return {"shard": shard, "networks": len(pop), "reference": found + missed, "found": found, "missed": missed,
            "missed_index": sorted(missed_index), "ours": int(fp.mask.sum()), "t_ref": t_ref, "t_ffp": t_ffp,
            "full_cube": sum(int(fp.mask[m, 0].sum()) == 27 for m in range(len(pop)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default=str(ROOT / "reference_results" / "run"))
    parser.add_argument("--candidates", type=int, default=512)
    parser.add_argument("--members", type=int, default=0, help="first N passed members per shard (0: all)")
    parser.add_argument("--adam-iters", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--newton", type=int, default=8)
    parser.add_argument("--shards", nargs="*", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    store = RunStore(args.run)
    shards = [s for s in store.shards() if s.startswith("flipflop")]
    shards = [s for s in shards if args.shards is None or any(k in s for k in args.shards)]
    print("| group | networks | reference roots | found | missed (indices) | find_fixed_points points | "
          "members with 27 | reference s | find_fixed_points s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for shard in shards:
        r = compare_shard(store, shard, args)
        print(f"| {r['shard']} | {r['networks']} | {r['reference']} | {r['found']} | {r['missed']} "
              f"{r['missed_index'] or ''} | {r['ours']} | {r['full_cube']} | {r['t_ref']:.1f} | {r['t_ffp']:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
