"""Presets: which populations a benchmark run trains (built-in names or a TOML file)."""

from __future__ import annotations

import itertools
import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..cells import ACTIVATIONS, CELLS
from ..tasks import TASKS, Task, make_task


class PresetError(ValueError):
    """A preset field of the wrong type or value; the message starts with the field."""


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _listed(values: object, kind: type | tuple[type, ...]) -> bool:
    """A non-empty list or tuple of distinct ``kind`` values (bools are not numbers)."""
    return (isinstance(values, (list, tuple)) and len(values) > 0
            and all(isinstance(v, kind) and not isinstance(v, bool) for v in values)
            and len(set(values)) == len(values))


def _require(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        raise PresetError(f"{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class Shard:
    """One population of equal shape: task x arch x activation x hidden size."""

    task: str
    arch: str
    activation: str
    hidden: int

    @property
    def name(self) -> str:
        return f"{self.task}-{self.arch}-{self.activation}-h{self.hidden}"


@dataclass(frozen=True)
class Preset:
    """A grid of populations and how to train them. Members of a shard are
    ``l2 x seeds``; ``task_params`` overrides task defaults per task name.

    ``min_passed``: a shard in which fewer members passed trains another round of
    ``l2 x seeds`` fresh seeds (continuing from the last), up to ``max_rounds`` rounds in
    all, so that claims rest on enough trained networks; every member trained, passed or
    not, stays in the shard and in the pass-rate tables."""

    name: str
    tasks: tuple[str, ...] = tuple(TASKS)
    archs: tuple[str, ...] = ("vanilla", "ugrnn", "gru", "lstm")
    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    hidden: tuple[int, ...] = (32,)
    l2: tuple[float, ...] = (0.0,)
    seeds: int = 4
    first_seed: int = 0
    lr: float = 3e-3
    steps: int = 3000
    batch_size: int = 64
    fixed_point_candidates: int = 1024  # per member, split over the task's conditions
    min_passed: int = 0
    max_rounds: int = 1
    extend_steps: int = 0  # extra steps for members still improving at `steps` (TrainConfig.extend_steps)
    min_steps: int = 0  # no member stops as trained before this step (TrainConfig.min_steps)
    confirm: int = 0  # fresh held-out batches that must confirm a pass (TrainConfig.confirm)
    task_params: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Check every field's type and value, and build every task from its
        ``task_params`` (each task checks its own fields): :class:`PresetError` naming the
        field, before anything is trained or written."""
        _require(isinstance(self.name, str) and bool(self.name), "name", "a non-empty string", self.name)
        for name, known in (("tasks", TASKS), ("archs", CELLS), ("activations", ACTIVATIONS)):
            values = getattr(self, name)
            _require(_listed(values, str), name, "a non-empty list of names without repeats", values)
            unknown = [v for v in values if v not in known]
            if unknown:
                raise PresetError(f"{name}: unknown task/arch/activation {unknown}; known: {sorted(known)}")
        _require(_listed(self.hidden, int) and min(self.hidden) >= 1, "hidden",
                 "a non-empty list of positive integers without repeats", self.hidden)
        _require(_listed(self.l2, (int, float)) and all(math.isfinite(v) and v >= 0 for v in self.l2), "l2",
                 "a non-empty list of finite numbers >= 0 without repeats", self.l2)
        _require(_number(self.lr) and self.lr > 0, "lr", "a finite number > 0", self.lr)
        for name, least in (("seeds", 1), ("first_seed", 0), ("steps", 1), ("batch_size", 1),
                            ("fixed_point_candidates", 1), ("min_passed", 0), ("max_rounds", 1),
                            ("extend_steps", 0), ("min_steps", 0), ("confirm", 0)):
            value = getattr(self, name)
            _require(_integer(value) and value >= least, name, f"an integer >= {least}", value)
        if self.min_steps > self.steps:
            raise PresetError(f"min_steps: {self.min_steps} exceeds steps ({self.steps})")
        _require(isinstance(self.task_params, dict) and all(isinstance(v, dict) for v in self.task_params.values()),
                 "task_params", "a table of tables, one per task", self.task_params)
        if set(self.task_params) - set(self.tasks):
            raise PresetError(f"task_params: tasks not in the preset {sorted(set(self.task_params) - set(self.tasks))}")
        for task in self.tasks:
            self.task(task)

    def task(self, name: str) -> Task:
        """The task ``name`` built from its ``task_params`` (:class:`PresetError` naming the
        field when a parameter is unknown or invalid)."""
        try:
            return make_task(name, **self.task_params.get(name, {}))
        except (ValueError, TypeError) as err:
            raise PresetError(f"task_params.{name}: {err}") from None

    def round_members(self, round_: int) -> tuple[list[int], list[float]]:
        """Seeds and L2 values of round ``round_``'s ``l2 x seeds`` members (fresh seeds
        continue the sequence of the rounds before)."""
        first = self.first_seed + round_ * self.seeds
        return [first + s for _ in self.l2 for s in range(self.seeds)], [v for v in self.l2 for _ in range(self.seeds)]

    def shards(self) -> list[Shard]:
        grid = itertools.product(self.tasks, self.archs, self.activations, self.hidden)
        return [Shard(*cell) for cell in grid]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    # A smoke run of the whole pipeline (under 2 minutes on 2 CPU cores): 400 steps cannot
    # reach the tasks' default pass criteria on the sine and cdi tasks, so quick relaxes
    # them (recorded in each shard's task config); its claims are a demonstration, the
    # reference preset's are the measurement.
    "quick": Preset(name="quick", hidden=(16,), seeds=2, steps=400, lr=1e-2, fixed_point_candidates=128,
                    task_params={"flipflop": {"pass_threshold": 0.99}, "sine": {"pass_threshold": 0.05},
                                 "cdi": {"pass_threshold": 0.05}}),
    # The paper's smallest size (64 units) at two of its L2 values, 1e-4 and 1e-3: the middle
    # of its grid 1e-5..1e-2, where regularisation shapes the solution. One training standard
    # for every group (docs/methods.md, "Training"): no member stops before step 1000, and a
    # member stops as trained only when it meets its task's target on the fixed held-out batch
    # and on 2 fresh ones; members still improving at step 3000 may take up to 1000 more.
    # 8 seeds per L2 value (16 members), topped up by up to two more rounds of 16 where fewer
    # than 16 passed. cdi first: its shards train longest.
    "reference": Preset(name="reference", tasks=("cdi", "flipflop", "sine"), hidden=(64,), l2=(1e-4, 1e-3),
                        seeds=8, steps=3000, min_passed=16, max_rounds=3, extend_steps=1000, min_steps=1000,
                        confirm=2),
    "paper": Preset(
        name="paper", hidden=(64, 128, 256), l2=(1e-5, 1e-4, 1e-3, 1e-2), seeds=10, steps=20000, lr=1e-3,
        min_steps=5000, confirm=2,
    ),
}


def load_preset(name_or_path: str) -> Preset:
    """A built-in preset by name, or a TOML file with the Preset fields, checked completely
    (:meth:`Preset.__post_init__`); errors name the file and the field."""
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise ValueError(f"unknown preset {name_or_path!r}: use one of {sorted(PRESETS)} or a TOML file path")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML ({err})") from None
    known = {f.name for f in fields(Preset)}
    if set(data) - known:
        raise ValueError(f"{path}: unknown preset fields {sorted(set(data) - known)}; valid: {sorted(known)}")
    data.setdefault("name", path.stem)
    for key in ("tasks", "archs", "activations", "hidden", "l2"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    try:
        return Preset(**data)
    except PresetError as err:
        raise PresetError(f"{path}: {err}") from None
