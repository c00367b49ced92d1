"""``universality run --backend ray`` on a real local Ray cluster (2 CPUs, loopback only).

One cluster per module, started here; runs are CLI subprocesses that connect to it with
``--address`` (the equality test lets the CLI start and stop its own cluster). The local
reference run (``--workers 2``) is made once and every Ray run is held against it:
bit-identical weights, identical members and ``claims.json``.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

# Set before Ray is imported: the test cluster advertises and binds 127.0.0.1 only.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'universality[ray]'; tox -e ray)")

from universality.cli import main  # noqa: E402
from universality.run.catalog import RunStore  # noqa: E402

PRESET = """\
tasks = ["flipflop"]
archs = ["vanilla", "gru"]
activations = ["tanh", "relu"]
hidden = [8]
seeds = 2
steps = 300
lr = 0.01
fixed_point_candidates = 64
[task_params.flipflop]
pass_threshold = 0.99
"""
SHARDS = 4
MEMBERS = 2
#: Seconds before a whole Ray run is taken to hang. A hang guard, not a speed target: alone, this
#: file's tests take about 70 s in all, but Ray's workers run niced, and one run took over
#: 300 s on a VM whose two cores were busy with other jobs.
HANG_GUARD = 900


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "universality", *args]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def preset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("preset") / "tiny.toml"
    path.write_text(PRESET)
    return path


@pytest.fixture(scope="module")
def local_run(preset, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "run"
    assert main(["run", "--preset", str(preset), "--out", str(out), "--workers", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def cluster():
    """A 2-CPU Ray cluster on 127.0.0.1, hosted by this process: yields its address."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _same_run(run: Path, reference: Path) -> None:
    """Same shards in the same order, bit-identical weights, same members, same claims."""
    a, b = RunStore(run), RunStore(reference)
    assert a.shards() == b.shards()
    for shard in a.shards():
        wa, wb = load_file(run / a.shard_record(shard).file), load_file(reference / b.shard_record(shard).file)
        assert wa.keys() == wb.keys() and wa.keys() >= {"readout.weight", "readout.bias"}
        for key in wa:  # bit for bit (the file's header orders its metadata at random)
            assert wa[key].dtype == wb[key].dtype and wa[key].shape == wb[key].shape
            assert wa[key].numpy().tobytes() == wb[key].numpy().tobytes(), f"{shard} {key} differs"
    assert a.members() == b.members()
    assert (run / "report" / "claims.json").read_bytes() == (reference / "report" / "claims.json").read_bytes()


def _each_member_once(out: Path) -> None:
    rows = RunStore(out).members()
    assert len(rows) == SHARDS * MEMBERS
    assert len({(r.shard, r.idx) for r in rows}) == len(rows) == len({r.member for r in rows})
    for shard in RunStore(out).shards():
        assert sorted(r.seed for r in rows if r.shard == shard) == list(range(MEMBERS))


def test_ray_run_equals_the_local_run(preset, local_run, tmp_path):
    """No --address: the CLI starts a local cluster, runs, stops it; same answers."""
    out = tmp_path / "run"
    done = subprocess.run(_cli("-v", "run", "--preset", str(preset), "--out", str(out), "--backend", "ray"),
                          env=_env(), capture_output=True, text=True, timeout=HANG_GUARD)
    assert done.returncode == 0, done.stderr[-3000:]
    _same_run(out, local_run)
    store = RunStore(out)
    for shard in store.shards():  # provenance: where each shard trained
        origin = store.shard_record(shard).provenance
        assert origin["node_ip"] == "127.0.0.1" and origin["node"] and origin["pid"] != os.getpid()
        assert f"trained {shard} on " in done.stderr and f"analysed {shard} on " in done.stderr
    assert "report:" in done.stdout and "flipflop_scaffold" in done.stdout
    assert main(["verify", str(out)]) == 0


