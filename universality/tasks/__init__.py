"""Tasks: one per file, a name -> class registry, and ``make_task``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from .base import Task as Task
from .base import Trials as Trials
from .base import masked_mse as masked_mse
from .base import normalised_mse as normalised_mse
from .base import sign_accuracy as sign_accuracy
from .cdi import ContextIntegration as ContextIntegration
from .flipflop import FlipFlop as FlipFlop
from .sine import SineWave as SineWave

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (FlipFlop, SineWave, ContextIntegration)}


def make_task(name: str, **params: Any) -> Task:
    """The task registered as ``name``, built with ``params`` (its dataclass fields)."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}") from None
    valid = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise ValueError(f"unknown parameters {unknown} for task {name!r}; valid ones: {valid}")
    return cls(**params)


def task_from_config(config: Mapping[str, Any]) -> Task:
    """Rebuild a task from its ``config()`` (``{"task": name, **fields}``)."""
    params = dict(config)
    return make_task(params.pop("task"), **params)
