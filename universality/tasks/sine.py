"""Frequency-cued sine wave (Sussillo & Barak 2013).

A static scalar input, constant over the trial, names one of ``n_freqs``
frequencies w_j evenly spaced in ``[w_min, w_max]`` rad/step; the network must
output ``sin(w_j t)``, t = 0..T-1. The input for the j-th frequency (j = 1..n_freqs)
is ``j / n_freqs + input_offset`` (0.25 in Sussillo & Barak). Input and output dim 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import Task, check_positive_int, check_real, require


@dataclass(frozen=True)
class SineWave(Task):
    """Frequency-cued sine wave; scored by normalised MSE (lower is better).

    ``n_time = 100`` covers 1.6 periods of the slowest wave (period 2 pi / 0.1 = 63
    steps) and 9.5 of the fastest, while keeping training cheap.
    """

    name: ClassVar[str] = "sine"

    n_freqs: int = 51
    w_min: float = 0.1
    w_max: float = 0.6
    input_offset: float = 0.25
    n_time: int = 100
    pass_threshold: float = 0.01

    def __post_init__(self) -> None:
        check_positive_int("n_freqs", self.n_freqs, minimum=2)
        check_real("w_min (rad/step)", self.w_min, 0.0, math.pi)
        check_real("w_max (rad/step)", self.w_max, 0.0, math.pi)
        require(
            self.w_min < self.w_max,
            f"w_min must be < w_max, got w_min={self.w_min!r}, w_max={self.w_max!r}",
        )
        check_real("input_offset", self.input_offset)
        check_positive_int("n_time", self.n_time)
        check_real("pass_threshold (the largest passing normalised MSE)", self.pass_threshold, 0.0)

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 1

    def frequencies(self) -> Tensor:
        """The angular frequencies ``[F]`` (float64, rad/step)."""
        return torch.linspace(self.w_min, self.w_max, self.n_freqs, dtype=torch.float64)

    def input_for(self, freq_index: Tensor | int) -> Tensor:
        """The static input (float64, same shape) cueing frequency ``freq_index`` in ``0..F-1``."""
        j = torch.as_tensor(freq_index, dtype=torch.float64) + 1
        return j / self.n_freqs + self.input_offset

    def frequency_of(self, inputs: Tensor) -> Tensor:
        """Inverse of ``input_for`` as an affine map: input values ``[...]`` -> w ``[...]`` (float64).

        Inputs between the training values decode to interpolated frequencies.
        """
        j = (inputs.double() - self.input_offset) * self.n_freqs - 1
        return self.w_min + j * (self.w_max - self.w_min) / (self.n_freqs - 1)

    def sample_inputs(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A uniformly drawn frequency cue per trial, held constant: ``[B, T, 1]`` float64."""
        index = torch.randint(self.n_freqs, (batch_size,), generator=generator, device=generator.device)
        return self.input_for(index)[:, None, None].expand(-1, self.n_time, 1)

    def target(self, inputs: Tensor) -> Tensor:
        """``sin(w t)`` with w decoded from each step's input: ``[B, T, 1]`` -> ``[B, T, 1]``."""
        t = torch.arange(inputs.shape[1], dtype=torch.float64, device=inputs.device)
        return torch.sin(self.frequency_of(inputs) * t[:, None]).to(inputs.dtype)

    def conditions(self) -> Tensor:
        """Each frequency's static input: ``[F, 1]`` float32."""
        return self.input_for(torch.arange(self.n_freqs))[:, None].float()

    def condition_labels(self) -> list[str]:
        return [f"w={w:.4f}" for w in self.frequencies().tolist()]
