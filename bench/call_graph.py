"""How often a walk of a preset through ``run_preset`` climbs back up the layers.

Runs the quick preset restricted to one task (flip-flop: 4 architectures x 2 activations,
16 units, 2 seeds, 400 steps) in this process, in temporary directories, twice: through
``universality run --workers 1`` and through ``run_preset`` with a backend that runs each
job in this process as it is submitted (the path of the worker jobs), with
``sys.setprofile`` recording every call between two functions of the package. Each
module belongs to a layer (:data:`LAYERS`, highest first: the command line; the driver and
the report; the backends; the stages, presets and claims; the run directory; its files;
the science core). A *climb* is a call from a module into a module of a higher layer (a
callback, or a lower layer reaching back up); a *re-entry* is a call into a module that is
already on the stack below the caller. Both are counted as distinct call sites (caller
function -> callee function) and as calls.

    python bench/call_graph.py            # the tree on sys.path
    PYTHONPATH=/old/tree python bench/call_graph.py

It knows the module names of the tree before the run directory and the pipeline had their
own packages (``universality.store``, ``universality.benchmark.*``) too, so the same count
can be made of both.
"""

from __future__ import annotations

import collections
import importlib
import sys
import tempfile
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch

#: Layer of each module prefix (longest prefix wins); anything else in the package is 0.
LAYERS = {
    "universality.cli": 6,
    "universality.pipeline.driver": 5, "universality.report": 5,
    "universality.benchmark.pipeline": 5, "universality.benchmark.report": 5, "universality.benchmark.check": 5,
    "universality.benchmark.reference": 5, "universality.plots": 5,
    "universality.pipeline.backends": 4, "universality.benchmark.ray_backend": 4,
    "universality.pipeline.stages": 3, "universality.pipeline.config": 3, "universality.claims": 3,
    "universality.benchmark.analyze": 3, "universality.benchmark.presets": 3, "universality.benchmark.claims": 3,
    "universality.verdicts": 3,
    "universality.run": 2, "universality.store": 2, "universality.lock": 2,
    "universality.run.files": 1, "universality.run.layout": 1, "universality.io": 1,
}

PRESET = """name = "quick"
tasks = ["flipflop"]
hidden = [16]
seeds = 2
steps = 400
lr = 1e-2
fixed_point_candidates = 128
[task_params.flipflop]
pass_threshold = 0.99
"""


class InProcess:
    """A backend running each job in this process as it is submitted."""

    threads = 1
    slots = 1

    def submit(self, fn: Any, job: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(job))
        return future


def run_preset() -> Any:
    """The driver's ``run_preset``, wherever the tree keeps it."""
    for module in ("universality.pipeline.driver", "universality.benchmark.pipeline"):
        try:
            return importlib.import_module(module).run_preset
        except ImportError:
            continue
    raise ImportError("no run_preset")


def load_preset(path: Path) -> Any:
    for module in ("universality.pipeline.config", "universality.benchmark.presets"):
        try:
            return importlib.import_module(module).load_preset(str(path))
        except ImportError:
            continue
    raise ImportError("no load_preset")


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    return 0 if best is None else LAYERS[best]


def walk() -> tuple[collections.Counter[tuple[str, str]], collections.Counter[tuple[str, str]]]:
    """Run the tiny preset under the profiler: (climbs, re-entries) as call-site counters."""
    from universality.cli import main

    climbs: collections.Counter[tuple[str, str]] = collections.Counter()
    reentries: collections.Counter[tuple[str, str]] = collections.Counter()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("universality"):
            return
        below = []
        f = frame.f_back
        while f is not None:
            name = f.f_globals.get("__name__", "")
            if name.startswith("universality"):
                below.append((name, f.f_code.co_qualname))
            f = f.f_back
        if not below or below[0][0] == module:
            return
        caller = f"{below[0][0]}.{below[0][1]}"
        callee = f"{module}.{frame.f_code.co_qualname}"
        if layer(module) > layer(below[0][0]):
            climbs[(caller, callee)] += 1
        if any(name == module for name, _ in below[1:]):
            reentries[(caller, callee)] += 1

    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "walk.toml"
        preset.write_text(PRESET)
        driver = run_preset()
        sys.setprofile(profile)
        try:
            code = main(["run", "--preset", str(preset), "--out", str(Path(tmp) / "cli"), "--workers", "1"])
            driver(load_preset(preset), str(Path(tmp) / "jobs"), torch.device("cpu"), backend=InProcess())
        finally:
            sys.setprofile(None)
    assert code == 0, code
    return climbs, reentries


def main() -> None:
    climbs, reentries = walk()
    for title, found in (("climbs (call into a higher layer)", climbs), ("re-entries", reentries)):
        print(f"{title}: {len(found)} call sites, {sum(found.values())} calls")
        for (caller, callee), n in sorted(found.items()):
            print(f"  {caller} -> {callee}  x{n}")


if __name__ == "__main__":
    main()
