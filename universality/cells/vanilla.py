"""Vanilla RNN: h' = f(W_ih x + b_ih + W_hh h + b_hh) (torch.nn.RNNCell layout)."""

from __future__ import annotations

import torch
from torch import Tensor

from . import fused
from .base import Cell, Params, fan_in_normal, linear_drive, recurrent_term, stacked_recurrent


class Vanilla(Cell):
    """Vanilla RNN. Recurrent weights start as a scaled orthogonal matrix with
    spectral radius ``gain`` (default 0.9 for tanh, 0.5 for relu): below 1 so
    ReLU networks do not blow up at the start of training, near 1 so memories are
    easy to learn."""

    arch = "vanilla"

    def __init__(self, activation: str = "tanh", gain: float | None = None) -> None:
        super().__init__(activation)
        self.gain = gain if gain is not None else (0.9 if activation == "tanh" else 0.5)

    def init_params(self, input_size: int, hidden_size: int, generator: torch.Generator) -> Params:
        return {
            "weight_ih": fan_in_normal(hidden_size, input_size, generator),
            "weight_hh": stacked_recurrent(1, hidden_size, self.gain, generator),
            "bias_ih": torch.zeros(hidden_size),
            "bias_hh": torch.zeros(hidden_size),
        }

    def drive(self, params: Params, x: Tensor) -> Tensor:
        return linear_drive(params["weight_ih"], params["bias_ih"], x)

    def kernel(self) -> fused.Kernel:
        return fused.VanillaKernel(self.nonlinearity)

    def recur(self, params: Params, drive: Tensor, state: Tensor) -> Tensor:
        return self.act(drive + recurrent_term(params["weight_hh"], params["bias_hh"], state))

    def recur_jacobian(self, params: Params, drive: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        # J = diag(f'(a)) W_hh
        pre = drive + recurrent_term(params["weight_hh"], params["bias_hh"], state)
        out = self.act(pre)
        return out, self.act_grad(out).unsqueeze(-1) * params["weight_hh"].unsqueeze(1)
