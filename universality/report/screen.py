"""The learning-rate screen: the training budget a new cell gets before ``check`` judges it.

The reference architectures were trained at one learning rate that suits them. A cell nobody
has tuned gets a small grid of rates instead, the same for every cell: by default the
preset's rate and a factor of 3 either side (:data:`GRID_FACTORS`; 1e-3, 3e-3 and 9e-3 for the
reference preset). Each rate trains the same :data:`SCREEN_SEEDS` fresh seeds per L2 value,
with the preset's whole schedule, on every hidden size of the preset.

The rate with the most passed networks is chosen. Ties go to the rate nearest the preset's on
a log scale, then to the smaller one, so a cell that passes nowhere is judged at the
preset's own rate. The cell's judged networks are then trained at that rate, with seeds of
their own (from ``preset.first_seed``). The screen's networks chose the rate, so they are
not judged: judging them would favour the chosen rate by construction. A grid of one rate
means no screen.

The screen runs are kept under the check's directory (``lr_screen/<task>-lr<rate>``); a
screen already trained there is reused, so an interrupted check resumes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from ..cells import ModuleCell
from ..pipeline.config import Preset, Shard
from ..pipeline.driver import train_shard
from ..run.catalog import RunStore

#: The grid around the preset's learning rate: one factor of 3 either side.
GRID_FACTORS = (1 / 3, 1.0, 3.0)
#: Fresh seeds per L2 value and rate in the screen.
SCREEN_SEEDS = 2
#: The screen's seeds start here, apart from the judged networks' seeds (0, 1, ...).
SCREEN_FIRST_SEED = 10_000
#: The screen's directory inside a check's run directory.
SCREEN_DIR = "lr_screen"


def default_grid(preset: Preset) -> tuple[float, ...]:
    """The preset's rate times :data:`GRID_FACTORS` (3 significant digits)."""
    return tuple(float(f"{preset.lr * f:.3g}") for f in GRID_FACTORS)


@dataclass(frozen=True)
class RateChoice:
    """The screen of one task: per rate of ``rates``, ``passed`` of ``trained`` networks;
    ``chosen`` the rate the judged networks train at (:func:`choose`)."""

    task: str
    rates: tuple[float, ...]
    passed: tuple[int, ...]
    trained: tuple[int, ...]
    chosen: float

    @property
    def screened(self) -> bool:
        return len(self.rates) > 1

    def summary(self) -> str:
        """E.g. ``lr 0.003, chosen from 0.001 (2/4), 0.003 (4/4), 0.009 (3/4) passed`` or
        ``lr 0.003 (one rate: no screen)``."""
        if not self.screened:
            return f"lr {self.chosen:g} (one rate: no screen)"
        per = ", ".join(f"{r:g} ({k}/{n})" for r, k, n in zip(self.rates, self.passed, self.trained, strict=True))
        return f"lr {self.chosen:g}, chosen from {per} passed in the screen"

    def as_dict(self) -> dict[str, object]:
        return {"task": self.task, "chosen": self.chosen,
                "screen": {f"{r:g}": [k, n] for r, k, n in zip(self.rates, self.passed, self.trained, strict=True)}}


def choose(rates: Sequence[float], passed: Sequence[int], preset_lr: float) -> float:
    """The rate with the most ``passed``; ties: nearest ``preset_lr`` in log (to 1e-9, so a
    grid symmetric in log is symmetric in floats too), then the smaller."""
    if not rates or len(rates) != len(passed):
        raise ValueError(f"need one pass count per rate, got {len(passed)} for {len(rates)} rates")
    return min(zip(rates, passed, strict=True),
               key=lambda rk: (-rk[1], round(abs(math.log(rk[0] / preset_lr)), 9), rk[0]))[0]


def screen_preset(preset: Preset, rate: float) -> Preset:
    """The screen's preset at ``rate``: one round of :data:`SCREEN_SEEDS` seeds per L2 value."""
    return replace(preset, lr=rate, seeds=SCREEN_SEEDS, first_seed=SCREEN_FIRST_SEED, min_passed=0, max_rounds=1)


def screen(cell: ModuleCell, preset: Preset, task: str, grid: Sequence[float], directory: Path,
           device: torch.device) -> RateChoice:
    """Train what is missing of ``task``'s screen under ``directory`` and choose the rate."""
    rates = tuple(grid)
    if len(rates) == 1:
        return RateChoice(task, rates, (0,), (0,), rates[0])
    passed, trained = [], []
    for rate in rates:
        at = screen_preset(preset, rate)
        store = RunStore.create(directory / f"{task}-lr{rate:g}")
        for hidden in at.hidden:
            shard = Shard(task, cell.arch, "custom", hidden)
            if shard.name not in store.shards():
                train_shard(store, at, shard, device, cell=cell)
            _refuse_other_settings(store, at, shard)
        rows = store.members()
        passed.append(sum(r.passed for r in rows))
        trained.append(len(rows))
    return RateChoice(task, rates, tuple(passed), tuple(trained), choose(rates, passed, preset.lr))


class ScreenError(ValueError):
    """A stored screen was trained with other settings than this check's."""


def _refuse_other_settings(store: RunStore, preset: Preset, shard: Shard) -> None:
    """Raise :class:`ScreenError` when ``store``'s shard is not the screen ``preset`` trains."""
    rows, record = store.members(shard.name), store.shard_record(shard.name)
    seeds, l2 = preset.round_members(0)
    stored = sorted((r.seed, r.l2, r.lr) for r in rows)
    wanted = sorted(zip(seeds, l2, [preset.lr] * len(l2), strict=True))
    if record.train_config.get("preset") != preset.name or stored != wanted:
        raise ScreenError(f"{store.path} holds a learning-rate screen trained with other settings (preset "
                          f"{record.train_config.get('preset')!r}); remove it to screen again")
