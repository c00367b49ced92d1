"""minLSTM: a gated linear recurrence whose gates see the input only.

Source: L. Feng, F. Tung, M. O. Ahmed, Y. Bengio, H. Hajimirsadeghi (2024), "Were RNNs All We
Needed?", arXiv:2410.01201 (the minimal LSTM of their Section 3.2).

Update equation, one step at a time (the paper's parallel-scan / log-space form computes the
same recurrence over a whole sequence and is irrelevant here)::

    f   = sigmoid(W_f x + b_f)           forget gate
    i   = sigmoid(W_i x + b_i)           input gate
    f'  = f / (f + i),   i' = i / (f + i) (normalised: f' + i' = 1, "time-independent scale")
    h~  = W_h x + b_h                    candidate (no tanh, no dependence on h)
    h'  = f' * h + i' * h~

Parametrisation: three ``nn.Linear(input_size, hidden_size)`` maps with PyTorch's default
initialisation; no recurrent weights at all. State = h (``state_size`` = hidden_size), read out
linearly by the project.

At a fixed input x the map h -> h' is affine with the constant diagonal Jacobian
diag(f'(x)), entries in (0, 1): a single stable fixed point h* = h~(x) (for f' < 1), so any
memory must be carried by the input-dependent contraction, never by isolated attractors.

Hold it against the reference populations with (from the repository root)::

    universality check examples.zoo.minlstm:MinLSTM --out runs/check-minlstm
"""

import torch
from torch import nn


class MinLSTM(nn.Module):
    """minLSTM cell: ``forward(x [B, I], h [B, H]) -> [B, H]``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.forget = nn.Linear(input_size, hidden_size)
        self.input = nn.Linear(input_size, hidden_size)
        self.candidate = nn.Linear(input_size, hidden_size)

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalised gates ``(f', i')`` at input ``x``; ``f' + i' = 1``."""
        f = torch.sigmoid(self.forget(x))
        i = torch.sigmoid(self.input(x))
        total = f + i
        return f / total, i / total

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        f, i = self.gates(x)
        return f * h + i * self.candidate(x)
