"""CTRNN: the neuroscientist's continuous-time rate network, at two time constants.

Sources: R. D. Beer (1995), "On the dynamics of small continuous-time recurrent neural
networks", Adaptive Behavior 3(4); H. F. Song, G. R. Yang, X.-J. Wang (2016), "Training
Excitatory-Inhibitory Recurrent Neural Networks for Cognitive Tasks: A Simple and Flexible
Framework", PLoS Computational Biology 12(2).

The ODE tau h_dot = -h + tanh(W_rec h + W_in x + b), Euler-discretised with alpha = dt / tau::

    h' = (1 - alpha) h + alpha tanh(W_rec h + W_in x + b)

at alpha = 0.1 (``CTRNN01``) and alpha = 0.2 (``CTRNN02``). With zero weights and bias every
unit decays by the factor (1 - alpha) per step.

Parametrisation: as ``examples/leaky_rnn.py`` (alpha = 0.5) so that only the time constant
differs: W_in and b by PyTorch's default ``nn.Linear``, W_rec orthogonal with gain 0.9.

Simplifications, stated: this is the "rate" form (the nonlinearity inside the recurrence on h),
with tanh, as in the project's other cells; Song et al. write the "current" form
tau x_dot = -x + W_rec r + W_in u with r = [x]_+ (ReLU), Dale's law and private noise, none of
which are built here.

Hold them against the reference populations with (from the repository root)::

    universality check examples.zoo.ctrnn:CTRNN01 --out runs/check-ctrnn01
    universality check examples.zoo.ctrnn:CTRNN02 --out runs/check-ctrnn02
"""

import torch
from torch import nn


class CTRNN(nn.Module):
    """Euler-discretised CTRNN at ``alpha = dt / tau``: ``forward(x [B, I], h [B, H]) -> [B, H]``.

    Subclass with a class attribute ``alpha`` (as :class:`CTRNN01`, :class:`CTRNN02`) to get a
    factory ``(input_size, hidden_size)`` importable as ``MODULE:ATTR``.
    """

    alpha = 0.1

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.inp = nn.Linear(input_size, hidden_size)
        self.rec = nn.Linear(hidden_size, hidden_size, bias=False)
        nn.init.orthogonal_(self.rec.weight, gain=0.9)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return (1 - self.alpha) * h + self.alpha * torch.tanh(self.rec(h) + self.inp(x))


class CTRNN01(CTRNN):
    """CTRNN at alpha = 0.1 (tau = 10 dt)."""

    alpha = 0.1


class CTRNN02(CTRNN):
    """CTRNN at alpha = 0.2 (tau = 5 dt)."""

    alpha = 0.2
