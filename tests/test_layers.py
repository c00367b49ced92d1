"""Layering: the science core and the pipeline never import the report's figures (nor matplotlib)."""

import subprocess
import sys

CORE = ["universality", "universality.tasks", "universality.cells", "universality.population",
        "universality.training", "universality.dynamics", "universality.scaffold", "universality.geometry",
        "universality.claims", "universality.run.catalog", "universality.pipeline.driver", "universality.cli",
        "universality.report.report", "universality.report.check"]


def test_the_core_imports_no_figures():
    code = (f"import importlib, sys\nfor m in {CORE!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'universality.report.figures'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
