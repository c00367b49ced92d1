"""The pipeline: plan -> submit -> write. Every job goes through the backend with the run's
device, workers write nothing, and a job recomputes a file exactly from plain data."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import pytest
import torch

from universality.pipeline.backends import InlineBackend
from universality.pipeline.config import load_preset
from universality.pipeline.driver import Plan, run_preset, stale_analyses
from universality.pipeline.stages import AnalysisJob, TaskJob, alive, analyse_job, analysis_config, task_job
from universality.run import files
from universality.run.catalog import RunStore
from universality.run.layout import SHARD_KINDS, TASK_KINDS

PRESET = ('tasks = ["flipflop"]\narchs = ["vanilla", "gru"]\nactivations = ["tanh"]\nhidden = [4]\nseeds = 2\n'
          'steps = 40\nlr = 0.01\nfixed_point_candidates = 16\n')


class Recording(InlineBackend):
    """Runs jobs in this process and records each job's function and device."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: list[tuple[str, str]] = []

    def submit(self, fn: Any, job: Any) -> Future[Any]:
        self.jobs.append((fn.__name__, job.device))
        return super().submit(fn, job)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    (root / "tiny.toml").write_text(PRESET)
    preset = load_preset(str(root / "tiny.toml"))
    backend = Recording()
    assert run_preset(preset, str(root / "run"), torch.device("cpu"), backend=backend) is not None
    return preset, RunStore(root / "run"), backend


def test_every_job_runs_on_the_backend_with_the_runs_device(run):
    _, _, backend = run
    assert [name for name, _ in backend.jobs] == ["train_job", "analyse_job", "train_job", "analyse_job", "task_job"]
    assert {device for _, device in backend.jobs} == {"cpu"}


def test_a_finished_run_has_nothing_stale_and_a_rerun_submits_nothing(run, tmp_path):
    preset, store, _ = run
    assert stale_analyses(store) == []
    backend = Recording()
    run_preset(preset, str(store.path), torch.device("cpu"), backend=backend)
    assert backend.jobs == []


def test_jobs_recompute_each_file_exactly_from_plain_data(run):
    preset, store, _ = run
    plan = Plan(store, analysis_config(preset))
    shard, shards = store.shards()[0], plan.tasks["flipflop"]
    assert plan.analysis_job(shard, "cpu", 1) is None and plan.task_job("flipflop", "cpu", 1) is None  # current
    record, rows = plan.records[shard], plan.rows[shard]
    made = analyse_job(AnalysisJob(shard, record.cell, record.task_config, record.hidden, [r.spec() for r in rows],
                                   alive(rows), store.layout.file(record.file).read_bytes(),
                                   {kind: plan.sources[(kind, shard)] for kind in SHARD_KINDS}, {}, plan.config,
                                   "cpu"))
    assert_same_files(made.files, {kind: store.layout.analysis(kind, shard).read_bytes() for kind in SHARD_KINDS})
    members = [(r.member, r.hidden, r.shard, r.idx) for r in plan.members("flipflop")]
    made = task_job(TaskJob("flipflop", members,
                            {s: store.layout.analysis("states", s).read_bytes() for s in shards},
                            {s: store.layout.analysis("scaffold", s).read_bytes() for s in shards},
                            {kind: plan.sources[(kind, "flipflop")] for kind in TASK_KINDS}, plan.config, "cpu"))
    assert_same_files(made.files, {kind: store.layout.analysis(kind, "flipflop").read_bytes() for kind in TASK_KINDS})


def assert_same_files(made: dict[str, bytes], stored: dict[str, bytes]) -> None:
    """The same tensors, bit for bit, and the same metadata (safetensors orders metadata keys
    arbitrarily, so the bytes themselves may differ)."""
    assert made.keys() == stored.keys()
    for kind in made:
        assert files.metadata(made[kind]) == files.metadata(stored[kind]), kind
        a, b = files.decode(made[kind]), files.decode(stored[kind])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) or (a[k].isnan() == b[k].isnan()).all()
                                            and torch.equal(a[k].nan_to_num(), b[k].nan_to_num()) for k in a), kind
