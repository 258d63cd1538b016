"""The sharded TFRecord writer: size-bounded shards that only get their final
name once complete.

Records are framed here without TensorFlow (`records.wire`), so ingest's writer
process never imports it. Records go to hidden temporary files (`.train-00003.tfrecord.tmp`); `finish()`
closes them, hashes them and renames them to `train-00003-of-00008.tfrecord`.
A killed writer therefore leaves only temporaries, which the next run deletes,
and the manifest (written after every split is finished) vouches for the rest.

Resuming: `on_shard_closed(index)` is called after each shard is complete and
fsynced (the next record did not fit); `completed()` then lists the finished
temporaries, and a new writer given `resume=completed()` keeps exactly those
(after re-checking their size and sha256) and continues with the next index,
so the result is byte-identical to an uninterrupted run fed the same records.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os

from records import schema, wire
from records.manifest import is_split_name
from storage.checksum import file_sha256

log = logging.getLogger(__name__)


def remove_split_files(directory: str, split: str, keep: tuple[str, ...] = ()) -> None:
    """Delete finished and temporary shards of `split` left by an earlier run
    (except the file names in `keep`). `split` must be a plain split name: one read
    from a manifest never widens what is deleted (a path or a pattern is refused)."""
    if not is_split_name(split):
        raise ValueError(f"split {split!r} is not a plain split name; nothing was removed")
    for path in glob.glob(os.path.join(directory, f"{split}-*{schema.SHARD_SUFFIX}")) + \
            glob.glob(os.path.join(directory, f".{split}-*.tmp")):
        if os.path.basename(path) not in keep:
            os.remove(path)


class ResumeMismatch(Exception):
    """A completed shard listed for resuming is missing or differs from its record."""


class ShardedWriter:
    """Streams serialized records of one split into shards of about `shard_bytes`."""

    def __init__(self, directory: str, split: str, *, shard_bytes: int,
                 on_shard_closed=None, resume: list[dict] | None = None):
        """resume: `completed()` of an interrupted writer of the same split and
        directory; raises ResumeMismatch if one of those shards changed."""
        if shard_bytes <= 0:
            raise ValueError(f"shard_bytes must be positive, got {shard_bytes}")
        self.directory, self.split, self.shard_bytes = directory, split, shard_bytes
        self.on_shard_closed = on_shard_closed
        resume = resume or []
        for index, shard in enumerate(resume):
            path = self._tmp_path(index)
            if shard["tmp"] != os.path.basename(path) or not os.path.isfile(path) or \
                    os.path.getsize(path) != shard["bytes"] or file_sha256(path) != shard["sha256"]:
                raise ResumeMismatch(f"{path}: missing or not the completed shard it was")
        os.makedirs(directory, exist_ok=True)
        remove_split_files(directory, split, keep=tuple(s["tmp"] for s in resume))
        self._tmp_paths: list[str] = [self._tmp_path(i) for i in range(len(resume))]
        self._counts: list[int] = [s["count"] for s in resume]
        self._hashes: list = [s["sha256"] for s in resume]  # hex when kept, else sha256 fed as written
        self._writer = None
        self._bytes_in_shard = 0

    def _tmp_path(self, index: int) -> str:
        return os.path.join(self.directory, f".{self.split}-{index:05d}{schema.SHARD_SUFFIX}.tmp")

    def write(self, record: bytes) -> None:
        if self._writer is None or self._bytes_in_shard >= self.shard_bytes:
            self._open_next()
        framed = wire.frame(record)
        self._writer.write(framed)
        self._hashes[-1].update(framed)
        self._counts[-1] += 1
        self._bytes_in_shard += len(framed)

    def _close_current(self) -> None:
        """Flush and fsync before the rename can ever happen: a renamed shard is on disk."""
        self._writer.flush()
        os.fsync(self._writer.fileno())
        self._writer.close()
        self._writer = None
        self._hashes[-1] = self._hashes[-1].hexdigest()

    def completed(self) -> list[dict]:
        """The closed (complete, fsynced) shards: [{"tmp", "count", "bytes", "sha256"}]."""
        done = len(self._tmp_paths) - (self._writer is not None)
        return [{"tmp": os.path.basename(p), "count": c, "bytes": os.path.getsize(p), "sha256": h}
                for p, c, h in zip(self._tmp_paths[:done], self._counts[:done], self._hashes[:done])]

    def discard_open(self) -> None:
        """Close and delete the shard being written (after a write error)."""
        if self._writer is not None:
            path = self._tmp_paths[-1]
            try:
                self._writer.close()
            except OSError:
                pass
            self._writer = None
            try:
                os.remove(path)
            except OSError:
                pass

    def _open_next(self) -> None:
        if self._writer is not None:
            self._close_current()
            if self.on_shard_closed is not None:
                self.on_shard_closed(len(self._tmp_paths) - 1)
        path = self._tmp_path(len(self._tmp_paths))
        self._writer = open(path, "wb")
        self._tmp_paths.append(path)
        self._counts.append(0)
        self._hashes.append(hashlib.sha256())
        self._bytes_in_shard = 0

    @property
    def count(self) -> int:
        return sum(self._counts)

    def finish(self) -> dict:
        """Close, hash and rename the shards; returns the manifest entry of this split
        `{"count", "shards": [{"file", "count", "bytes", "sha256"}]}`."""
        if not self._tmp_paths:
            raise ValueError(f"split {self.split!r} is empty: refusing to write a data set "
                             f"with no {self.split} records")
        if self._writer is not None:
            self._close_current()
        total = len(self._tmp_paths)
        shards = []
        for index, (tmp, count, sha) in enumerate(zip(self._tmp_paths, self._counts, self._hashes)):
            final = schema.shard_name(self.split, index, total)
            size = os.path.getsize(tmp)
            os.replace(tmp, os.path.join(self.directory, final))
            shards.append({"file": final, "count": count, "bytes": size, "sha256": sha})
            log.info("%s: %d records, %.1f MB", final, count, size / 1e6)
        if sum(s["count"] for s in shards) != self.count:  # the TFDS writer's post-check
            raise AssertionError(f"{self.split}: shard counts do not add up")
        return {"count": self.count, "shards": shards}
