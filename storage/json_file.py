"""Reading the project's JSON files (manifest.json, run.json, best.json, .resume.json,
markers): the one reader, bounded before anything is parsed.

A file that is not a regular file (a FIFO or device would block or never end), is
larger than MAX_JSON_BYTES, is not JSON, or nests deeper than Python's parser
recurses (`[[[[...]]]]` raises RecursionError) is a `JsonFileError`, a ValueError,
so callers that tolerate a damaged file catch (OSError, ValueError) and nothing else.
"""

from __future__ import annotations

import json
import os
import stat

from errors import DataError

# The largest JSON file the project reads: a manifest of a million-face data set is a
# few MB; a larger file is not one of ours, and parsing costs about twice its size.
MAX_JSON_BYTES = 64 << 20


class JsonFileError(ValueError):
    """A JSON file that cannot be read as one; the message says why (without the path)."""


def load_json(path: str, limit: int | None = None):
    """The value held by the JSON file `path`: OSError when it cannot be opened,
    JsonFileError when it is not a regular file, over `limit` bytes, not JSON or
    nested too deeply (`limit`: MAX_JSON_BYTES unless given).  Opened without blocking
    and checked by fstat before any read."""
    limit = MAX_JSON_BYTES if limit is None else limit
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise JsonFileError("not a regular file (a FIFO, device or directory); it was not read")
        if st.st_size > limit:
            raise JsonFileError(f"{st.st_size} bytes, more than the {limit} a JSON file of the project "
                                f"takes; it was not read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise JsonFileError(f"more than the {limit} bytes a JSON file of the project takes")
    try:
        return json.loads(data)
    except RecursionError:
        raise JsonFileError("nested too deeply to be a file of the project") from None


def read_json_object(path: str, what: str, fix: str, error: type = DataError,
                     limit: int | None = None) -> dict:
    """A JSON file that must hold an object; anything else is one `error` line ending in `fix`."""
    try:
        value = load_json(path, limit)
    except (OSError, ValueError) as e:
        raise error(f"{path}: unreadable ({e}); {fix}") from e
    if not isinstance(value, dict):
        raise error(f"{path}: a JSON {type(value).__name__}, not {what}; {fix}")
    return value
