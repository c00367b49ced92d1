"""The command line, run in-process through ``main`` and once as a real subprocess."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from universality.cli import main
from universality.run.catalog import RunStore


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


TINY = ('tasks = ["flipflop"]\narchs = ["gru"]\nactivations = ["tanh"]\nhidden = [4]\nseeds = 2\nsteps = 40\n'
        'lr = 0.01\nfixed_point_candidates = 16\n')
TRAIN = ["train", "--task", "flipflop", "--arch", "gru", "--hidden", "4", "--seeds", "2", "--steps", "5"]


def weights(out):
    return {p.name: p.read_bytes() for p in (out / "shards").iterdir()}


def test_train_into_a_stored_shard_is_refused_unless_replace(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TRAIN, "--out", str(out)]) == 0
    before = weights(out)
    assert main([*TRAIN, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds shard flipflop-gru-tanh-h4 (2 members" in err and "--replace" in err
    assert len(err.strip().splitlines()) == 1 and weights(out) == before
    assert main([*TRAIN, "--steps", "3", "--seeds", "3", "--replace", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "replaced shard flipflop-gru-tanh-h4: its 2 members" in said and "by 3 new ones" in said
    rows = RunStore(out).members()
    assert len(rows) == 3 and max(r.steps for r in rows) <= 3 and weights(out) != before


@pytest.mark.parametrize("change, differs", [
    ("steps = 80", "steps 40 -> 80"),
    ("seeds = 3", "members (seed, l2, lr) 2 (seeds 0-1, l2 [0.0], lr [0.01]) -> 3 (seeds 0-2"),
    ("lr = 0.02", "members (seed, l2, lr)"),
    ("archs = [\"gru\", \"lstm\"]\nsteps = 41", "steps 40 -> 41"),
    ("[task_params.flipflop]\np_pulse = 0.1", "p_pulse 0.05 -> 0.1"),
])
def test_run_refuses_a_directory_trained_with_other_settings(tmp_path, capsys, change, differs):
    first, other = tmp_path / "first.toml", tmp_path / "other.toml"
    first.write_text(TINY)
    other.write_text("\n".join(line for line in TINY.splitlines() if line.split(" =")[0] not in change) + "\n"
                     + change + "\n")
    out = tmp_path / "run"
    assert main(["run", "--preset", str(first), "--out", str(out), "--train-only"]) == 0
    before = weights(out)
    capsys.readouterr()
    assert main(["run", "--preset", str(other), "--out", str(out), "--train-only"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "holds networks trained with other settings" in err, err
    assert f"flipflop-gru-tanh-h4: {differs}" in err and "another --out" in err, err
    assert weights(out) == before and RunStore(out).shards() == ["flipflop-gru-tanh-h4"]


def test_run_accepts_the_same_settings_under_another_name_and_refuses_foreign_shards(tmp_path, capsys):
    first, renamed = tmp_path / "first.toml", tmp_path / "renamed.toml"
    first.write_text(TINY)
    renamed.write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", "--preset", str(first), "--out", str(out), "--train-only"]) == 0
    before = weights(out)
    assert main(["run", "--preset", str(renamed), "--out", str(out), "--train-only"]) == 0
    assert weights(out) == before  # resumed: nothing retrained
    assert main(["train", "--task", "flipflop", "--arch", "vanilla", "--hidden", "4", "--seeds", "1", "--steps", "2",
                 "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["run", "--preset", str(first), "--out", str(out), "--train-only"]) == 2
    err = capsys.readouterr().err
    assert "shard flipflop-vanilla-tanh-h4 is not part of preset 'first'" in err and len(err.splitlines()) == 1


def test_report_refuses_analyses_of_other_weights(tmp_path, capsys):
    preset, out = tmp_path / "tiny.toml", tmp_path / "run"
    preset.write_text(TINY)
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "1"]) == 0
    assert main(["report", str(out)]) == 0
    # the shard retrained with other settings: its stored analyses describe the old weights
    assert main([*TRAIN, "--steps", "41", "--replace", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "the analysis of shard flipflop-gru-tanh-h4 is not current" in err and "universality analyze" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["analyze", str(out), "--candidates", "16"]) == 0
    assert main(["report", str(out)]) == 0


def test_ctrl_c_is_one_line_exit_130_and_leaves_no_worker(tmp_path):
    """Ctrl-C (SIGINT to the process group, as a terminal sends it) during a run with two
    worker processes and more shards queued behind them: one line, exit 130, and no worker
    outlives the driver. The workers block SIGINT from their first instant (none can print
    a traceback of its own), and the queued jobs the driver cancels do not make the pool
    print one either."""
    preset = tmp_path / "long.toml"  # never ends by itself
    preset.write_text(TINY.replace('archs = ["gru"]', 'archs = ["gru", "vanilla", "lstm", "ugrnn"]')
                      .replace("steps = 40", "steps = 100000\nmin_steps = 100000"))
    proc = subprocess.Popen([sys.executable, "-m", "universality", "run", "--preset", str(preset), "--out",
                             str(tmp_path / "run"), "--workers", "2"], stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=sigint_default)
    try:
        deadline = time.monotonic() + 600  # generous: a loaded machine starts processes slowly
        workers: list[int] = []
        while len(workers) < 2:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
            workers = [c for c in children(proc.pid) if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]
        assert all(blocks_sigint(w) for w in workers)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=300) == 130
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group, should the test fail
        except ProcessLookupError:
            pass
        proc.wait()
    assert proc.stderr is not None
    assert proc.stderr.read().strip() == "universality run: interrupted; rerun the same command to resume"
    assert [w for w in workers if Path(f"/proc/{w}").exists()] == []


def sigint_default():
    """SIGINT at its default, as under a terminal (a shell's background job inherits it
    ignored, and a Python started so never raises KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def blocks_sigint(pid):
    """Whether process ``pid`` blocks or ignores SIGINT (SigBlk / SigIgn of /proc/PID/status)."""
    masks = [x.split()[1] for x in Path(f"/proc/{pid}/status").read_text().splitlines()
             if x.startswith(("SigBlk:", "SigIgn:"))]
    return any(int(m, 16) & (1 << (signal.SIGINT - 1)) for m in masks)


def children(pid):
    """The child process ids of ``pid`` (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except FileNotFoundError:  # a thread that just ended
            pass
    return out
