"""K-bit flip-flop (Sussillo & Barak 2013; the paper's "3-bit discrete memory").

Each of K input channels carries sparse pulses of -1 or +1; the matching output
channel holds the sign of its channel's most recent pulse. Every channel gets a
pulse at t = 0, so the target is defined from the start. Input and output dims K.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import Task, Trials, check_positive_int, check_real, sign_accuracy


@dataclass(frozen=True)
class FlipFlop(Task):
    """K-bit flip-flop; scored by sign accuracy (higher is better).

    ``p_pulse = 0.05`` gives a pulse every 20 steps per bit on average (a real flip
    every 40), so bits are held for many steps and memory is needed; Golub's
    reference generator uses 0.5, which barely tests memory.
    """

    name: ClassVar[str] = "flipflop"
    score_name: ClassVar[str] = "sign_accuracy"
    higher_is_better: ClassVar[bool] = True
    score_label: ClassVar[str] = "sign accuracy"
    title: ClassVar[str] = "the flip-flop"

    n_bits: int = 3
    n_time: int = 64
    p_pulse: float = 0.05
    pass_threshold: float = 0.999

    def __post_init__(self) -> None:
        check_positive_int("n_bits", self.n_bits)
        check_positive_int("n_time", self.n_time)
        check_real("p_pulse (per-step, per-bit pulse probability)", self.p_pulse, 0.0, 1.0)
        check_real("pass_threshold (the least passing sign accuracy)", self.pass_threshold, 0.0, 1.0)

    @property
    def input_size(self) -> int:
        return self.n_bits

    @property
    def output_size(self) -> int:
        return self.n_bits

    def sample_inputs(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Pulses ``[B, T, K]`` in {-1, 0, +1}, non-zero everywhere at t = 0."""
        shape = (batch_size, self.n_time, self.n_bits)
        pulse = torch.rand(shape, generator=generator, device=generator.device) < self.p_pulse
        pulse[:, 0] = True
        positive = torch.rand(shape, generator=generator, device=generator.device) < 0.5
        return pulse * torch.where(positive, 1.0, -1.0)

    def target(self, inputs: Tensor) -> Tensor:
        """Sign of each channel's latest non-zero input ``[B, T, K]`` (0 before the first)."""
        steps = torch.arange(inputs.shape[1], device=inputs.device)[:, None]
        last = torch.where(inputs != 0, steps, 0).cummax(dim=1).values
        return torch.sign(inputs.gather(1, last))

    def conditions(self) -> Tensor:
        """Zero input, ``[1, K]``: the memories and saddles live there."""
        return torch.zeros(1, self.n_bits)

    def condition_labels(self) -> list[str]:
        return ["zero input"]

    def score(self, outputs: Tensor, trials: Trials) -> Tensor:
        """Sign accuracy: ``outputs [..., B, T, K]`` -> ``[...]``."""
        return sign_accuracy(outputs, trials.targets, trials.mask)
