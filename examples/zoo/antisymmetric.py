"""Antisymmetric RNN: a forward-Euler step of an ODE whose Jacobian is antisymmetric.

Source: B. Chang, M. Chen, E. Haber, E. H. Chi (2019), "AntisymmetricRNN: A Dynamical System
View on Recurrent Neural Networks", ICLR 2019, arXiv:1902.09689 (their eq. 12, the ungated
cell).

Update equation::

    h' = h + eps * tanh((W - W^T - gamma I) h + V x + b)

W - W^T is antisymmetric (purely imaginary eigenvalues), so the ODE h_dot = tanh(...) is
neither expanding nor contracting at its linearisation; the diffusion gamma > 0 shifts the
eigenvalues of the recurrent matrix to -gamma + i omega so the Euler step stays stable. At h = 0
(with V x + b = 0) the step's Jacobian is I + eps (W - W^T - gamma I).

Parametrisation: W [H, H] trainable, N(0, 1 / H) at initialisation (the paper draws W from
N(0, sigma^2 / H) and tunes sigma); V [H, I] and b by PyTorch's default ``nn.Linear``
initialisation; fixed step eps = 0.1 and diffusion gamma = 0.01, inside the paper's search grid
(eps in {0.01, 0.1, 1}, gamma in {0.001, 0.01, 0.1, 1}). The paper's gated variant is not
built here.

Hold it against the reference populations with (from the repository root)::

    universality check examples.zoo.antisymmetric:AntisymmetricRNN --out runs/check-antisymmetric
"""

import math

import torch
from torch import nn


class AntisymmetricRNN(nn.Module):
    """Antisymmetric RNN cell: ``forward(x [B, I], h [B, H]) -> [B, H]``."""

    eps = 0.1
    gamma = 0.01

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.randn(hidden_size, hidden_size) / math.sqrt(hidden_size))
        self.inp = nn.Linear(input_size, hidden_size)  # V, b

    def recurrent_matrix(self) -> torch.Tensor:
        """``W - W^T - gamma I``."""
        eye = torch.eye(self.W.shape[-1], dtype=self.W.dtype, device=self.W.device)
        return self.W - self.W.T - self.gamma * eye

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return h + self.eps * torch.tanh(h @ self.recurrent_matrix().T + self.inp(x))
