"""One writer per run directory: an advisory lock on ``DIR/run.lock``.

Every command that writes a run (``run``, ``train``, ``analyze``, ``reference``, ``check``)
holds the lock for as long as it runs; readers (``members``, ``verify``, ``report``) take
none. The lock is ``fcntl.flock`` on the file, which the kernel drops when its holder
exits, however it exits (SIGKILL included), so a lock can never outlive its holder on one
machine. The file's body (JSON: ``pid``, ``host``, ``command``, ``started``) names the holder
for the one-line refusal a second writer gets. A body found under a lock nobody holds was
left by a holder that was killed: it is taken over with a warning. The file is removed on
release, and a directory the lock itself created is removed too when nothing else was
written into it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .files import RunError
from .layout import LOCK, RunLayout

__all__ = ["LOCK", "LockedError", "run_lock"]

log = logging.getLogger(__name__)


class LockedError(RunError):
    """Another process is writing the run directory (one line, exit 2)."""


def _holder(fd: int) -> dict[str, Any]:
    """The JSON body of an open lock file, ``{}`` when empty or unreadable."""
    try:
        body = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(`{holder.get('command', '?')}`, started {holder.get('started', '?')})")


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _acquire(directory: Path, command: str) -> int:
    """Lock ``directory/run.lock`` and write this process into it; return the open fd."""
    path = RunLayout(directory).lock
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = _holder(fd)
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise RunError(f"{directory}: cannot lock {path} ({err.strerror or err})") from None
            raise LockedError(f"{directory} is being written by {_describe(holder)}; wait for it to end, or stop "
                              "it, then rerun") from None
        # A releasing holder unlinks the file before closing it: if we locked that unlinked
        # file, lock the new one instead.
        if _same_file(fd, path):
            break
        os.close(fd)
    stale = _holder(fd)
    if stale:
        log.warning("%s: taking over the lock left by %s, which is no longer running", directory, _describe(stale))
    body = json.dumps({"pid": os.getpid(), "host": platform.node(), "command": command,
                       "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")}).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, body, 0)
    os.fsync(fd)
    return fd


@contextmanager
def run_lock(directory: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Hold the write lock of the run directory ``directory`` (created if missing) while
    the block runs; :class:`LockedError` when another process holds it. ``command`` (the
    command line) is shown to a second writer."""
    path = Path(directory)
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunError(f"{path}: exists and is not a directory; choose another --out") from None
    fd = _acquire(path, command)
    try:
        yield path
    finally:
        RunLayout(path).lock.unlink(missing_ok=True)  # while still held: see _acquire
        os.close(fd)
        if created:
            try:
                path.rmdir()  # only when empty: a refused command leaves nothing behind
            except OSError:
                pass
