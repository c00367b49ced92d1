"""A cell a computational neuroscientist might bring: a discretised rate network.

    h' = (1 - alpha) h + alpha tanh(W_in x + W_rec h + b)

with ``alpha = dt / tau = 0.5``. Hold it against the reference populations with

    universality check examples.leaky_rnn:LeakyRNN --out runs/check-leaky

(from the repository root: the working directory is importable).
"""

import torch
from torch import nn


class LeakyRNN(nn.Module):
    """Leaky (continuous-time, Euler-discretised) tanh RNN: ``forward(x [B, I], h [B, H]) -> [B, H]``."""

    alpha = 0.5

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.orthogonal_(self.rec.weight, gain=0.9)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * h + self.alpha * torch.tanh(self.inp(x) + self.rec(h))
