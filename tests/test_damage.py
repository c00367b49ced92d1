"""Damaged run directories: every weights and analysis file is checked against the SHA-256
the catalog recorded; ``verify`` lists the damage, the other commands refuse it with one
line and exit 2, and ``run`` retrains / recomputes what is damaged, back to the same claims."""

import logging
import shutil

import pytest

from universality.cli import main
from universality.store import RunStore

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
    store = RunStore(out)
    shard = store.shards()[1]
    if kind == "weights":
        return out / store.shard_info(shard)["file"]
    return out / "analysis" / "scaffold" / f"{shard}.safetensors"


@pytest.mark.parametrize("how", ["truncate", "flip", "delete"])
@pytest.mark.parametrize("kind", ["weights", "analysis"])
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
    assert listed[0] == f"{kind} {rel}: {'missing' if how == 'delete' else 'checksum mismatch'}"
    assert listed[-1].endswith("retrains and recomputes them") and ", 1 damaged" in listed[-1]

    refused = ["analyze", str(out)] if kind == "weights" else ["report", str(out)]
    assert main(refused) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "damaged" in err

    with caplog.at_level(logging.WARNING):
        assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert ("retraining it from its seeds" if kind == "weights" else "is damaged") in said
    assert (out / "report" / "claims.json").read_text() == claims
    assert RunStore(out).damage() == []
