"""coRNN: a network of coupled, damped, driven nonlinear oscillators.

Source: T. K. Rusch and S. Mishra (2021), "Coupled Oscillatory Recurrent Neural Network
(coRNN): An accurate and (gradient) stable architecture for learning long time dependencies",
ICLR 2021, arXiv:2010.00951.

The ODE (their eq. 1-2), with y the oscillator positions and z = y' their velocities::

    y'' = tanh(W y + W~ y' + V x + b) - gamma y - eps y'

Update equation: the paper's implicit-explicit (IMEX) discretisation (their eq. 3), explicit in
the forcing and the restoring term, implicit in the damping::

    z' = z + dt [tanh(W y + W~ z + V x + b) - gamma y] - dt eps z'
       = (z + dt [tanh(W y + W~ z + V x + b) - gamma y]) / (1 + dt eps)
    y' = y + dt z'

(the authors' released code uses the fully explicit variant, ``- dt eps z`` instead of
``- dt eps z'``; this file follows the paper's equation.)

State = ``[y, z]`` (``state_size`` = 2 H), y first, so the project's readout reads the
positions y, as the paper's readout does.

Parametrisation: W, W~ [H, H] and V [H, I] with bias b, PyTorch's default ``nn.Linear``
initialisation (as in the authors' code); fixed hyperparameters dt = 0.076, gamma = 0.4,
eps = 8.0, the defaults of the authors' psMNIST script.

Hold it against the reference populations with (from the repository root)::

    universality check examples.zoo.cornn:CoRNN --out runs/check-cornn
"""

import torch
from torch import nn


class CoRNN(nn.Module):
    """coRNN cell over the state ``[y, z]``: ``forward(x [B, I], s [B, 2H]) -> [B, 2H]``."""

    dt = 0.076
    gamma = 0.4
    eps = 8.0

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.state_size = 2 * hidden_size
        self.W = nn.Linear(hidden_size, hidden_size, bias=False)  # on positions y
        self.W_z = nn.Linear(hidden_size, hidden_size, bias=False)  # W~, on velocities z
        self.V = nn.Linear(input_size, hidden_size)  # input map and bias b

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        y, z = state[..., : self.hidden_size], state[..., self.hidden_size :]
        force = torch.tanh(self.W(y) + self.W_z(z) + self.V(x)) - self.gamma * y
        z_new = (z + self.dt * force) / (1 + self.dt * self.eps)
        y_new = y + self.dt * z_new
        return torch.cat([y_new, z_new], dim=-1)
