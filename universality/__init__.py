"""universality: populations of RNNs, their geometry and their computational scaffold.

Public API (explicit re-exports; everything else is private to its module).
"""

from __future__ import annotations

from .cells import Cell as Cell
from .cells import ModuleCell as ModuleCell
from .cells import make_cell as make_cell
from .dynamics import FixedPointConfig as FixedPointConfig
from .dynamics import FixedPoints as FixedPoints
from .dynamics import find_fixed_points as find_fixed_points
from .geometry import distance as distance
from .geometry import mds as mds
from .geometry import pairwise_distances as pairwise_distances
from .geometry import separability as separability
from .population import Member as Member
from .population import Population as Population
from .run.catalog import MemberRow as MemberRow
from .run.catalog import RunStore as RunStore
from .run.catalog import package_version as _package_version
from .run.files import RunError as RunError
from .tasks import Task as Task
from .tasks import Trials as Trials
from .tasks import make_task as make_task
from .training import TrainConfig as TrainConfig
from .training import train as train

__version__ = _package_version()  # from the installed package metadata (pyproject.toml)
