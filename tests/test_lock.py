"""One writer per run directory: the lock of ``universality.run.lock``, held by every command that
writes, taken over when its holder was killed, never needed by readers."""

import json
import logging
import os
import platform
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from universality.cli import main
from universality.run.lock import LOCK, LockedError, run_lock

TINY = ('tasks = ["flipflop"]\narchs = ["gru"]\nactivations = ["tanh"]\nhidden = [4]\nseeds = 2\nsteps = 40\n'
        'lr = 0.01\nfixed_point_candidates = 16\n')

HOLDER = textwrap.dedent(
    """
    import sys, time
    from universality.run.lock import run_lock
    with run_lock(sys.argv[1], "holder"):
        print("locked", flush=True)
        time.sleep(3600)  # killed by the test that started it
    """
)


def wait_for_holder(directory, pid, timeout=600.0):
    """Wait until ``directory``'s lock file names ``pid`` (the process has taken the lock)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if json.loads((directory / LOCK).read_text() or "{}").get("pid") == pid:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"pid {pid} never took the lock of {directory}")


def files(run):
    """Path -> mtime of every file of ``run`` but the lock and the report (a reader writes it)."""
    return {p: p.stat().st_mtime_ns for p in run.rglob("*")
            if p.name != LOCK and p.relative_to(run).parts[0] != "report"}


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A small analysed and reported run, whose lock another process holds; the file
    listing (path -> mtime) before any test touched it."""
    root = tmp_path_factory.mktemp("lock")
    (root / "tiny.toml").write_text(TINY)
    run = root / "run"
    assert main(["run", "--preset", str(root / "tiny.toml"), "--out", str(run), "--workers", "1"]) == 0
    listing = files(run)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    yield run, proc.pid, listing
    proc.kill()
    proc.wait()


def test_two_real_runs_on_one_directory_one_is_refused_naming_the_other(tmp_path, caplog, capsys):
    """Two `universality run` processes on one directory: the second gets one line naming the
    first (pid, host, start time) and exit 2. The first, SIGKILLed, leaves its lock file:
    the next writer takes it over and says so."""
    preset = tmp_path / "long.toml"  # never ends by itself: no member may stop before step 100000
    preset.write_text(TINY.replace("steps = 40", "steps = 100000\nmin_steps = 100000"))
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "universality", "run", "--preset", str(preset), "--out", str(out), "--workers", "1"]
    first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_holder(out, first.pid)
        second = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        assert first.poll() is None  # still running: the refusal was the lock, not a finished run
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2, second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith("universality run: ") and "is being written by" in line
    body = json.loads((out / LOCK).read_text())  # the SIGKILLed holder's, left behind
    assert f"pid {first.pid} on host {platform.node()}" in line and f"started {body['started']}" in line
    assert "universality run --preset" in body["command"]

    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        assert main(["train", "--task", "flipflop", "--arch", "gru", "--hidden", "4", "--seeds", "1", "--steps", "5",
                     "--out", str(out)]) == 0
    said = " ".join(r.getMessage() for r in caplog.records)
    assert f"taking over the lock left by pid {first.pid}" in said and "no longer running" in said
    assert not (out / LOCK).exists()  # released


@pytest.mark.parametrize("command", ["run", "train", "analyze", "reference", "check"])
def test_every_writing_command_is_refused_while_another_process_writes(held, tmp_path, capsys, command):
    run, pid, listing = held
    argv = {
        "run": ["run", "--preset", "quick", "--out", str(run)],
        "train": ["train", "--task", "sine", "--arch", "gru", "--out", str(run)],
        "analyze": ["analyze", str(run)],
        "reference": ["reference", "--work", str(run), "--out", str(tmp_path / "export")],
        "check": ["check", "torch.nn:GRUCell", "--preset", "quick", "--reference",
                  "tests/data/recall_networks", "--out", str(run)],
    }[command]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"is being written by pid {pid} on host" in err, err
    assert files(run) == listing  # nothing written
    assert not (tmp_path / "export").exists()


def test_readers_need_no_lock(held, capsys):
    run, _, _ = held
    for reader in (["members", str(run)], ["verify", str(run)], ["report", str(run)]):
        assert main(reader) == 0, (reader, capsys.readouterr().err)


def test_a_lock_is_taken_over_only_from_a_dead_holder(tmp_path, caplog):
    directory = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    with pytest.raises(LockedError, match=f"pid {proc.pid} on host"):
        with run_lock(directory, "second"):
            pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((directory / LOCK).read_text())["pid"] == proc.pid  # the body outlives its holder
    with caplog.at_level(logging.WARNING), run_lock(directory, "third"):
        assert json.loads((directory / LOCK).read_text())["command"] == "third"
    assert f"taking over the lock left by pid {proc.pid}" in caplog.text
    # a lock released normally leaves nothing to take over
    caplog.clear()
    with caplog.at_level(logging.WARNING), run_lock(directory, "fourth"):
        pass
    assert caplog.text == "" and not (directory / LOCK).exists()


def test_a_directory_made_by_the_lock_is_removed_unless_written_to(tmp_path):
    with run_lock(tmp_path / "a" / "b", "test"):
        assert (tmp_path / "a" / "b" / LOCK).is_file()
    assert not (tmp_path / "a" / "b").exists()
    with run_lock(tmp_path / "c", "test"):
        (tmp_path / "c" / "kept.txt").write_text("x")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["kept.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(Exception, match="not a directory"):
        with run_lock(tmp_path / "file", "test"):
            pass
