"""Lipschitz RNN: a linear part with tunable symmetric/antisymmetric balance plus a tanh part.

Source: N. B. Erichson, O. Azencot, A. Queiruga, L. Hodgkinson, M. W. Mahoney (2021),
"Lipschitz Recurrent Neural Networks", ICLR 2021, arXiv:2006.12070.

The ODE (their eq. 1) and its forward-Euler step (the paper also uses RK2; Euler here)::

    h_dot = A_beta h + tanh(W_beta h + U x + b)
    h'    = h + eps (A_beta h + tanh(W_beta h + U x + b))

with the same parametrisation for both hidden matrices (their eq. 4)::

    A_beta = (1 - beta) (M_A + M_A^T) + beta (M_A - M_A^T) - gamma_A I
    W_beta = (1 - beta) (M_W + M_W^T) + beta (M_W - M_W^T) - gamma_W I

so the symmetric part of A_beta is (1 - beta)(M_A + M_A^T) - gamma_A I and its antisymmetric
part beta (M_A - M_A^T); beta -> 1 gives an antisymmetric (rotational) A.

Parametrisation: M_A, M_W [H, H] trainable, N(0, 1 / H) at initialisation (our choice of
scale: the paper tunes the initial variance); U [H, I] and b by PyTorch's default
``nn.Linear``; fixed beta = 0.75, gamma_A = gamma_W = 0.001, eps = 0.03, the paper's values for
the pixel-MNIST tasks.

Hold it against the reference populations with (from the repository root)::

    universality check examples.zoo.lipschitz:LipschitzRNN --out runs/check-lipschitz
"""

import math

import torch
from torch import nn


class LipschitzRNN(nn.Module):
    """Lipschitz RNN cell (Euler step): ``forward(x [B, I], h [B, H]) -> [B, H]``."""

    beta = 0.75
    gamma_A = 0.001
    gamma_W = 0.001
    eps = 0.03

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.M_A = nn.Parameter(torch.randn(hidden_size, hidden_size) / math.sqrt(hidden_size))
        self.M_W = nn.Parameter(torch.randn(hidden_size, hidden_size) / math.sqrt(hidden_size))
        self.inp = nn.Linear(input_size, hidden_size)  # U, b

    def beta_matrix(self, M: torch.Tensor, gamma: float) -> torch.Tensor:
        """``(1 - beta)(M + M^T) + beta (M - M^T) - gamma I``."""
        eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
        return (1 - self.beta) * (M + M.T) + self.beta * (M - M.T) - gamma * eye

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        A = self.beta_matrix(self.M_A, self.gamma_A)
        W = self.beta_matrix(self.M_W, self.gamma_W)
        return h + self.eps * (h @ A.T + torch.tanh(h @ W.T + self.inp(x)))
