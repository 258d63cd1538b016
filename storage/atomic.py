"""The project's one temp-then-rename writer: every file it writes (manifests, run.json,
history.csv, reports, checkpoints' records, markers) appears whole or not at all."""

from __future__ import annotations

import contextlib
import os


@contextlib.contextmanager
def atomic_write(path: str):
    """The project's one temp-then-rename writer: yields a temporary path next to
    `path` for the caller to write; on success it is fsynced and renamed over `path`
    (a reader sees the old file or the whole new one, never a torn write), on an
    exception it is removed and `path` is untouched."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """`data` to `path` through `atomic_write`."""
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
