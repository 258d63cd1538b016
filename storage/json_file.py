"""Reading the project's JSON files (manifest.json, run.json, best.json, .resume.json,
markers): the one reader, bounded before anything is parsed.

A file that is not a regular file (a FIFO or device would block or never end), is
larger than MAX_JSON_BYTES, is not JSON, or nests deeper than Python's parser
recurses (`[[[[...]]]]` raises RecursionError) is a `JsonFileError`, a ValueError,
so callers that tolerate a damaged file catch (OSError, ValueError) and nothing else.
"""

from __future__ import annotations

import json

from errors import DataError
from storage.bounded import UnboundedFile, read_bounded

# The largest JSON file the project reads: a manifest of a million-face data set is a
# few MB; a larger file is not one of ours, and parsing costs about twice its size.
MAX_JSON_BYTES = 64 << 20


class JsonFileError(ValueError):
    """A JSON file that cannot be read as one; the message says why (without the path)."""


def load_json(path: str, limit: int | None = None, follow_links: bool = True):
    """The value held by the JSON file `path`: OSError when it cannot be opened (or is a
    link and `follow_links` is False), JsonFileError when it is not a regular file, over `limit` bytes (MAX_JSON_BYTES
    unless given), not JSON or nested too deeply."""
    try:
        data = read_bounded(path, MAX_JSON_BYTES if limit is None else limit, follow_links)
    except UnboundedFile as e:
        raise JsonFileError(str(e)) from None
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
