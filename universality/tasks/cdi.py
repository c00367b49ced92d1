"""Context-dependent integration with a memory period (Mante et al. 2013 style).

Inputs ``[B, T, 4]``: two sensory streams, then two one-hot context channels held for the
whole trial. Each trial has a *stimulus* of ``D ~ U{min_stimulus..max_stimulus}`` steps,
``u_k(t) = mu_k + noise * eps_k(t)`` (``mu_k ~ U[-mean_max, mean_max]`` per trial, ``eps``
iid N(0, 1)), then a *hold* at zero sensory input to the end of the trial. The output
(dim 1) is the running integral of the stream the context selects,
``y(t) = scale * sum_{s<=t} u_ctx(s)``, so during the hold the target stays at the value
integrated by the end of the stimulus; the other stream must be ignored.

Why the hold (docs/methods.md, "Context-dependent integration"): without one, every trial
ends while its stream is still on, and a leaky integrator with a time constant of about one
trial scores an NMSE below 0.01. The hold asks the network to keep what it integrated for
50-90 steps at zero input, which only a (near-)perfect integrator does: the best leaky
integrator with a time constant of T scores an NMSE of about 0.044, one of 5T about 0.002.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from .base import Task, check_positive_int, check_real, require


@dataclass(frozen=True)
class ContextIntegration(Task):
    """Context-dependent integration with a hold; scored by normalised MSE (lower is better).

    Defaults: ``scale * max_stimulus * mean_max = 1``, so the integrated means reach
    ``|y| <= 1`` (:attr:`output_range`); the noise adds a random walk of std
    ``scale * noise * sqrt(D)`` (at most 0.07). ``pass_threshold = 0.002`` is the NMSE of
    the best leaky integrator whose hold keeps 0.8 of its value over one trial
    (time constant ``T / ln 1.25 = 4.5 T``): a network that passes integrates at least
    that well (docs/methods.md).
    """

    name: ClassVar[str] = "cdi"
    #: Input channels of the two sensory streams and of the two context flags.
    SENSORY: ClassVar[tuple[int, int]] = (0, 1)
    CONTEXT: ClassVar[tuple[int, int]] = (2, 3)

    n_time: int = 100
    min_stimulus: int = 10
    max_stimulus: int = 50
    mean_max: float = 1.0
    noise: float = 0.5
    scale: float = 0.02
    pass_threshold: float = 0.002

    def __post_init__(self) -> None:
        check_positive_int("n_time", self.n_time)
        check_positive_int("min_stimulus (shortest stimulus, steps)", self.min_stimulus)
        check_positive_int("max_stimulus (longest stimulus, steps)", self.max_stimulus, self.min_stimulus)
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

    @property
    def output_range(self) -> float:
        """R, the largest integrated mean: ``|scale| * min(max_stimulus, T) * amplitude``
        (amplitude ``mean_max``, or ``noise`` when the means are 0)."""
        amplitude = self.mean_max or self.noise
        return abs(self.scale) * min(self.max_stimulus, self.n_time) * amplitude

    def sample_inputs(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Streams and context, ``[B, T, 4]``; each trial draws its context uniformly and
        its stimulus length uniformly in ``[min_stimulus, max_stimulus]`` (zero after it)."""
        device = generator.device
        mean = (2 * torch.rand(batch_size, 1, 2, generator=generator, device=device) - 1) * self.mean_max
        eps = torch.randn(batch_size, self.n_time, 2, generator=generator, device=device)
        context = torch.randint(2, (batch_size,), generator=generator, device=device)
        length = torch.randint(self.min_stimulus, self.max_stimulus + 1, (batch_size, 1, 1), generator=generator,
                               device=device)
        on = torch.arange(self.n_time, device=device)[None, :, None] < length
        onehot = torch.nn.functional.one_hot(context, 2).float()
        return torch.cat([(mean + self.noise * eps) * on, onehot[:, None].expand(-1, self.n_time, 2)], -1)

    def target(self, inputs: Tensor) -> Tensor:
        """``scale *`` cumulative sum of the stream picked by the context (at t = 0): ``[B, T, 1]``."""
        context = inputs[:, 0, 2:].argmax(-1)
        stream = inputs[..., :2].gather(-1, context[:, None, None].expand(-1, inputs.shape[1], 1))
        return self.scale * stream.cumsum(1)

    def hold_inputs(self, values: Tensor, context: int, stream: int, n_stimulus: int, n_hold: int) -> Tensor:
        """Noise-free probe trials ``[K, n_stimulus + n_hold, 4]``: a constant pulse on sensory
        ``stream`` (0 or 1) for ``n_stimulus`` steps whose integral is ``values [K]`` (in
        output units: when ``stream == context`` the target reaches ``values``), then zero
        sensory input for ``n_hold`` steps; context ``context`` on throughout."""
        require(context in (0, 1) and stream in (0, 1), "context and stream must be 0 or 1")
        check_positive_int("n_stimulus", n_stimulus)
        check_positive_int("n_hold", n_hold, 0)
        values = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
        x = torch.zeros(len(values), n_stimulus + n_hold, 4)
        x[:, :n_stimulus, self.SENSORY[stream]] = (values / (self.scale * n_stimulus))[:, None]
        x[:, :, self.CONTEXT[context]] = 1.0
        return x

    def conditions(self) -> Tensor:
        """Each context with zero sensory input: ``[2, 4]``."""
        return torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])

    def condition_labels(self) -> list[str]:
        return ["context 0", "context 1"]
