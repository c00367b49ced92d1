"""Run directories: round trips, provenance, clear errors, atomic writes."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from universality.cells import make_cell
from universality.population import Population
from universality.store import RunError, RunStore
from universality.tasks import make_task
from universality.training import TrainConfig, train


@pytest.fixture(scope="module")
def trained():
    pop = Population.create(make_cell("lstm"), make_task("flipflop"), 6, [3, 4], l2=[0.0, 1e-3])
    config = TrainConfig(steps=10, batch_size=8)
    return pop, config, train(pop, config)


def test_round_trip_gives_identical_outputs(tmp_path, trained):
    pop, config, result = trained
    store = RunStore.create(tmp_path / "run")
    store.save_population("a", pop, config.as_dict(), vars(result))
    again = RunStore(tmp_path / "run").load_population("a")
    assert again.members == pop.members
    trials = pop.task.sample(3, torch.Generator().manual_seed(0))
    for a, b in zip(pop.run(trials.inputs), again.run(trials.inputs), strict=True):
        assert torch.equal(a, b)
    rows = store.members()
    assert [r["status"] for r in rows] == result.status
    assert [r["seed"] for r in rows] == [3, 4] and [r["l2"] for r in rows] == [0.0, 1e-3]
    info = store.shard_info("a")
    assert info["task_config"] == pop.task.config()
    assert info["train_config"] == config.as_dict()
    for key in ("package_version", "torch_version", "device", "date", "threads", "seed"):
        assert key in info["provenance"]
    assert len(info["config_hash"]) == 16


def test_saving_a_shard_again_replaces_it(tmp_path, trained):
    pop, config, result = trained
    store = RunStore.create(tmp_path / "run")
    store.save_population("a", pop, config.as_dict(), vars(result))
    store.save_population("b", pop, config.as_dict(), vars(result))
    store.save_population("a", pop, config.as_dict(), vars(result))
    assert store.shards() == ["b", "a"]
    assert len(store.members()) == 4
    store.set_metrics({store.members()[0]["member"]: {"x": 1.5}})
    assert store.members()[0]["metrics"] == {"x": 1.5}


def test_clear_errors_for_missing_foreign_and_corrupt(tmp_path, trained):
    with pytest.raises(RunError, match="no such run directory"):
        RunStore(tmp_path / "nope")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("hi")
    with pytest.raises(RunError, match="not a universality run"):
        RunStore(tmp_path / "foreign")
    with pytest.raises(RunError, match="is not a universality run"):
        RunStore.create(tmp_path / "foreign")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "catalog.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(RunError, match="corrupt catalog"):
        RunStore(bad)
    (tmp_path / "alien").mkdir()
    db = sqlite3.connect(tmp_path / "alien" / "catalog.sqlite")
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.commit()
    db.close()
    with pytest.raises(RunError, match="not a universality run catalog"):
        RunStore(tmp_path / "alien")
    pop, config, result = trained
    store = RunStore.create(tmp_path / "run")
    store.save_population("a", pop, config.as_dict(), vars(result))
    weights = tmp_path / "run" / store.shard_info("a")["file"]
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(RunError, match="corrupt"):
        store.load_population("a")
    with pytest.raises(RunError, match="no shard"):
        store.load_population("zzz")


WRITER = textwrap.dedent(
    """
    import sys, torch
    from universality.cells import make_cell
    from universality.population import Population
    from universality.store import RunStore
    from universality.tasks import make_task
    store = RunStore.create(sys.argv[1])
    pop = Population.create(make_cell("gru"), make_task("flipflop"), 32, list(range(16)))
    res = {"status": ["failed"] * 16, "loss": [1.0] * 16, "score": [0.5] * 16, "passed": [False] * 16,
           "steps": [1] * 16}
    i = 0
    print("ready", flush=True)
    while True:
        for k in pop.params:
            pop.params[k].fill_(float(i))
        store.save_population("s", pop, {"version": i}, res)
        i += 1
    """
)


def test_a_run_killed_mid_write_is_never_corrupt(tmp_path):
    """SIGKILL a process that rewrites a shard in a loop; the run always opens and its
    weights always are those the committed catalog rows describe."""
    for attempt in range(4):
        path = tmp_path / f"run{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
        time.sleep(0.3 + 0.17 * attempt)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = RunStore(path)
        if not store.shards():
            continue
        pop = store.load_population("s")
        version = store.shard_info("s")["train_config"]["version"]
        values = {float(v.flatten()[0]) for v in pop.params.values()}
        assert values == {float(version)}, (values, version)
        json.dumps(store.members())
