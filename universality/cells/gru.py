"""GRU in the torch.nn.GRUCell convention (gate order r, z, n):

r = σ(W_ir x + b_ir + W_hr h + b_hr),  z = σ(W_iz x + b_iz + W_hz h + b_hz)
n = f(W_in x + b_in + r ⊙ (W_hn h + b_hn)),  h' = (1 - z) ⊙ n + z ⊙ h
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import fused
from .base import (
    Cell,
    Params,
    fan_in_normal,
    gated_gain,
    linear_drive,
    recurrent_term,
    scaled_blocks,
    stacked_recurrent,
)


class GRU(Cell):
    """Gated recurrent unit; ``activation`` replaces the candidate's tanh, gates stay
    sigmoid. Recurrent blocks start orthogonal (gain 1 for tanh, 0.5 for
    relu), biases at zero."""

    arch = "gru"

    def __init__(self, activation: str = "tanh", gain: float | None = None) -> None:
        super().__init__(activation)
        self.gain = gated_gain(activation, gain)

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        return {
            "weight_ih": fan_in_normal(3 * hidden_size, input_size, generator),
            "weight_hh": stacked_recurrent(3, hidden_size, self.gain, generator),
            "bias_ih": torch.zeros(3 * hidden_size),
            "bias_hh": torch.zeros(3 * hidden_size),
        }

    def drive(self, params: Params, x: Tensor) -> Tensor:
        return linear_drive(params["weight_ih"], params["bias_ih"], x)

    def kernel(self) -> fused.Kernel:
        return fused.GRUKernel(self.nonlinearity)

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        gh = recurrent_term(params["weight_hh"], params["bias_hh"], state)
        xr, xz, xn = drive.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = self.act(xn + r * hn)
        return n + z * (state - n)

    def recur_jacobian(self, params: Params, drive: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        # J = diag(z) + diag((h - n) z (1 - z)) U_z + diag((1 - z) n') [diag(r) U_n + diag(hn r (1 - r)) U_r]
        gh = recurrent_term(params["weight_hh"], params["bias_hh"], state)
        xr, xz, xn = drive.chunk(3, dim=-1)
        hr, hz, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n_pre = xn + r * hn
        n = self.act(n_pre)
        dn = (1 - z) * self.act_grad(n)
        scales = torch.stack([dn * hn * r * (1 - r), (state - n) * z * (1 - z), dn * r], dim=-2)
        jac = scaled_blocks(scales, params["weight_hh"])
        jac.diagonal(dim1=-2, dim2=-1).add_(z)
        return n + z * (state - n), jac
