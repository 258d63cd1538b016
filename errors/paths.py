"""A path that does not exist, named with the one the user probably meant.

`missing(path)` is the one message every path check of the project gives for a
path that is not there: `runs/smal-utk does not exist; did you mean runs/small-utk?`
when an existing path is one typo away (at most MAX_EDITS edits in one name, the
name compared with its folder's entries; a mistyped folder on the way is corrected
the same way), else `runs/smal-utk does not exist` and the fix the caller gives. Standard library only: every
command checks its paths before TensorFlow loads.
"""

from __future__ import annotations

import os

MAX_EDITS = 2          # a name this many single-character edits from an entry is "one typo away"
_LOOK_AT = 10_000      # entries of a folder compared at most (a huge folder is not scanned whole)


def edits(a: str, b: str, limit: int = MAX_EDITS) -> int:
    """The Levenshtein distance of `a` and `b`, or limit + 1 when it is larger."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return min(previous[-1], limit + 1)


def _closest_entry(folder: str, name: str) -> str | None:
    """The entry of `folder` fewest edits (at most MAX_EDITS) from `name`; ties: the first by name."""
    try:
        with os.scandir(folder or ".") as it:
            names = [e.name for _, e in zip(range(_LOOK_AT), it)]
    except OSError:
        return None
    scored = sorted((edits(name, n), n) for n in names if n != name)
    return scored[0][1] if scored and scored[0][0] <= MAX_EDITS else None


def nearest(path: str, depth: int = 8) -> str | None:
    """An existing path one typo (per name) away from `path`, which does not exist; None if none."""
    if depth <= 0 or not path:
        return None
    folder, name = os.path.split(os.path.normpath(path))
    if not name or name in (".", ".."):
        return None
    if folder and not os.path.isdir(folder):
        folder = nearest(folder, depth - 1)
        if folder is None:
            return None
        if os.path.lexists(os.path.join(folder, name)):
            return os.path.join(folder, name)
    entry = _closest_entry(folder, name)
    return os.path.join(folder, entry) if entry is not None else None


def missing(path: str, fix: str | None = None) -> str:
    """`PATH does not exist; did you mean OTHER?` when one is one typo away, else
    `PATH does not exist` and `; fix` (what to pass or run instead) when given."""
    near = nearest(path)
    if near:
        return f"{path} does not exist; did you mean {near}?"
    return f"{path} does not exist" + (f"; {fix}" if fix else "")
