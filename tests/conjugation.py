"""Test helpers: a population seen through a change of state coordinates.

``conjugate(pop, seed)`` returns the same dynamics in coordinates g = phi(A h + b), phi(u)
= c sinh(u / c), with A well conditioned; ``permute_gru`` permutes a GRU's hidden units.
A coordinate-free quantity must not change under either.
"""

import torch

from universality.cells.base import Cell
from universality.population import Member, Population

F64 = torch.float64


def to_new(params, h):
    """g = phi(A h + b), phi(u) = c sinh(u / c): ``h [P, ..., S]`` -> ``[P, ..., S]``."""
    flat = h.reshape(h.shape[0], -1, h.shape[-1])
    u = flat @ params["A"].transpose(1, 2) + params["b"].unsqueeze(1)
    c = params["c_phi"].view(-1, 1, 1)
    return (c * torch.sinh(u / c)).reshape(h.shape)


def to_old(params, g):
    """The inverse map h = A^-1 (phi^-1(g) - b)."""
    flat = g.reshape(g.shape[0], -1, g.shape[-1])
    c = params["c_phi"].view(-1, 1, 1)
    u = c * torch.asinh(flat / c) - params["b"].unsqueeze(1)
    return (u @ params["A_inv"].transpose(1, 2)).reshape(g.shape)


class Conjugated(Cell):
    """The inner cell seen through g = phi(A h + b): g' = phi(A F(A^-1(phi^-1(g) - b), x) + b)."""

    def __init__(self, inner: Cell) -> None:
        super().__init__()
        self.inner = inner
        self.arch = inner.arch + "-conjugated"

    def init_params(self, input_size, hidden_size, generator):
        raise NotImplementedError

    def drive(self, params, x):
        return self.inner.drive(params, x)

    def recur(self, params, drive, state):
        return to_new(params, self.inner.recur(params, drive, to_old(params, state)))


class ConjugatedPopulation(Population):
    """Starts from, and reads out through, the change of coordinates, so trials and outputs
    are unchanged."""

    def initial_state(self, batch_size, dtype=torch.float32):
        return to_new(self.params, super().initial_state(batch_size, torch.float64)).to(dtype)

    def readout(self, states, params=None):
        p = self.params if params is None else params
        return super().readout(to_old(p, states), p)


def make_population(cell, task, hidden, params, cls=Population):
    p = next(iter(params.values())).shape[0]
    members = [Member(task.name, cell.arch, cell.activation, hidden, 0.0, 1e-3, s) for s in range(p)]
    return cls(cell, task, hidden, members, params)


def conjugate(pop, seed):
    """``pop`` in random smooth coordinates g = phi(A h + b) (A well conditioned)."""
    gen = torch.Generator().manual_seed(seed)
    p, s = len(pop), pop.state_size
    q1, _ = torch.linalg.qr(torch.randn(p, s, s, generator=gen, dtype=F64))
    q2, _ = torch.linalg.qr(torch.randn(p, s, s, generator=gen, dtype=F64))
    scales = torch.linspace(0.5, 2.0, s, dtype=F64)  # condition number 4: well conditioned, clearly anisotropic
    a = q1 @ torch.diag(scales) @ q2
    extra = {"A": a, "A_inv": torch.linalg.inv(a), "b": 0.3 * torch.randn(p, s, generator=gen, dtype=F64),
             "c_phi": 0.5 + torch.rand(p, generator=gen, dtype=F64)}
    return make_population(Conjugated(pop.cell), pop.task, pop.hidden_size, {**pop.params, **extra},
                           ConjugatedPopulation)


def permute_gru(params, perm):
    """A GRU population's parameters with hidden units permuted by ``perm``."""
    h = len(perm)
    rows = torch.cat([perm + g * h for g in range(3)])
    return {"weight_ih": params["weight_ih"][:, rows], "weight_hh": params["weight_hh"][:, rows][:, :, perm],
            "bias_ih": params["bias_ih"][:, rows], "bias_hh": params["bias_hh"][:, rows],
            "readout.weight": params["readout.weight"][:, :, perm], "readout.bias": params["readout.bias"]}
