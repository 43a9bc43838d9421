"""One writer per output: an exclusive lock (flock) on a lock file that names its holder. The
kernel drops the lock when the process dies, so a killed writer never leaves a stale lock; a lock
held by a live process refuses at once, naming it.

Used by both stages: one lock per rank keeps a second extraction off a cache
(`vjfer.extract.plan.cache_lock`), and one per run folder keeps a second probe, a `--force` or a
`--resume` off a run being written (`vjfer.probe.resume.staged_run`). flock is advisory and local:
on a shared file system that does not honour it (some NFS set-ups) it does not hold across hosts.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

from vjfer.errors import VjferError


def lock_holder(path: Path) -> str:
    """The holder a lock file names ("pid P on host H[ since T]"), or "an unknown process"."""
    try:
        return path.read_text(encoding="utf-8").strip() or "an unknown process"
    except OSError:
        return "an unknown process"


class FileLock:
    """An exclusive, non-blocking flock on `path`. `refusal(holder)` is the error raised when
    another open file description holds it. The file is rewritten to name the holder: "pid P on
    host H", with " since <UTC time>" when `since`. With `remove`, the file is deleted on release
    (while still locked), and an acquire that finds its file deleted or replaced under it retries on
    the new file, so no two holders ever lock different files of one path."""

    def __init__(
        self,
        path: Path,
        refusal: Callable[[str], VjferError],
        *,
        since: bool = False,
        remove: bool = False,
    ):
        self.path, self.refusal, self.since, self.remove = Path(path), refusal, since, remove
        self.fd: int | None = None

    def _holder(self) -> str:
        text = f"pid {os.getpid()} on host {socket.gethostname()}"
        if self.since:
            text += " since " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        return text

    def acquire(self) -> FileLock:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self.refusal(lock_holder(self.path)) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # removed by the holder that just released it: lock the new file
        os.ftruncate(fd, 0)
        os.write(fd, f"{self._holder()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            if self.remove:
                self.path.unlink(missing_ok=True)
            else:
                os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
