"""Batched linearisation of a population's map F(h, x) through ``population.step`` only.

Every batch row of ``step`` is independent, so the Jacobians of all rows come from S
forward-mode tangents e_j applied to every row at once (column j of each row's
Jacobian), vectorised with ``vmap``; cells without forward-mode support fall back to one
backward pass over a batch replicated S times. This needs nothing from the cell but its
step, so user cells (``ModuleCell``) get it for free.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import jvp, vmap

from ..cells import Params
from ..population import Population

log = logging.getLogger(__name__)


def float64_params(population: Population) -> Params:
    """The cell's parameters as detached float64 tensors (same device)."""
    return {k: v.detach().to(torch.float64) for k, v in population.cell_params.items()}


Step = Callable[[Tensor, Tensor], Tensor]  # (x [P, B, I], h [P, B, S]) -> [P, B, S]


def step_jacobians(
    step: Step, states: Tensor, inputs: Tensor, wrt_input: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """F and its Jacobians at ``states [P, B, S]`` with constant ``inputs [P, B, I]``.

    Returns ``F [P, B, S]``, ``dF/dh [P, B, S, S]`` and ``dF/dx [P, B, S, I]`` (``None``
    unless ``wrt_input``), in the dtype of ``step``'s output. Forward mode (``vmap`` over
    ``jvp``, one tangent per state direction) where the cell supports it, else reverse
    mode over a batch replicated S times.
    """
    states, inputs = states.detach(), inputs.detach()
    try:
        f, jac_h = _forward_jacobian(lambda h: step(inputs, h), states)
        jac_x = _forward_jacobian(lambda x: step(x, states), inputs)[1] if wrt_input else None
        return f, jac_h, jac_x
    except (RuntimeError, NotImplementedError) as err:
        log.debug("forward-mode Jacobian failed (%s); using reverse mode", err)
        return _reverse_jacobians(step, states, inputs, wrt_input)


def _forward_jacobian(fn: Callable[[Tensor], Tensor], at: Tensor) -> tuple[Tensor, Tensor]:
    """``fn(at) [P, B, S]`` and ``d fn / d at [P, B, S, A]`` for ``at [P, B, A]`` (rows independent)."""
    n = at.shape[-1]
    tangents = torch.eye(n, dtype=at.dtype, device=at.device).view(n, 1, 1, n).expand(n, *at.shape)
    with warnings.catch_warnings():  # torch's first vmap-of-jvp use scripts decompositions
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        value, columns = vmap(lambda t: jvp(fn, (at,), (t,)), out_dims=(None, 0))(tangents)  # type: ignore[arg-type,misc]
    return value, columns.permute(1, 2, 3, 0)


def _reverse_jacobians(
    step: Step, states: Tensor, inputs: Tensor, wrt_input: bool
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`step_jacobians` by one backward pass: copy i of each row carries cotangent e_i."""
    p, b, s = states.shape
    i = inputs.shape[-1]
    h = states.unsqueeze(2).expand(p, b, s, s).reshape(p, b * s, s).requires_grad_(True)
    x = inputs.unsqueeze(2).expand(p, b, s, i).reshape(p, b * s, i).requires_grad_(wrt_input)
    with torch.enable_grad():
        out = step(x, h).reshape(p, b, s, s)  # [p, b, copy, output]
        picked = torch.diagonal(out, dim1=2, dim2=3).sum()
        grads = torch.autograd.grad(picked, [h, x] if wrt_input else [h])
    jac_x = grads[1].reshape(p, b, s, i) if wrt_input else None
    return out[:, :, 0].detach(), grads[0].reshape(p, b, s, s), jac_x


def state_jacobians(population: Population, params: Params, states: Tensor, inputs: Tensor) -> tuple[Tensor, Tensor]:
    """``F [P, B, S]`` and ``dF/dh [P, B, S, S]`` at ``states [P, B, S]``, ``inputs [P, B, I]``:
    the cell's closed form (:meth:`~universality.cells.Cell.recur_jacobian`) where it has
    one, else autodiff (:func:`step_jacobians`)."""
    cell = population.cell
    closed = cell.recur_jacobian(params, cell.drive(params, inputs), states)
    if closed is not None:
        return closed
    f, jac, _ = step_jacobians(lambda x, h: population.step(x, h, params), states, inputs)
    return f, jac


def jacobians(
    population: Population, states: Tensor, inputs: Tensor, params: Params | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``F [P, B, S]``, ``dF/dh [P, B, S, S]`` and ``dF/dx [P, B, S, I]`` of ``population``
    at ``states [P, B, S]``, ``inputs [P, B, I]`` (``params`` default: float64 copies)."""
    params = float64_params(population) if params is None else params

    f, jac_h = state_jacobians(population, params, states, inputs)
    # dF/dx by one backward pass over S copies (plain autograd: forward mode's first use
    # costs seconds of lazy imports, more than the closed form saves on a small search)
    jac_x = _reverse_jacobians(lambda x, h: population.step(x, h, params), states, inputs, wrt_input=True)[2]
    assert jac_x is not None
    return f, jac_h, jac_x


def eigendecompose(jacobian: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Eigen-decomposition of ``jacobian [..., S, S]``, modes ordered by |lambda| descending.

    Returns ``eigenvalues [..., S]`` (complex), ``right [..., S, S]`` whose *columns* are
    right eigenvectors (J v = lambda v, unit norm) and ``left [..., S, S]`` whose *rows*
    are left eigenvectors (w J = lambda w), scaled so that ``left @ right = I``. For a
    defective J the left eigenvectors are not finite: huge where the eigenvector matrix is
    nearly singular, NaN where it is exactly singular (e.g. a nilpotent Jordan block, which
    saturated ReLU LSTMs produce).
    """
    values, right = torch.linalg.eig(jacobian)
    order = values.abs().argsort(dim=-1, descending=True, stable=True)
    values = values.gather(-1, order)
    right = right.gather(-1, order.unsqueeze(-2).expand_as(right))
    left, info = torch.linalg.inv_ex(right)
    left = torch.where((info != 0)[..., None, None], torch.full((), complex(math.nan, math.nan), dtype=left.dtype),
                       left)
    return values, right, left


def stability_index(eigenvalues: Tensor, tol: float = 0.0) -> Tensor:
    """Number of unstable modes, ``|lambda| > 1 + tol``: ``[..., S] -> [...]`` (int64)."""
    return (eigenvalues.abs() > 1 + tol).sum(-1)


def timescales(eigenvalues: Tensor) -> Tensor:
    """``-1 / log|lambda|`` in steps (negative for growing modes, inf at |lambda| = 1)."""
    return -1 / eigenvalues.abs().log()
