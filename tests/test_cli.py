"""The command line, run in-process through ``main`` and once as a real subprocess."""

import json
import subprocess
import sys

import pytest

from universality.cli import main


def test_train_then_members_json(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--task", "flipflop", "--arch", "gru", "--hidden", "8", "--seeds", "2",
               "--l2", "0", "1e-4", "--steps", "5", "--batch-size", "8", "--out", str(out)])
    assert rc == 0
    assert main(["train", "--task", "sine", "--arch", "vanilla", "--activation", "relu", "--hidden", "4",
                 "--seeds", "1", "--steps", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["members", str(out), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5
    for key in ("member", "task", "arch", "activation", "hidden", "l2", "seed", "status", "loss", "score", "passed",
                "restarts"):
        assert all(key in r for r in rows), key
    assert [r["l2"] for r in rows[:4]] == [0.0, 0.0, 1e-4, 1e-4]
    assert rows[4]["arch"] == "vanilla" and rows[4]["activation"] == "relu" and rows[4]["task"] == "sine"
    assert {r["status"] for r in rows} <= {"trained", "failed", "diverged"}
    assert main(["members", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["member", "task", "arch"] and "restarts" in table[0] and len(table) == 6
    assert main(["verify", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 files with checksums checked, 0 damaged"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--task", "chess", "--arch", "gru", "--out", "X"], "invalid choice"),
        (["train", "--task", "sine", "--arch", "mamba", "--out", "X"], "invalid choice"),
        (["train", "--task", "sine", "--arch", "gru", "--hidden", "-3", "--out", "X"], "must be positive"),
        (["train", "--task", "sine", "--arch", "gru", "--l2", "-1", "--out", "X"], "must be >= 0"),
        (["train", "--task", "sine", "--arch", "gru", "--out", "FOREIGN"], "is not a universality run"),
        (["train", "--task", "sine", "--arch", "gru", "--device", "nonsense", "--out", "X"], "not available"),
        (["members", "MISSING"], "no such run directory"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "FOREIGN").mkdir()
    (tmp_path / "FOREIGN" / "data.csv").write_text("1,2")
    argv = [str(tmp_path / a) if a in {"X", "FOREIGN", "MISSING"} else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "universality", "members", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no such run directory" in proc.stderr
