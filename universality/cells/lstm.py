"""LSTM in the torch.nn.LSTMCell convention (gate order i, f, g, o); the state is
``[h, c]`` (S = 2H):

c' = σ(f) ⊙ c + σ(i) ⊙ act(g),  h' = σ(o) ⊙ act(c')
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import fused
from .base import Cell, Params, fan_in_normal, gated_gain, linear_drive, recurrent_term, stacked_recurrent


class LSTM(Cell):
    """Long short-term memory; ``activation`` replaces both tanh's (cell input and
    output squashing), gates stay sigmoid. The forget-gate bias starts at +1
    (Jozefowicz et al. 2015), recurrent blocks orthogonal (gain 1 for tanh, 0.5 for relu)."""

    arch = "lstm"

    def __init__(self, activation: str = "tanh", gain: float | None = None, forget_bias: float = 1.0) -> None:
        super().__init__(activation)
        self.gain = gated_gain(activation, gain)
        self.forget_bias = forget_bias

    def state_size(self, hidden_size: int) -> int:
        return 2 * hidden_size

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        bias_ih = torch.zeros(4 * hidden_size)
        bias_ih[hidden_size : 2 * hidden_size] = self.forget_bias
        return {
            "weight_ih": fan_in_normal(4 * hidden_size, input_size, generator),
            "weight_hh": stacked_recurrent(4, hidden_size, self.gain, generator),
            "bias_ih": bias_ih,
            "bias_hh": torch.zeros(4 * hidden_size),
        }

    def drive(self, params: Params, x: Tensor) -> Tensor:
        return linear_drive(params["weight_ih"], params["bias_ih"], x)

    def kernel(self) -> fused.Kernel:
        return fused.LSTMKernel(self.nonlinearity)

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        h, c = state.chunk(2, dim=-1)
        gates = drive + recurrent_term(params["weight_hh"], params["bias_hh"], h)
        i, f, g, o = gates.chunk(4, dim=-1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(g)
        h = torch.sigmoid(o) * self.act(c)
        return torch.cat([h, c], dim=-1)

    def recur_jacobian(self, params: Params, drive: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        # c' = s_f c + s_i g~,  h' = s_o act(c'); the gates see h only, so
        # dc'/dh = diag(g~ s_i') U_i + diag(c s_f') U_f + diag(s_i g~') U_g,  dc'/dc = diag(s_f),
        # dh'/dh = diag(k) dc'/dh + diag(act(c') s_o') U_o with k = s_o act'(c'),  dh'/dc = diag(k s_f).
        h, c = state.chunk(2, dim=-1)
        gates = drive + recurrent_term(params["weight_hh"], params["bias_hh"], h)
        i_pre, f_pre, g_pre, o_pre = gates.chunk(4, dim=-1)
        i, f, o = torch.sigmoid(i_pre), torch.sigmoid(f_pre), torch.sigmoid(o_pre)
        g = self.act(g_pre)
        c_new = f * c + i * g
        a = self.act(c_new)
        k = o * self.act_grad(a)
        dc = torch.stack([g * i * (1 - i), c * f * (1 - f), i * self.act_grad(g), torch.zeros_like(o)], -2)
        dh = k.unsqueeze(-2) * dc
        dh[..., 3, :] = a * o * (1 - o)
        p, b, hidden = h.shape
        jac = h.new_zeros(p, b, 2, hidden, 2, hidden)
        blocks = params["weight_hh"].view(p, 4, hidden, hidden)
        jac[:, :, :, :, 0] = torch.einsum("pbxki,pkij->pbxij", torch.stack([dh, dc], dim=2), blocks)
        jac[:, :, 0, :, 1] = torch.diag_embed(k * f)
        jac[:, :, 1, :, 1] = torch.diag_embed(f)
        return torch.cat([o * a, c_new], dim=-1), jac.view(p, b, 2 * hidden, 2 * hidden)
