"""Where the driver's jobs run: this process, a local process pool, or a Ray cluster.

A backend has ``submit(fn, job) -> Future``, ``threads`` (torch threads per job) and
``slots`` (how many training jobs the driver keeps submitted at once). Jobs
(:mod:`.stages`) take and return plain data, so the driver (:func:`~.driver.run_jobs`)
alone writes the run whichever backend runs them.

* :class:`InlineBackend`: in this process, one job at a time as it is submitted.
* :class:`LocalBackend`: ``workers`` single-threaded spawned processes.
* :class:`RayBackend` (``pip install "universality[ray]"``): Ray tasks named after the job
  function, asking for ``cpus_per_shard`` CPUs and ``gpus_per_shard`` GPUs; results come
  through Ray's object store, so the nodes share no filesystem. With no address it starts
  a local cluster on the loopback interface for the run and stops it after. A task whose
  worker process or node dies is run again by Ray (``max_retries``); since workers write
  nothing, a retried shard is stored once. Ray is imported here, lazily, and nowhere else.
"""

from __future__ import annotations

import functools
import logging
import math
import multiprocessing
import os
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError, ProcessPoolExecutor
from typing import Any, Protocol

import torch

from ..run.files import RunError

log = logging.getLogger(__name__)

#: ``slots`` of a backend that takes every job at once (it queues them itself).
UNLIMITED = 1 << 30


class Backend(Protocol):
    """Where worker jobs run."""

    threads: int  # torch threads per job
    slots: int  # training jobs submitted at once

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future[Any]:
        """A future of ``fn(job)``."""
        ...


class InlineBackend:
    """This process: ``submit`` runs the job at once and returns its finished future, so
    one shard is trained and written before the next starts; jobs keep the torch threads
    this process had when the backend was made."""

    slots = 1

    def __init__(self) -> None:
        self.threads = torch.get_num_threads()

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(job))
        return future


def _ignore_cancelled_job_race(hook: Callable[[threading.ExceptHookArgs], Any], args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook`` that drops the InvalidStateError a Python < 3.12 process
    pool's manager thread raises for a cancelled job (:meth:`LocalBackend.__exit__`)."""
    if args.exc_type is InvalidStateError:
        return
    hook(args)


class LocalBackend:
    """``workers`` single-threaded spawned processes on this machine.

    Ctrl-C reaches the whole process group, but only the driver acts on it: workers are
    started (lazily, by ``submit``) while SIGINT is *blocked* in the driver's thread, a mask
    a new process inherits and Python keeps; the driver's own Ctrl-C is held pending
    meanwhile, not lost, and delivered when the mask is lifted. Left by an exception
    (Ctrl-C included), the backend terminates its workers at once rather than letting them
    finish their jobs: nothing they hold was written, and a rerun resumes."""

    threads = 1
    slots = UNLIMITED

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalBackend:
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        assert self._pool is not None
        if exc_type is None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            return
        # Python < 3.12: the pool's manager thread, finding its workers terminated, sets an
        # exception on every queued job, including those the driver cancelled, and prints
        # the InvalidStateError that raises (fixed upstream in 3.12). Nothing is lost by it.
        hook = threading.excepthook
        threading.excepthook = functools.partial(_ignore_cancelled_job_race, hook)
        try:
            # no public way to stop running jobs before Python 3.14's terminate_workers()
            processes = list((getattr(self._pool, "_processes", None) or {}).values())
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            threading.excepthook = hook

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future[Any]:
        assert self._pool is not None, "use LocalBackend as a context manager"
        if threading.current_thread() is not threading.main_thread():  # signals belong to the main thread
            return self._pool.submit(fn, job)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return self._pool.submit(fn, job)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)


#: Set before Ray is imported, it makes a local cluster advertise and bind 127.0.0.1 only.
_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterError(RunError):
    """The Ray cluster cannot be reached or cannot run a shard (one line, exit 2)."""


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


