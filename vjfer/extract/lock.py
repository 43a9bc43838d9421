"""One lock file per rank keeps a second extraction off a cache being written (flock: the
kernel drops it when the process dies, so a killed run never leaves a stale lock).
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from vjfer.errors import CacheError


def _lock_path(directory: Path, rank: int) -> Path:
    return directory / f".extract-rank{rank}.lock"


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "an unknown process"
    except OSError:
        return "an unknown process"


class CacheLock:
    """An exclusive lock (flock) on a cache directory for one rank; the kernel drops it when the
    process dies, so a killed run never leaves a stale lock. The file names the holder."""

    def __init__(self, directory: Path, rank: int = 0):
        self.path = _lock_path(directory, rank)
        self.fd: int | None = None

    def acquire(self) -> CacheLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CacheError(
                f"{self.path.parent} is being written by another vjfer extract "
                f"({_lock_holder(self.path)}); wait for it to finish or stop it, then rerun "
                f"(it resumes from the finished shards)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def check_lock(directory: Path, rank: int = 0) -> None:
    """CacheError naming the holder when another process holds this rank's lock on `directory`."""
    CacheLock(directory, rank).acquire().release()
