"""The end-to-end benchmark: presets and the pipeline behind ``universality run``."""

from __future__ import annotations

from .pipeline import run_preset as run_preset
from .presets import PRESETS as PRESETS
from .presets import Preset as Preset
from .presets import load_preset as load_preset
