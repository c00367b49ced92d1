"""A fourth task takes its task module, its scaffold module and its figure module, each
registered once, and then runs through ``universality run``, the claims and the report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from torch import Tensor

from universality.claims import Claim
from universality.cli import main
from universality.report.figures import FIGURES, FigureContext
from universality.scaffold import SCAFFOLDS, Criterion, Scaffold, ScaffoldSpec
from universality.scaffold.base import l1_distance
from universality.tasks import TASKS, Task


# ---------------------------------------------------------------------- the task module
@dataclass(frozen=True)
class Echo(Task):
    """Repeat the input: ``y(t) = x(t)`` for ``x ~ N(0, 1)``, ``[B, T, 1]``; NMSE."""

    name: ClassVar[str] = "echo"
    title: ClassVar[str] = "the echo"

    n_time: int = 10
    pass_threshold: float = 0.5

    @property
    def input_size(self) -> int:
        return 1

    @property
    def output_size(self) -> int:
        return 1

    def sample_inputs(self, batch_size: int, generator: torch.Generator) -> Tensor:
        return torch.randn(batch_size, self.n_time, 1, generator=generator, device=generator.device)

    def target(self, inputs: Tensor) -> Tensor:
        return inputs

    def conditions(self) -> Tensor:
        return torch.zeros(1, 1)

    def condition_labels(self) -> list[str]:
        return ["zero input"]


# ---------------------------------------------------------------------- the scaffold module
@dataclass(frozen=True)
class EchoNumbers:
    n_stable: int


def compute(population, fixed_points, config=None) -> list[Scaffold]:
    stable = (fixed_points.mask & fixed_points.fixed & (fixed_points.index == 0))[:, 0].sum(-1)  # [P]
    found = fixed_points.mask[:, 0].sum(-1)
    out = []
    for m in range(len(population)):
        canonical, criteria = SPEC.judge({"rests": int(stable[m]) == 1})
        out.append(Scaffold("echo", canonical, criteria, {"n_stable": int(stable[m])},
                            np.array([min(int(stable[m]), 3)], dtype=np.float64), np.array([float(found[m])])))
    return out


class EchoScaffold(ScaffoldSpec):
    task = "echo"
    criteria = (Criterion("rests", "One stable fixed point at zero input.", "An echo keeps nothing."),)
    numbers = EchoNumbers
    universal_kind = "rests"
    compute = staticmethod(compute)
    distance = staticmethod(l1_distance)

    def classify(self, scaffold):
        n = scaffold.numbers.n_stable
        if scaffold.canonical:
            return "rests", "one resting state at zero input"
        return ("no_rest", "no stable state at zero input") if n == 0 else ("several_rests", f"{n} stable states")


SPEC = EchoScaffold()


# ---------------------------------------------------------------------- the figure module
def figures(ctx: FigureContext) -> list[str]:
    stable = [ctx.scaffolds[r.member].numbers.n_stable for r in ctx.passed]
    return [f"Echo networks with one resting state: {stable.count(1)}/{len(stable)}", ""]


@pytest.fixture
def echo_registered(monkeypatch):
    monkeypatch.setitem(TASKS, "echo", Echo)
    monkeypatch.setitem(SCAFFOLDS, "echo", SPEC)
    monkeypatch.setitem(FIGURES, "echo", figures)


def test_a_fourth_task_runs_through_run_claims_and_report(tmp_path, echo_registered, capsys):
    preset = tmp_path / "echo.toml"
    preset.write_text('tasks = ["echo", "flipflop"]\narchs = ["vanilla", "gru"]\nactivations = ["tanh"]\n'
                      'hidden = [4]\nseeds = 2\nsteps = 150\nlr = 0.01\nfixed_point_candidates = 32\n'
                      '[task_params.flipflop]\npass_threshold = 0.5\n')
    out = tmp_path / "run"
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 0
    claims = [Claim.from_dict(c) for c in json.loads((out / "report" / "claims.json").read_text())]
    echo = {(c.claim, c.group) for c in claims if c.claim.startswith("echo") or c.group == "echo"}
    assert {("echo_scaffold", "all"), ("geometry_architecture", "echo"), ("topology_architecture", "echo"),
            ("dynamics_architecture", "echo")} <= echo
    # the registry's order: the built-in tasks first, then the new one
    assert [c.group for c in claims if c.claim == "geometry_architecture"] == ["flipflop", "echo"]
    report = (out / "report" / "report.md").read_text()
    assert "## Task: echo" in report and "| echo | gru | tanh |" in report
    assert "sign accuracy for the flip-flop, NMSE for the echo" in report
    assert "Echo networks with one resting state:" in report  # its figure module ran
    assert "`rests`: One stable fixed point at zero input." in report
    assert (out / "report" / "figures" / "echo_trajectories.png").is_file()
    assert "echo_scaffold" in capsys.readouterr().out


def test_a_task_without_its_figure_module_is_refused(tmp_path, echo_registered, monkeypatch):
    preset = tmp_path / "echo.toml"
    preset.write_text('tasks = ["echo"]\narchs = ["vanilla"]\nactivations = ["tanh"]\nhidden = [4]\nseeds = 2\n'
                      'steps = 20\nfixed_point_candidates = 16\n')
    monkeypatch.delitem(FIGURES, "echo")
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="no figure module"):
        main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"])
