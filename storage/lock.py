"""One writer per output directory: an exclusive `flock` on a hidden lock file
beside the output (`parent/.NAME.lock`).

    with OutputLock("shards/wiki"):        # DataError at once if another process holds it
        ...write shards/wiki (or its staging directory)...

The kernel releases the lock when the holder's process dies (kill -9, OOM
killer), so a crashed writer never leaves a stale lock behind; the file itself
stays (deleting it on release would let two processes lock two different
inodes of the same name).  The holder writes "pid N on HOST" into the file, and
a refused process names it.  The lock sits beside the output, not inside it, so
it survives the staging swap (`storage.outdir`) that replaces the directory.

Take the lock before forking helper processes or fork them first: a forked
child shares the open file description and so keeps the lock while it lives
(ingest starts its decode pool before locking).  In a multi-worker training
run only the chief takes the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket

from errors import DataError

LOCK_SUFFIX = ".lock"


def lock_path(output: str) -> str:
    """`parent/.NAME.lock` for the output directory `parent/NAME`."""
    parent, name = os.path.split(os.path.abspath(output))
    return os.path.join(parent, f".{name}{LOCK_SUFFIX}")


def holder(output: str) -> str:
    """Who holds (or last held) the lock of `output`: "pid N on HOST", or ''."""
    try:
        with open(lock_path(output), "rb") as f:
            return f.read(256).decode("utf-8", "replace").strip()
    except OSError:
        return ""


class OutputLock:
    """An exclusive, non-blocking lock on one output directory (see the module doc).
    `acquire()` raises DataError naming the directory and the holder when the lock is taken."""

    def __init__(self, output: str):
        self.output = output
        self.path = lock_path(output)
        self._fd: int | None = None

    def acquire(self) -> "OutputLock":
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise DataError(f"{self.output}: cannot create its lock file {self.path} "
                            f"({e.strerror}); choose an --out on a writable disk") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise DataError(f"{self.path}: cannot lock ({e.strerror})") from e
            who = holder(self.output) or "another process"
            raise DataError(f"{self.output}: already being written by {who} (lock {self.path}); "
                            f"wait for it to finish or choose another output directory") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)        # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
