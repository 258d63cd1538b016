"""The project's one temp-then-rename writer: every file it writes (manifests, run.json,
history.csv, reports, checkpoints' records, markers) appears whole or not at all."""

from __future__ import annotations

import contextlib
import os


def temp_name(name: str, pid: int | str | None = None) -> str:
    """The temporary `atomic_write` writes `name` through: `.NAME.tmp-PID` (the
    project's exact temp pattern; pid "" gives the prefix)."""
    return f".{name}.tmp-{os.getpid() if pid is None else pid}"


@contextlib.contextmanager
def atomic_write(path: str):
    """The project's one temp-then-rename writer: yields a temporary path next to
    `path` for the caller to write; on success it is fsynced and renamed over `path`
    (a reader sees the old file or the whole new one, never a torn write), on an
    exception it is removed and `path` is untouched.  The temporary is created
    exclusively (never through a link, never onto an existing file; one of this
    process's own name left by an earlier process of the same pid is replaced)."""
    tmp = os.path.join(os.path.dirname(path) or ".", temp_name(os.path.basename(path)))
    _create_exclusively(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def _create_exclusively(tmp: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileExistsError:        # our exact name and pid: a leftover of a dead process
        os.remove(tmp)             # (a link is removed, never followed)
        fd = os.open(tmp, flags, 0o644)
    os.close(fd)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """`data` to `path` through `atomic_write`."""
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
