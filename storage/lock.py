"""One writer per output directory: an exclusive `flock` on a hidden lock file
beside the output (`parent/.NAME.lock`).

    with OutputLock("shards/wiki"):        # DataError at once if another process holds it
        ...write shards/wiki (or its staging directory)...

The kernel releases the lock when the holder's process dies (kill -9, OOM
killer), so a crashed writer never leaves a stale lock behind; the file itself
stays (deleting it on release would let two processes lock two different
inodes of the same name).  The file is the project's only when it is a regular
file holding one "pid N on HOST" line: it is created whole (written under a
temporary `.NAME.lock.tmp-PID`, then hard-linked into place, which fails rather
than replace anything), opened without following a link, and anything else of
that name (a link, a user's file) is refused in one line, untouched.  A
temporary a kill left is removed by the next start once its process is gone.  The holder writes "pid N on HOST" into the file, and
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
import re
import socket
import stat

from errors import DataError

LOCK_SUFFIX = ".lock"
# One holder line; spaces after it are what a kill between overwriting a longer line and
# cutting it leaves (OutputLock.acquire pads, then cuts).
HOLDER_LINE = re.compile(rb"pid [0-9]+ on [^\n]{0,200}\n *")
_TEMP = re.compile(r"\.tmp-([0-9]+)")


def lock_path(output: str) -> str:
    """`parent/.NAME.lock` for the output directory `parent/NAME`."""
    parent, name = os.path.split(os.path.abspath(output))
    return os.path.join(parent, f".{name}{LOCK_SUFFIX}")


def _line() -> bytes:
    return f"pid {os.getpid()} on {socket.gethostname()}\n".encode()


def _open_existing(path: str) -> int:
    """The lock file at `path`, opened read-write without following a link; DataError
    unless it is a regular file of ours (FileNotFoundError when there is none)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise DataError(f"{path}: is a symbolic link where this project keeps its lock file; "
                            f"nothing was touched: remove the link (or choose another output)") from None
        raise
    try:
        st = os.fstat(fd)
        content = os.pread(fd, 512, 0) if stat.S_ISREG(st.st_mode) else None
    except BaseException:
        os.close(fd)
        raise
    if content is None or not HOLDER_LINE.fullmatch(content):
        os.close(fd)
        raise DataError(f"{path}: is in the way of this project's lock file and is not one "
                        f"(a lock holds one line \"pid N on HOST\"); nothing was touched: move it away "
                        f"(or choose another output)")
    return fd


def _remove_dead_temps(path: str) -> None:
    """The lock temporaries (`.NAME.lock.tmp-PID`, regular files) of processes that are gone."""
    parent, name = os.path.split(path)
    for entry in os.scandir(parent):
        m = entry.name.startswith(f"{name}.tmp-") and _TEMP.fullmatch(entry.name[len(name):])
        if not m or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(m.group(1))
        try:
            alive = pid == os.getpid() or (os.kill(pid, 0) is None)
        except ProcessLookupError:
            alive = False
        except PermissionError:
            alive = True
        if not alive:
            os.remove(entry.path)


def open_lock_file(path: str) -> int:
    """The lock file at `path` (created whole if absent), opened read-write; DataError for
    a link or a file that is not a lock of ours, OSError for a disk that refuses."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _remove_dead_temps(path)
    while True:
        try:
            return _open_existing(path)
        except FileNotFoundError:
            pass
        tmp = f"{path}.tmp-{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, _line())
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)              # fails if anything (even a dangling link) has the name
        except FileExistsError:
            pass                            # another process made it first: open theirs
        finally:
            os.remove(tmp)


def is_lock_file(path: str) -> bool:
    """True when `path` is a lock file of ours (a regular file holding one holder line)."""
    try:
        os.close(_open_existing(path))
        return True
    except (OSError, DataError):
        return False


def holder(output: str) -> str:
    """Who holds (or last held) the lock of `output`: "pid N on HOST", or ''."""
    try:
        fd = os.open(lock_path(output), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        content = os.pread(fd, 512, 0)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return content.decode("utf-8", "replace").strip() if HOLDER_LINE.fullmatch(content) else ""


class OutputLock:
    """An exclusive, non-blocking lock on one output directory (see the module doc).
    `acquire()` raises DataError naming the directory and the holder when the lock is
    taken; disk_errors=False lets an OSError of a disk that refuses the lock file through
    (for a caller naming it its own way)."""

    def __init__(self, output: str):
        self.output = output
        self.path = lock_path(output)
        self._fd: int | None = None

    def acquire(self, disk_errors: bool = True) -> "OutputLock":
        try:
            fd = open_lock_file(self.path)
        except OSError as e:
            if not disk_errors:
                raise
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
        line = _line()                      # written over, then cut: never empty, never torn to nothing
        os.pwrite(fd, line.ljust(max(len(line), os.fstat(fd).st_size)), 0)
        os.ftruncate(fd, len(line))
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
