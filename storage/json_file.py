"""Reading a JSON file that must hold an object (a manifest, a run.json)."""

from __future__ import annotations

import json

from errors import DataError


def read_json_object(path: str, what: str, fix: str, error: type = DataError) -> dict:
    """A JSON file that must hold an object; anything else is one `error` line ending in `fix`."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise error(f"{path}: unreadable ({e}); {fix}") from e
    if not isinstance(value, dict):
        raise error(f"{path}: a JSON {type(value).__name__}, not {what}; {fix}")
    return value
