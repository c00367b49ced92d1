"""A Mamba-style selective diagonal state-space cell.

Source: A. Gu and T. Dao (2023), "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", arXiv:2312.00752 (the selective SSM, their Algorithm 2 / Section 3.2 and 3.5).

Update equation (one recurrent step of the selective scan), per state unit k = 1..H::

    Delta_k(x) = softplus(w_dt,k . x + b_dt,k)       input-dependent step size ("selection")
    A_k        = -exp(A_log,k) < 0                    diagonal, stable by construction
    a_k(x)     = exp(Delta_k(x) A_k)                  in (0, 1): zero-order hold of A
    b_k(x)     = Delta_k(x) (B x + b_B)_k             Mamba's simplified (Euler) discretisation of B
    h'_k       = a_k(x) h_k + b_k(x)

Input map: ``B x + b_B`` (``nn.Linear(input_size, hidden_size)``). Output map: the SSM's
``y = C h`` is the project's linear readout of the state (the readout reads the state itself,
so the state is what is read out and the learned readout *is* C).

Parametrisation and initialisation (Mamba's): ``A_log = log(n)`` with n = 1..16 (S4D-real),
tiled over the H units (unit k has A_k = -(1 + k mod 16)); the step-size bias ``b_dt`` is the
inverse softplus of a step drawn log-uniformly in [1e-3, 1e-1]; ``w_dt`` and ``B`` use PyTorch's
default ``nn.Linear`` initialisation.

Simplifications against a full Mamba block, stated: one state per channel (d_state N = 1; the
H state units are H independent channels); B is a fixed linear input map rather than Mamba's
input-dependent B(x) multiplying a channel input u (so b is linear in x up to the Delta(x)
gain); C is fixed (the readout), not input-dependent; no causal convolution, no SiLU output
gate, no skip term D x (the project reads the state out, nothing else). What is kept is the
part that matters for the dynamics: a diagonal, input-gated linear recurrence
h' = a(x) * h + b(x) with a(x) set by an input-dependent step size.

At a fixed input the Jacobian d h'/d h = diag(a(x)) does not depend on h: one stable fixed
point h* = b / (1 - a) per input.

Hold it against the reference populations with (from the repository root)::

    universality check examples.zoo.selective_ssm:SelectiveSSM --out runs/check-selective-ssm
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

DT_MIN, DT_MAX = 1e-3, 1e-1  # Mamba's initial step-size range
S4D_STATES = 16  # A_k = -(1 + k mod 16), Mamba's S4D-real initialisation with d_state = 16


class SelectiveSSM(nn.Module):
    """Selective diagonal SSM cell: ``forward(x [B, I], h [B, H]) -> [B, H]``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.dt = nn.Linear(input_size, hidden_size)  # w_dt, b_dt
        self.B = nn.Linear(input_size, hidden_size)  # input map
        n = torch.arange(hidden_size) % S4D_STATES + 1
        self.A_log = nn.Parameter(torch.log(n.to(torch.float32)))
        dt = torch.exp(torch.rand(hidden_size) * (math.log(DT_MAX) - math.log(DT_MIN)) + math.log(DT_MIN))
        with torch.no_grad():
            self.dt.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus^{-1}(dt)

    def coefficients(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(a(x), b(x))`` of ``h' = a * h + b``."""
        delta = F.softplus(self.dt(x))
        a = torch.exp(delta * -torch.exp(self.A_log))
        return a, delta * self.B(x)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        a, b = self.coefficients(x)
        return a * h + b