def _ray_tasks(name: str) -> list[int]:
    """Processes descending from this one (the cluster's workers) now running task ``name``."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace").strip()
            pid = int(entry.name)
            while pid > 1 and pid != me:
                pid = int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if pid == me and title == f"ray::{name}":
            found.append(int(entry.name))
    return found


def test_a_worker_killed_mid_shard_is_retried_and_nothing_is_lost_or_doubled(cluster, preset, local_run, tmp_path):
    out = tmp_path / "run"
    driver = subprocess.Popen(_cli("run", "--preset", str(preset), "--out", str(out), "--backend", "ray",
                                   "--address", cluster), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        deadline, victim = time.monotonic() + 120, None
        while victim is None and time.monotonic() < deadline and driver.poll() is None:
            running = _ray_tasks("train_job")
            if running:
                time.sleep(0.3)  # some way into the shard
                if running[0] in _ray_tasks("train_job"):
                    victim = running[0]
                    os.kill(victim, signal.SIGKILL)
            time.sleep(0.02)
        assert victim is not None, "no training task was seen running"
        stdout, stderr = driver.communicate(timeout=HANG_GUARD)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, stderr[-3000:]
    store = RunStore(out)
    # the killed shard was trained again by another worker process, and stored once
    assert victim not in {store.shard_record(s).provenance["pid"] for s in store.shards()}
    _each_member_once(out)
    _same_run(out, local_run)


def _catalog_shards(out: Path) -> list[str]:
    try:
        with sqlite3.connect(f"file:{out / 'catalog.sqlite'}?mode=ro", uri=True, timeout=1) as db:
            return [r[0] for r in db.execute("SELECT shard FROM shards")]
    except sqlite3.Error:
        return []


def test_a_killed_driver_resumes_without_training_anything_twice(cluster, preset, local_run, tmp_path):
    out = tmp_path / "run"
    args = _cli("-v", "run", "--preset", str(preset), "--out", str(out), "--backend", "ray", "--address", cluster)
    driver = subprocess.Popen(args, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not _catalog_shards(out) and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.02)
        assert driver.poll() is None, "the run ended before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    store = RunStore(out)
    trained = {s: (store.shard_record(s).file, store.shard_record(s).provenance) for s in store.shards()}
    assert 1 <= len(trained) < SHARDS
    analysed = {p: p.stat().st_mtime_ns for p in (out / "analysis").rglob("*.safetensors")
                if store.file_checksum(p) is not None}

    rerun = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=HANG_GUARD)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    store = RunStore(out)
    for shard, (file, origin) in trained.items():  # not trained again
        assert store.shard_record(shard).file == file and store.shard_record(shard).provenance == origin
        assert f"trained {shard} on " not in rerun.stderr
    for path, mtime in analysed.items():  # finished analyses not redone
        assert path.stat().st_mtime_ns == mtime
    _each_member_once(out)
    _same_run(out, local_run)
    assert main(["verify", str(out)]) == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("extra, message", [
    (["--address", f"127.0.0.1:{_free_port()}"], "no Ray cluster at 127.0.0.1:"),
    (["--address", "CLUSTER", "--cpus-per-shard", "3"], "has 3 CPU(s) and 0 GPU(s)"),
    (["--address", "CLUSTER", "--gpus-per-shard", "1", "--device", "cuda"], "has 1 CPU(s) and 1 GPU(s)"),
])
def test_a_bad_address_or_missing_resources_is_one_line_and_exit_2(cluster, preset, tmp_path, extra, message):
    extra = [cluster if a == "CLUSTER" else a for a in extra]
    start = time.monotonic()
    done = subprocess.run(_cli("run", "--preset", str(preset), "--out", str(tmp_path / "run"), "--backend", "ray",
                               *extra), env=_env(), capture_output=True, text=True, timeout=120)
    assert time.monotonic() - start < 30
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.startswith("universality")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "run").exists()  # a refused run leaves nothing behind


def test_ray_options_need_the_ray_backend(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "r"), "--address", "auto"]) == 2
    assert "need --backend ray" in capsys.readouterr().err
    assert main(["run", "--out", str(tmp_path / "r"), "--backend", "ray", "--workers", "2"]) == 2
    assert "--workers is for --backend local" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("not a run")
    assert main(["run", "--out", str(tmp_path / "notes"), "--backend", "ray"]) == 2  # refused before any cluster
    assert (tmp_path / "notes" / "mine.txt").read_text() == "not a run"
