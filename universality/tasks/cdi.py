"""Context-dependent integration (Mante et al. 2013 style).

Inputs ``[B, T, 4]``: two sensory streams ``u_k(t) = mu_k + noise * eps_k(t)``
(``mu_k ~ U[-mean_max, mean_max]`` per trial, ``eps`` iid N(0, 1)), then two one-hot
context channels held for the whole trial. The output (dim 1) is the running
integral of the stream the context selects, ``y(t) = scale * sum_{s<=t} u_ctx(s)``;
the other stream must be ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import Task, check_positive_int, check_real, require


@dataclass(frozen=True)
class ContextIntegration(Task):
    """Context-dependent integration; scored by normalised MSE (lower is better).

    Defaults: with ``scale * n_time * mean_max = 1`` the mean's contribution keeps
    ``|y| <= 1``; the noise adds a random walk of std ``scale * noise * sqrt(t)``
    (0.05 at the end). Averaged over the trial, the per-trial mean carries ~90x
    the target variance the noise does, so the target is mostly signal.
    """

    name: ClassVar[str] = "cdi"

    n_time: int = 100
    mean_max: float = 1.0
    noise: float = 0.5
    scale: float = 0.01
    pass_threshold: float = 0.01

    def __post_init__(self) -> None:
        check_positive_int("n_time", self.n_time)
        check_real("mean_max (largest per-trial stream mean)", self.mean_max, 0.0)
        check_real("noise (std of the per-step sensory noise)", self.noise, 0.0)
        require(
            self.mean_max > 0 or self.noise > 0,
            "mean_max and noise are both 0, so every target would be 0; make one positive",
        )
        check_real("scale (integral gain)", self.scale)
        require(self.scale != 0, "scale must be non-zero, or every target would be 0")
        check_real("pass_threshold (the largest passing normalised MSE)", self.pass_threshold, 0.0)

    @property
    def input_size(self) -> int:
        return 4

    @property
    def output_size(self) -> int:
        return 1

    def sample_inputs(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Streams and context, ``[B, T, 4]``; each trial draws its context uniformly."""
        device = generator.device
        mean = (2 * torch.rand(batch_size, 1, 2, generator=generator, device=device) - 1) * self.mean_max
        eps = torch.randn(batch_size, self.n_time, 2, generator=generator, device=device)
        context = torch.randint(2, (batch_size,), generator=generator, device=device)
        onehot = torch.nn.functional.one_hot(context, 2).float()
        return torch.cat([mean + self.noise * eps, onehot[:, None].expand(-1, self.n_time, 2)], -1)

    def target(self, inputs: Tensor) -> Tensor:
        """``scale *`` cumulative sum of the stream picked by the context (at t = 0): ``[B, T, 1]``."""
        context = inputs[:, 0, 2:].argmax(-1)
        stream = inputs[..., :2].gather(-1, context[:, None, None].expand(-1, inputs.shape[1], 1))
        return self.scale * stream.cumsum(1)

    def conditions(self) -> Tensor:
        """Each context with zero sensory input: ``[2, 4]``."""
        return torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])

    def condition_labels(self) -> list[str]:
        return ["context 0", "context 1"]
