"""The task protocol: trials, losses, scores and the pass criterion.

A task is a frozen dataclass whose fields are *all* of its parameters (with
defaults), so ``config()`` records it completely and ``make_task(**config)``
rebuilds it. Every task maps inputs to targets deterministically (``target``);
``sample`` draws inputs through an explicit ``torch.Generator`` only, so the same
generator state gives a bit-identical batch.

Shapes: B trials, T time steps, I inputs, O outputs, C analysis conditions. Outputs
handed to ``loss``/``score`` may carry any leading dims (e.g. a population axis P):
``[..., B, T, O] -> [...]``.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

_TRIAL_DIMS = (-3, -2, -1)


@dataclass(frozen=True)
class Trials:
    """A batch of trials.

    ``inputs [B, T, I]``, ``targets [B, T, O]`` and ``mask [B, T, O]`` (1 where the
    entry counts in the loss), all float32 on the sampling generator's device.
    """

    inputs: Tensor
    targets: Tensor
    mask: Tensor

    @property
    def batch_size(self) -> int:
        """B."""
        return self.inputs.shape[0]

    def to(self, device: str | torch.device) -> Trials:
        """The same trials on ``device``."""
        return Trials(self.inputs.to(device), self.targets.to(device), self.mask.to(device))


def masked_mse(outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Masked mean squared error: ``outputs [..., B, T, O]`` -> ``[...]``."""
    _check_outputs(outputs, targets)
    err = (outputs - targets).square() * mask
    return err.sum(_TRIAL_DIMS) / mask.sum()


def normalised_mse(outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Masked MSE divided by the variance of the masked targets: ``[..., B, T, O] -> [...]``.

    0 is perfect; always predicting the targets' mean scores 1.
    """
    n = mask.sum()
    mean = (targets * mask).sum() / n
    var = ((targets - mean).square() * mask).sum() / n
    return masked_mse(outputs, targets, mask) / var


def sign_accuracy(outputs: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Fraction of masked entries where ``sign(output) == target``: ``[..., B, T, O] -> [...]``."""
    _check_outputs(outputs, targets)
    hits = (torch.sign(outputs) == targets).to(mask.dtype) * mask
    return hits.sum(_TRIAL_DIMS) / mask.sum()


def _check_outputs(outputs: Tensor, targets: Tensor) -> None:
    if outputs.dim() < 3 or outputs.shape[-3:] != targets.shape:
        raise ValueError(
            f"outputs have shape {tuple(outputs.shape)} but the trials need "
            f"[..., B, T, O] = [..., {', '.join(map(str, targets.shape))}]; "
            "run the network on these trials' inputs"
        )


class Task(ABC):
    """A task: subclass as a frozen dataclass with every parameter as a defaulted field.

    The default score is the normalised MSE (lower is better); override
    ``score``, ``score_name`` and ``higher_is_better`` together.
    """

    #: Registry name, e.g. ``"flipflop"``.
    name: ClassVar[str]
    #: What ``score`` measures, e.g. ``"nmse"`` or ``"sign_accuracy"``.
    score_name: ClassVar[str] = "nmse"
    #: Whether a larger score is a better network.
    higher_is_better: ClassVar[bool] = False
    #: How ``score`` reads in the report's prose, e.g. ``"NMSE"`` or ``"sign accuracy"``.
    score_label: ClassVar[str] = "NMSE"
    #: The task in the report's prose, e.g. ``"the flip-flop"`` (empty: its ``name``).
    title: ClassVar[str] = ""

    # Dataclass fields every task declares.
    #: T, the number of time steps per trial.
    n_time: int
    #: ``passed`` compares ``score`` with this threshold.
    pass_threshold: float

    @property
    @abstractmethod
    def input_size(self) -> int:
        """I."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """O."""

    @abstractmethod
    def target(self, inputs: Tensor) -> Tensor:
        """The correct output for ``inputs [B, T, I]``: ``[B, T, O]``."""

    @abstractmethod
    def sample_inputs(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """Random inputs ``[B, T, I]`` (float32 or float64), drawn only through ``generator``."""

    @abstractmethod
    def conditions(self) -> Tensor:
        """The constant inputs ``[C, I]`` at which the dynamics are analysed."""

    @abstractmethod
    def condition_labels(self) -> list[str]:
        """One label per row of ``conditions()``."""

    def sample(self, batch_size: int, generator: torch.Generator) -> Trials:
        """Draw ``batch_size`` trials; all randomness comes from ``generator``."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        inputs = self.sample_inputs(batch_size, generator)
        targets = self.target(inputs)
        mask = torch.ones_like(targets, dtype=torch.float32)
        return Trials(inputs.float(), targets.float(), mask)

    def loss(self, outputs: Tensor, trials: Trials) -> Tensor:
        """Masked MSE: ``outputs [..., B, T, O]`` -> ``[...]``."""
        return masked_mse(outputs, trials.targets, trials.mask)

    def score(self, outputs: Tensor, trials: Trials) -> Tensor:
        """The task's performance measure: ``outputs [..., B, T, O]`` -> ``[...]``."""
        return normalised_mse(outputs, trials.targets, trials.mask)

    def passed(self, score: Tensor) -> Tensor:
        """Whether each score meets ``pass_threshold`` (bool, same shape; NaN fails)."""
        if self.higher_is_better:
            return score >= self.pass_threshold
        return score <= self.pass_threshold

    def config(self) -> dict[str, Any]:
        """``{"task": name, **fields}``, JSON-serialisable."""
        return {"task": self.name, **dataclasses.asdict(self)}  # type: ignore[call-overload]


def require(ok: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``ok``."""
    if not ok:
        raise ValueError(message)


def check_positive_int(name: str, value: object, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an int ``>= minimum``."""
    require(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{name} must be an int >= {minimum}, got {value!r}",
    )


def check_real(name: str, value: object, low: float = -math.inf, high: float = math.inf) -> None:
    """Raise ``ValueError`` unless ``value`` is a finite real number in ``[low, high]``."""
    require(
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low <= value <= high,
        f"{name} must be a finite number in [{low}, {high}], got {value!r}",
    )
