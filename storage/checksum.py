"""File checksums: the sha256 a manifest records for each shard and source file."""

from __future__ import annotations

import hashlib


def file_sha256(path: str) -> str:
    return hash_file(hashlib.sha256(), path).hexdigest()


def hash_file(h, path: str, chunk: int = 1 << 20):
    """`h` (a hashlib object) updated with the bytes of the file at `path`, read in chunks."""
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h
