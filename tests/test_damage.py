"""Damaged run directories: every weights and analysis file is checked against the SHA-256
the catalog recorded; ``verify`` lists the damage, the other commands refuse it with one
line and exit 2, and ``run`` retrains / recomputes what is damaged, back to the same claims."""

import logging
import shutil
import sqlite3

import pytest

from universality.cli import main
from universality.run.cache import KINDS, WEIGHTS, dependents
from universality.run.catalog import RunStore

PRESET = ('tasks = ["flipflop"]\narchs = ["vanilla", "gru"]\nactivations = ["tanh"]\nhidden = [4]\nseeds = 2\n'
          'steps = 40\nlr = 0.01\nfixed_point_candidates = 16\n')


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("damage")
    preset = root / "tiny.toml"
    preset.write_text(PRESET)
    out = root / "run"
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 0
    return preset, out, (out / "report" / "claims.json").read_text()


def target(out, kind):
    """The file of ``kind`` (``weights`` or an analysis kind) of the run's second shard or its task."""
    store = RunStore(out)
    shard = store.shards()[1]
    if kind == WEIGHTS:
        return out / store.shard_record(shard).file
    return store.layout.analysis(kind, shard if KINDS[kind].per == "shard" else store.shard_record(shard).task)


def test_repair_follows_the_declared_dependencies():
    assert dependents(WEIGHTS) == list(KINDS)  # every analysis is computed from the weights
    assert dependents("states") == ["scaffold", "geometry", "topology"]
    assert dependents("fixed_points") == ["scaffold", "topology"]
    assert dependents("topology") == []


@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("kind", [WEIGHTS, *KINDS])
def test_damage_is_listed_refused_and_repaired_by_run(pristine, tmp_path, capsys, caplog, damage_file, kind, how):
    preset, original, claims = pristine
    out = tmp_path / "run"
    shutil.copytree(original, out)
    assert main(["verify", str(out)]) == 0
    capsys.readouterr()
    path = target(out, kind)
    damage_file(path, how)

    assert main(["verify", str(out)]) == 1
    listed = capsys.readouterr().out.splitlines()
    rel = path.relative_to(out).as_posix()
    assert listed[0] == f"{'weights' if kind == WEIGHTS else 'analysis'} {rel}: " \
                        f"{'missing' if how == 'delete' else 'checksum mismatch'}"
    assert listed[-1].endswith("retrains and recomputes them") and ", 1 damaged" in listed[-1]

    refused = ["analyze", str(out)] if kind == WEIGHTS else ["report", str(out)]
    assert main(refused) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "damaged" in err

    with caplog.at_level(logging.WARNING):
        assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert ("retraining it from its seeds" if kind == WEIGHTS else "is damaged") in said
    assert (out / "report" / "claims.json").read_text() == claims
    assert RunStore(out).damage() == []


def damage_catalog(out):
    """Overwrite 16 bytes at the start of the page holding the members table's root (a disk
    error in the middle of the catalog: SQLite's integrity check sees it, a read of the
    members table fails)."""
    catalog = out / "catalog.sqlite"
    db = sqlite3.connect(catalog)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'members'").fetchone()
    db.close()
    data = bytearray(catalog.read_bytes())
    start = (root - 1) * page_size
    data[start:start + 16] = b"\xab" * 16
    catalog.write_bytes(bytes(data))


def test_a_damaged_catalog_is_listed_refused_in_one_line_and_restored_by_run(pristine, tmp_path, capsys, caplog):
    preset, original, claims = pristine
    out = tmp_path / "run"
    shutil.copytree(original, out)
    weights = {p.name: p.read_bytes() for p in (out / "shards").iterdir()}
    damage_catalog(out)

    assert main(["verify", str(out)]) == 1
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("catalog catalog.sqlite: ") and "malformed" in listed[0]
    assert "restores it from its backup catalog.sqlite.bak" in listed[-1]
    for reader in (["members", str(out)], ["report", str(out)]):
        assert main(reader) == 2, reader
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "cannot read the catalog" in err

    with caplog.at_level(logging.WARNING):
        assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 0
    assert "restored the backup written at its last commit" in caplog.text
    assert {p.name: p.read_bytes() for p in (out / "shards").iterdir()} == weights  # nothing retrained
    assert (out / "report" / "claims.json").read_text() == claims
    assert (out / "catalog.sqlite.damaged").is_file()  # kept for whoever wants to look
    assert main(["verify", str(out)]) == 0


@pytest.mark.parametrize("command", ["run", "analyze", "train"])
def test_a_deleted_catalog_is_restored_by_any_writer(pristine, tmp_path, caplog, command):
    preset, original, claims = pristine
    out = tmp_path / "run"
    shutil.copytree(original, out)
    (out / "catalog.sqlite").unlink()
    assert main(["members", str(out)]) == 2  # a reader says what to do, and changes nothing
    argv = {"run": ["run", "--preset", str(preset), "--out", str(out), "--workers", "1"],
            "analyze": ["analyze", str(out), "--candidates", "16"],
            "train": ["train", "--task", "sine", "--arch", "gru", "--hidden", "4", "--seeds", "1", "--steps", "2",
                      "--out", str(out)]}[command]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0
    assert "catalog.sqlite: missing; restored the backup" in caplog.text
    assert RunStore(out).shards()[:2] == RunStore(original).shards()


def test_a_damaged_catalog_without_a_backup_is_refused_saying_what_to_do(pristine, tmp_path, capsys):
    preset, original, _ = pristine
    out = tmp_path / "run"
    shutil.copytree(original, out)
    damage_catalog(out)
    (out / "catalog.sqlite.bak").unlink()
    assert main(["verify", str(out)]) == 1
    assert "has no backup: move the directory away and run again" in capsys.readouterr().out
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no intact backup" in err and "run again" in err
