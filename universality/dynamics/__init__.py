"""Dynamics: fixed points, Jacobians and eigen-analysis, batched over whole populations."""

from __future__ import annotations

from .fixed_points import FixedPointConfig as FixedPointConfig
from .fixed_points import deduplicate as deduplicate
from .fixed_points import find_fixed_points as find_fixed_points
from .fixed_points import sample_initial_states as sample_initial_states
from .linearise import eigendecompose as eigendecompose
from .linearise import jacobians as jacobians
from .linearise import stability_index as stability_index
from .linearise import step_jacobians as step_jacobians
from .linearise import timescales as timescales
from .result import STATUSES as STATUSES
from .result import FixedPoints as FixedPoints
