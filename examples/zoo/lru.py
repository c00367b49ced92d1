"""An LRU-style unit: a complex diagonal linear recurrence, real part read out.

Source: A. Orvieto, S. L. Smith, A. Gu, A. Fernando, C. Gulcehre, R. Pascanu, S. De (2023),
"Resurrecting Recurrent Neural Networks for Long Sequences", ICML 2023, arXiv:2303.06349 (the
Linear Recurrent Unit, their Section 3).

Update equation, per unit j = 1..H (complex state h_j)::

    lambda_j = exp(-exp(nu_log,j) + i exp(theta_log,j))   stable exponential parametrisation:
                                                          |lambda_j| = exp(-exp(nu_log,j)) < 1
    gamma_j  = exp(gamma_log,j)                           normalisation, initialised at
                                                          sqrt(1 - |lambda_j|^2)
    h'_j     = lambda_j h_j + gamma_j (B x)_j,            B = B_re + i B_im complex [H, I]

State layout (the project's cells are real and vmapped, so no complex dtype): the state is
``[Re h, Im h]`` (``state_size`` = 2 H), real part first, so the project's readout (the first H
entries) reads Re h. The complex product is written out on the two halves::

    Re h' = Re(lambda) Re h - Im(lambda) Im h + gamma (B_re x)
    Im h' = Re(lambda) Im h + Im(lambda) Re h + gamma (B_im x)

Parametrisation and initialisation (the paper's): |lambda| uniform on the ring
r_min = 0.4 <= |lambda| <= r_max = 0.99 (uniform in area: nu_log = log(-log(u (r_max^2 -
r_min^2) + r_min^2) / 2), u ~ U[0, 1]), phase theta = exp(theta_log) ~ U[0, 2 pi] (max_phase =
2 pi); gamma_log = log sqrt(1 - |lambda|^2) and trained, as in the paper; B_re, B_im ~
N(0, 1 / (2 I)) (Glorot, halved per part).

Simplifications, stated: the LRU layer's output y = Re(C h) + D x becomes the project's real
linear readout of Re h (no read of Im h, no skip D x, no MLP/GLU after the layer). A unit's
phase can be moved into B, so reading Re h instead of Re(C h) loses nothing for a single output;
with several outputs sharing a unit it is a restriction. Note r_min/r_max here is our choice for
short tasks (the paper's long-range-arena settings use r_min = 0.9, r_max = 0.999 and a smaller
max_phase).

At a fixed input the map is affine with eigenvalues lambda_j, |lambda_j| < 1: one stable fixed
point (a focus when Im lambda_j != 0) per input.

Hold it against the reference populations with (from the repository root)::

    universality check examples.zoo.lru:LRU --out runs/check-lru
"""

import math

import torch
from torch import nn

R_MIN, R_MAX, MAX_PHASE = 0.4, 0.99, 2 * math.pi


class LRU(nn.Module):
    """LRU cell over a real state ``[Re h, Im h]``: ``forward(x [B, I], s [B, 2H]) -> [B, 2H]``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.state_size = 2 * hidden_size
        u1, u2 = torch.rand(hidden_size), torch.rand(hidden_size)
        nu_log = torch.log(-0.5 * torch.log(u1 * (R_MAX**2 - R_MIN**2) + R_MIN**2))
        theta_log = torch.log(MAX_PHASE * u2)
        modulus = torch.exp(-torch.exp(nu_log))
        self.nu_log = nn.Parameter(nu_log)
        self.theta_log = nn.Parameter(theta_log)
        self.gamma_log = nn.Parameter(torch.log(torch.sqrt(1 - modulus**2)))
        self.B_re = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(2 * input_size))
        self.B_im = nn.Parameter(torch.randn(hidden_size, input_size) / math.sqrt(2 * input_size))

    def eigenvalues(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Re lambda, Im lambda)``, each ``[H]``."""
        modulus = torch.exp(-torch.exp(self.nu_log))
        phase = torch.exp(self.theta_log)
        return modulus * torch.cos(phase), modulus * torch.sin(phase)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        re, im = state[..., : self.hidden_size], state[..., self.hidden_size :]
        lam_re, lam_im = self.eigenvalues()
        gamma = torch.exp(self.gamma_log)
        u_re = gamma * (x @ self.B_re.T)
        u_im = gamma * (x @ self.B_im.T)
        return torch.cat([lam_re * re - lam_im * im + u_re, lam_re * im + lam_im * re + u_im], dim=-1)
