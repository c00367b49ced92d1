"""Update-gate RNN (Collins, Sohl-Dickstein & Sussillo 2017), gate order u, c:

u = σ(W_iu x + b_iu + W_hu h + b_hu),  c = f(W_ic x + b_ic + W_hc h + b_hc)
h' = u ⊙ h + (1 - u) ⊙ c
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


class UGRNN(Cell):
    """Update-gate RNN; ``activation`` is the candidate's nonlinearity. The update
    gate bias starts at +1 (TensorFlow's UGRNNCell forget_bias) so the state is
    remembered by default; recurrent blocks orthogonal (gain 1 for tanh, 0.5 for relu)."""

    arch = "ugrnn"

    def __init__(self, activation: str = "tanh", gain: float | None = None, gate_bias: float = 1.0) -> None:
        super().__init__(activation)
        self.gain = gated_gain(activation, gain)
        self.gate_bias = gate_bias

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        bias_ih = torch.zeros(2 * hidden_size)
        bias_ih[:hidden_size] = self.gate_bias
        return {
            "weight_ih": fan_in_normal(2 * hidden_size, input_size, generator),
            "weight_hh": stacked_recurrent(2, hidden_size, self.gain, generator),
            "bias_ih": bias_ih,
            "bias_hh": torch.zeros(2 * hidden_size),
        }

    def drive(self, params: Params, x: Tensor) -> Tensor:
        return linear_drive(params["weight_ih"], params["bias_ih"], x)

    def kernel(self) -> fused.Kernel:
        return fused.UGRNNKernel(self.nonlinearity)

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        pre = drive + recurrent_term(params["weight_hh"], params["bias_hh"], state)
        u_pre, c_pre = pre.chunk(2, dim=-1)
        u = torch.sigmoid(u_pre)
        c = self.act(c_pre)
        return c + u * (state - c)

    def recur_jacobian(self, params: Params, drive: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        # J = diag(u) + diag((h - c) u (1 - u)) U_u + diag((1 - u) c') U_c
        pre = drive + recurrent_term(params["weight_hh"], params["bias_hh"], state)
        u_pre, c_pre = pre.chunk(2, dim=-1)
        u, c = torch.sigmoid(u_pre), self.act(c_pre)
        scales = torch.stack([(state - c) * u * (1 - u), (1 - u) * self.act_grad(c)], dim=-2)
        jac = scaled_blocks(scales, params["weight_hh"])
        jac.diagonal(dim1=-2, dim2=-1).add_(u)
        return c + u * (state - c), jac