#: The HTTP/2 client preface and an empty SETTINGS frame: a gRPC server (Ray's GCS)
#: answers with a SETTINGS frame (frame type 4).
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse within about ``timeout`` seconds a ``HOST:PORT`` where no gRPC server (Ray's
    GCS) answers: nobody listening, an unknown host, or another kind of server (Ray
    itself would retry for minutes). Skipped under ``RAY_USE_TLS``, whose handshake
    comes first."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"Ray address {address!r}: expected auto or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0") not in ("0", "", "false"):
                return
            sock.settimeout(timeout)
            sock.sendall(_HTTP2_HELLO)
            header = sock.recv(9)
    except OSError as err:
        raise ClusterError(f"no Ray cluster at {address} ({err.strerror or err})") from None
    if len(header) < 4 or header[3] != 4:
        raise ClusterError(f"no Ray cluster at {address} (something else listens there: not a Ray head's GCS port)")


class RayBackend:
    """A Ray cluster as a :class:`Backend`: ``with RayBackend(address) as b``
    connects (``address`` ``auto`` or ``HOST:PORT``; None starts a local cluster) and
    checks that some node offers ``cpus_per_shard`` CPUs and ``gpus_per_shard`` GPUs;
    leaving it disconnects (and stops a cluster it started)."""

    slots = UNLIMITED

    def __init__(self, address: str | None = None, cpus_per_shard: float = 1.0, gpus_per_shard: float = 0.0,
                 max_retries: int = 3, connect_timeout: float = 5.0) -> None:
        if cpus_per_shard <= 0 or gpus_per_shard < 0:
            raise ClusterError("--cpus-per-shard must be > 0 and --gpus-per-shard >= 0")
        self.address = address
        self.cpus = cpus_per_shard
        self.gpus = gpus_per_shard
        self.max_retries = max_retries
        self.connect_timeout = connect_timeout
        # torch threads per task: the whole CPUs it holds, at least one
        self.threads = max(1, math.floor(cpus_per_shard))
        self._remotes: dict[Callable[[Any], Any], Any] = {}
        self._submitted: list[Any] = []  # ObjectRefs, cancelled when the driver stops early
        self._ray: Any = None

    def __enter__(self) -> RayBackend:
        if self.address is None or (self.address != "auto" and _loopback(self.address.rpartition(":")[0])):
            os.environ.setdefault(_LOOPBACK_ONLY, "0")
        if self.address not in (None, "auto"):
            check_reachable(self.address, self.connect_timeout)
        try:
            import ray
        except ImportError:
            raise ClusterError('--backend ray needs Ray: pip install "universality[ray]"') from None
        self._ray = ray
        where = self.address or "a local cluster"
        try:
            if self.address is None:
                ray.init(include_dashboard=False, logging_level=logging.WARNING)
            else:
                ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise ClusterError(f"cannot connect to the Ray cluster at {where} ({str(err).splitlines()[0]})") from None
        try:
            self._check_resources(where)
        except BaseException:
            ray.shutdown()
            raise
        return self

    def _check_resources(self, where: str) -> None:
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        fits = [r for r in nodes if r.get("CPU", 0) >= self.cpus and r.get("GPU", 0) >= self.gpus]
        total_cpus = sum(r.get("CPU", 0) for r in nodes)
        total_gpus = sum(r.get("GPU", 0) for r in nodes)
        if not fits:
            largest: dict[str, float] = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
            raise ClusterError(f"no node of the Ray cluster at {where} has {self.cpus:g} CPU(s) and {self.gpus:g} "
                               f"GPU(s) for a shard (largest: {largest.get('CPU', 0):g} CPU(s), "
                               f"{largest.get('GPU', 0):g} GPU(s))")
        log.info("Ray cluster at %s: %d node(s), %g CPUs, %g GPUs; %g CPU(s) and %g GPU(s) per shard", where,
                 len(nodes), total_cpus, total_gpus, self.cpus, self.gpus)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Disconnect; left by an exception (Ctrl-C included), first cancel every task not
        yet finished, so that none keeps running on the cluster."""
        if self._ray is None:
            return
        if exc_type is not None:
            for ref in self._submitted:
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # a finished or lost task: nothing to cancel
                    pass
        self._ray.shutdown()

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future[Any]:
        """Run ``fn(job)`` as a Ray task (named after ``fn``) with the shard's resources."""
        if fn not in self._remotes:
            self._remotes[fn] = self._ray.remote(fn).options(num_cpus=self.cpus, num_gpus=self.gpus,
                                                           max_retries=self.max_retries)
        ref = self._remotes[fn].remote(job)
        self._submitted.append(ref)
        return ref.future()  # type: ignore[no-any-return]
