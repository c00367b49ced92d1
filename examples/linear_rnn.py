"""A purely linear recurrent cell: the counter-example ``check`` must fail.

    h' = W_rec h + W_in x + b

A linear map has one fixed point (or a subspace of them) per input, never 2^K isolated
memories, so it cannot learn the flip-flop's sign-holding task:

    universality check examples.linear_rnn:LinearRNN --tasks flipflop --out runs/check-linear
"""

import torch
from torch import nn


class LinearRNN(nn.Module):
    """Linear RNN: ``forward(x [B, I], h [B, H]) -> [B, H]``."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.orthogonal_(self.rec.weight, gain=0.9)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.rec(h) + self.inp(x)
