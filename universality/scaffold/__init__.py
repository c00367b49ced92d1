"""The computational scaffold per task: signatures, criteria, topology distances, homology."""

from __future__ import annotations

from . import cdi, flipflop, sine
from .base import Criterion as Criterion
from .base import Outcome as Outcome
from .base import Scaffold as Scaffold
from .base import ScaffoldSpec as ScaffoldSpec
from .base import StoredScaffold as StoredScaffold
from .base import distance_matrix as distance_matrix

#: Task name -> how its scaffold is computed, compared, judged and read back.
SCAFFOLDS: dict[str, ScaffoldSpec] = {spec.task: spec for spec in (flipflop.SPEC, sine.SPEC, cdi.SPEC)}
