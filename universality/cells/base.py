"""The population cell protocol.

A cell is one RNN architecture written once, over *stacked* parameters with a
leading population axis P. Training, running, Jacobians and Newton steps all use
the same two functions:

* ``drive(params, x)``: the input projection, ``x [P, ..., I] -> [P, ..., D]``.
  It is separated so a whole sequence can be projected with one GEMM.
* ``recur(params, drive, state)``: one step, ``drive [P, B, D], state [P, B, S]
  -> new state [P, B, S]``.

``step(params, x, state) = recur(params, drive(params, x), state)`` is the map
F(h, x) whose fixed points the dynamics module finds.

The readout of every cell reads the first H entries of the state (for the LSTM the
state is ``[h, c]`` with S = 2H).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from . import fused
from .activations import get_activation

Params = dict[str, Tensor]


class Cell(ABC):
    """A population-batched recurrent cell (see the module docstring)."""

    #: Registry name of the architecture, e.g. ``"gru"``.
    arch: str = ""

    def __init__(self, activation: str = "tanh") -> None:
        self.activation = activation
        self.nonlinearity = get_activation(activation)  # the registry entry (function, derivatives)
        self.act = self.nonlinearity.fn
        self.act_grad = self.nonlinearity.derivative  # f'(x) as a function of f(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(activation={self.activation!r})"

    def state_size(self, hidden_size: int) -> int:
        """S, the size of the dynamical state for H hidden units."""
        return hidden_size

    @abstractmethod
    def init_params(
        self, input_size: int, hidden_size: int, generator: torch.Generator
    ) -> Params:
        """Parameters of ONE network (no population axis), float32."""

    @abstractmethod
    def drive(self, params: Params, x: Tensor) -> Tensor:
        """Input projection: ``x [P, ..., I] -> [P, ..., D]``."""

    @abstractmethod
    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        """One step: ``drive [P, B, D], state [P, B, S] -> [P, B, S]``."""

    def step(self, params: Params, x: Tensor, state: Tensor) -> Tensor:
        """F(state, x): ``x [P, B, I], state [P, B, S] -> [P, B, S]``."""
        return self.recur(params, self.drive(params, x), state)

    def recur_jacobian(self, params: Params, drive: Tensor, state: Tensor) -> tuple[Tensor, Tensor] | None:
        """``(F [P, B, S], dF/dstate [P, B, S, S])`` in closed form, or None where the cell
        has none (Jacobians then come from autodiff through :meth:`recur`). Closed forms
        cost O(S^2) per state instead of autodiff's O(S^3)."""
        return None

    def kernel(self) -> fused.Kernel | None:
        """The fused recurrence of a built-in cell family (see :mod:`.fused`), or None:
        :meth:`scan` then runs :meth:`recur` step by step under autograd."""
        return None

    def scan(self, params: Params, x: Tensor, state: Tensor, workspace: fused.Workspace | None = None) -> Tensor:
        """The cell over a sequence: inputs ``x [P, T, B, I]`` (time-major), initial
        ``state [P, B, S]`` -> states ``[P, T, B, S]``. Built-in cells run their fused
        kernel (analytic backward; ``workspace`` reuses its buffers across calls); other
        cells step :meth:`recur` under autograd."""
        kernel = self.kernel()
        if kernel is not None:
            return fused.scan(kernel, params, x, state, workspace)
        return self.scan_stepwise(params, x, state)

    def scan_stepwise(self, params: Params, x: Tensor, state: Tensor) -> Tensor:
        """:meth:`scan` as a loop over :meth:`recur` (autograd's reference for the kernels)."""
        states = []
        for d in self.drive(params, x).unbind(1):
            state = self.recur(params, d, state)
            states.append(state)
        return torch.stack(states, dim=1)


def linear_drive(weight: Tensor, bias: Tensor, x: Tensor) -> Tensor:
    """``x [P, ..., I] @ weight[P, G, I]^T + bias [P, G] -> [P, ..., G]``."""
    p, g = bias.shape
    flat = x.reshape(p, -1, x.shape[-1])
    out = torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))
    return out.reshape(*x.shape[:-1], g)


def recurrent_term(weight: Tensor, bias: Tensor, h: Tensor) -> Tensor:
    """``h [P, B, H] @ weight [P, G, H]^T + bias [P, G] -> [P, B, G]``."""
    return torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))


def fan_in_normal(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    """Weights ``[rows, cols]`` with variance 1/cols (variance scaling)."""
    return torch.randn(rows, cols, generator=generator) / math.sqrt(cols)


def scaled_orthogonal(n: int, gain: float, generator: torch.Generator) -> Tensor:
    """A random ``[n, n]`` orthogonal matrix times ``gain`` (spectral radius = gain)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return (gain * q).to(torch.float32)


def gated_gain(activation: str, gain: float | None) -> float:
    """Default recurrent gain of the gated cells: 1 for tanh; 0.5 for relu, whose
    unbounded candidate (and LSTM cell) otherwise overflows on long inputs before
    training starts (measured: ReLU LSTMs on the cdi task diverged at step 1)."""
    if gain is not None:
        return gain
    return 1.0 if activation == "tanh" else 0.5


def stacked_recurrent(
    n_blocks: int, hidden_size: int, gain: float, generator: torch.Generator
) -> Tensor:
    """``[n_blocks * H, H]``: one scaled orthogonal block per gate."""
    return torch.cat(
        [scaled_orthogonal(hidden_size, gain, generator) for _ in range(n_blocks)]
    )


def scaled_blocks(scales: Tensor, weight: Tensor) -> Tensor:
    """``sum_k diag(scales[..., k, :]) @ W_k`` per row: ``scales [P, B, K, H]``, ``weight
    [P, K * H, H]`` (K square blocks W_k) -> ``[P, B, H, H]`` (one batched contraction)."""
    p, _, h = weight.shape
    return torch.einsum("pbki,pkij->pbij", scales, weight.view(p, -1, h, h))
