"""The report's figures: what every task shares (:mod:`.common`) and one figure module per
task, registered in :data:`FIGURES`. Imports matplotlib; imported only by the report."""

from __future__ import annotations

from . import cdi, flipflop, sine
from .common import FigureContext as FigureContext
from .common import FigureHook as FigureHook
from .common import mds_section as mds_section
from .common import trajectory_section as trajectory_section

#: Task name -> its figure module's hook (draws the task's own figures, returns Markdown).
FIGURES: dict[str, FigureHook] = {"flipflop": flipflop.figures, "sine": sine.figures, "cdi": cdi.figures}
