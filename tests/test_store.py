"""Run directories: round trips, provenance, clear errors, atomic writes."""

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest
import torch

from universality.cells import make_cell
from universality.population import Population
from universality.run.catalog import MemberRow, RunStore
from universality.run.files import RunError
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
    store.save_population("a", pop, config.as_dict(), result)
    again = RunStore(tmp_path / "run").load_population("a")
    assert again.members == pop.members
    trials = pop.task.sample(3, torch.Generator().manual_seed(0))
    for a, b in zip(pop.run(trials.inputs), again.run(trials.inputs), strict=True):
        assert torch.equal(a, b)
    rows = store.members()
    assert [r.status for r in rows] == result.status
    assert [r.seed for r in rows] == [3, 4] and [r.l2 for r in rows] == [0.0, 1e-3]
    info = store.shard_record("a")
    assert info.task_config == pop.task.config()
    assert info.train_config == config.as_dict()
    for key in ("package_version", "torch_version", "device", "date", "threads", "seed"):
        assert key in info.provenance
    assert len(info.config_hash) == 16


def test_saving_a_shard_again_replaces_it_in_place(tmp_path, trained):
    pop, config, result = trained
    store = RunStore.create(tmp_path / "run")
    store.save_population("a", pop, config.as_dict(), result)
    store.save_population("b", pop, config.as_dict(), result)
    ids = [r.member for r in store.members("a")]
    store.save_population("a", pop, config.as_dict(), result)
    assert store.shards() == ["a", "b"]  # a replaced shard keeps its place and its members their ids
    assert [r.member for r in store.members("a")] == ids
    assert len(store.members()) == 4 and len(list((tmp_path / "run" / "shards").iterdir())) == 2
    store.set_metrics({store.members()[0].member: {"x": 1.5}})
    assert store.members()[0].metrics == {"x": 1.5}


def test_member_rows_are_typed_sorted_by_index_and_record_restarts(tmp_path, trained):
    pop, config, result = trained
    store = RunStore.create(tmp_path / "run")
    store.save_population("a", pop, config.as_dict(), dataclasses.replace(result, restarts=[2, 0]))
    rows = store.members("a")
    assert all(isinstance(r, MemberRow) for r in rows) and [r.idx for r in rows] == [0, 1]
    assert [r.restarts for r in rows] == [2, 0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rows[0].status = "trained"  # type: ignore[misc]
    with pytest.raises(ValueError, match="members"):
        store.save_population("b", pop, config.as_dict(), dataclasses.replace(result, status=["failed"]))


def test_a_catalog_without_the_restarts_column_opens_and_gains_it_on_write(tmp_path, trained):
    pop, config, result = trained
    store = RunStore.create(tmp_path / "run")
    store.save_population("a", pop, config.as_dict(), result)
    db = sqlite3.connect(tmp_path / "run" / "catalog.sqlite")
    db.execute("ALTER TABLE members DROP COLUMN restarts")
    db.execute("ALTER TABLE shards DROP COLUMN sha256")
    db.execute("DROP TABLE files")
    db.commit()
    db.close()
    old = RunStore(tmp_path / "run")
    assert [r.restarts for r in old.members()] == [0, 0] and old.shard_record("a").sha256 is None
    assert old.damage() == [] and old.load_population("a").members == pop.members  # unverified, still readable
    old.save_population("b", pop, config.as_dict(), result)
    assert [r.restarts for r in old.members()] == [0, 0, 0, 0] and old.shard_record("b").sha256
    assert old.meta("schema_version") == "2"


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_weights_are_detected_on_load_and_listed(tmp_path, trained, damage, damage_file):
    pop, config, result = trained
    store = RunStore.create(tmp_path / "run")
    store.save_population("a", pop, config.as_dict(), result)
    weights = tmp_path / "run" / store.shard_record("a").file
    damage_file(weights, damage)
    with pytest.raises(RunError, match="damaged|corrupt"):
        store.load_population("a")
    (found,) = store.damage()
    assert found.kind == "weights" and found.owner == "a"
    assert found.problem == ("missing" if damage == "delete" else "checksum mismatch")


WRITER = textwrap.dedent(
    """
    import sys, torch
    from universality.cells import make_cell
    from universality.population import Population
    from universality.run.catalog import RunStore
    from universality.tasks import make_task
    from universality.training import TrainResult
    store = RunStore.create(sys.argv[1])
    pop = Population.create(make_cell("gru"), make_task("flipflop"), 32, list(range(16)))
    res = TrainResult(status=["failed"] * 16, loss=[1.0] * 16, score=[0.5] * 16, passed=[False] * 16,
                      steps=[1] * 16, seconds=0.0)
    i = 0
    while True:
        for k in pop.params:
            pop.params[k].fill_(float(i))
        store.save_population("s", pop, {"version": i}, res)
        print(i, flush=True)  # save i is committed
        i += 1
    """
)


def test_a_run_killed_mid_write_is_never_corrupt(tmp_path):
    """SIGKILL a process that rewrites a shard in a loop, once it has committed 1, 2, 3, 4
    saves (it is then inside the next one); the run always opens, holds at least the last
    save reported, and its weights are those the committed catalog rows describe. So does
    the catalog's backup, one commit behind at most."""
    for attempt in range(4):
        path = tmp_path / f"run{attempt}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        committed = [int(proc.stdout.readline()) for _ in range(attempt + 1)][-1]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        store = RunStore(path)
        assert store.shards() == ["s"]
        pop = store.load_population("s")  # also checks the weights against their recorded SHA-256
        version = store.shard_record("s").train_config["version"]
        assert version >= committed
        values = {float(v.flatten()[0]) for v in pop.params.values()}
        assert values == {float(version)}, (values, version)
        assert store.damage() == []
        json.dumps([r.as_dict() for r in store.members()])
        # the catalog's backup holds the last or the second-to-last commit, and the weights it names
        (path / "catalog.sqlite").unlink()
        restored = RunStore.recover(path)
        backed_up = restored.shard_record("s").train_config["version"]
        assert backed_up in (version, version - 1)
        values = {float(v.flatten()[0]) for v in restored.load_population("s").params.values()}
        assert values == {float(backed_up)}, (values, backed_up)
