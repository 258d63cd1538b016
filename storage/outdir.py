"""Output directories this project writes: recognisable, built aside, swapped in.

Every writer (ingest's data set, the trainer's run directory, the feature
cache) follows the same three rules, implemented here once:

1. **Ours or refused.**  A writer drops the marker file `.dex-age` (JSON: kind,
   created) *first* into every directory it creates, so even an interrupted
   first run is recognisable.  `Output.check()` refuses (one-line DataError,
   nothing touched) an output path that is a file, or a non-empty directory
   without the marker (or without what `legacy` recognises).
2. **Built aside, swapped in.**  The new result is built in the staging
   directory `parent/.NAME.staging` (a fixed name, so the next run of the same
   command finds it again and may resume from it).  `swap_in()` then
       renames NAME -> .NAME.old, renames .NAME.staging -> NAME,
       moves back from .NAME.old what the writer does not own (user files; nested
       outputs such as a feature cache only if `keep_nested` says they still fit),
       renames .NAME.old -> .NAME.trash, deletes .NAME.trash (its marker last).
   Staging, old and trash are only touched when they carry the marker (or are
   empty): a user's folder or link of that name is refused by `check()`, untouched.
   A directory cannot be replaced atomically, so `repair()` (call it at every
   start, under the lock) finishes a swap that a crash interrupted: each state
   between two renames is recognisable from which of the names exist.
3. **One writer.**  `Output.lock()` is a `storage.lock.OutputLock` on the output.

Typical use (ingest):

    out = Output("shards/wiki", kind="images", owns=names_ingest_writes,
                 keep_nested=lambda old, new: same_shards(old, new))
    out.check()                        # before anything is touched
    with out.lock():
        out.repair()                   # finish an interrupted swap
        staging = out.start_staging()  # created with the marker inside
        ...write into staging...
        out.swap_in()

A trainer run directory is not swapped (it resumes in place): it uses
`check()`, `lock()` and `drop_marker()` only.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
from typing import Callable

from errors import DataError
from storage.atomic import atomic_write_bytes
from storage.json_file import load_json
from storage.lock import OutputLock

MARKER_NAME = ".dex-age"
STAGING_SUFFIX = ".staging"
OLD_SUFFIX = ".old"
TRASH_SUFFIX = ".trash"


def is_ours(directory: str) -> bool:
    """True when `directory` carries the marker this project drops first."""
    return os.path.isfile(os.path.join(directory, MARKER_NAME))


def write_mark(path: str, kind: str) -> None:
    """The marker's content ({kind, created}) at `path`."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    atomic_write_bytes(path, (json.dumps({"kind": kind, "created": created}) + "\n").encode())


def drop_marker(directory: str, kind: str) -> None:
    """Create `directory` (if needed) and write the marker into it before anything else."""
    os.makedirs(directory, exist_ok=True)
    write_mark(os.path.join(directory, MARKER_NAME), kind)


def marker_kind(directory: str) -> str | None:
    """The `kind` the marker of `directory` names, or None (no marker, unreadable)."""
    try:
        value = load_json(os.path.join(directory, MARKER_NAME))
        return value.get("kind") if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _is_ours_or_unborn(directory: str) -> bool:
    """Ours, or killed while its marker was being written (empty, or only the marker's temporary)."""
    if not os.path.isdir(directory) or os.path.islink(directory):
        return False
    return is_ours(directory) or all(n.startswith(MARKER_NAME) for n in os.listdir(directory))


def _remove_ours(directory: str) -> None:
    """Delete a directory of ours, its marker last: one a kill interrupts still carries it."""
    for entry in os.scandir(directory):
        if entry.name != MARKER_NAME:
            _remove(entry.path)
    _remove(directory)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


class Output:
    """One output directory and its siblings (staging, old, trash, lock); see the module doc.

    kind:        written into the marker (e.g. "images", "features", "run").
    owns:        name -> True for the top-level entries the writer makes (its
                 files are replaced by the swap; everything else is the user's).
    keep_nested: (old_dir, new_dir) -> bool for nested outputs (a
                 subdirectory with its own marker, or holding such directories,
                 e.g. `features/`, the feature caches of a data set): True
                 moves it into the new directory, False drops it with the old one.
    legacy:      directory -> bool, recognises outputs written before markers existed.
    what:        how messages name the output (e.g. "--out").
    """

    def __init__(self, path: str, *, kind: str, owns: Callable[[str], bool] = lambda name: True,
                 keep_nested: Callable[[str, str], bool] = lambda old, new: False,
                 legacy: Callable[[str], bool] = lambda directory: False, what: str = "output"):
        self.path = os.path.normpath(path)
        self.kind, self.owns, self.keep_nested = kind, owns, keep_nested
        self.legacy, self.what = legacy, what
        parent, name = os.path.split(os.path.abspath(self.path))
        self.staging = os.path.join(parent, f".{name}{STAGING_SUFFIX}")
        self.old = os.path.join(parent, f".{name}{OLD_SUFFIX}")
        self.trash = os.path.join(parent, f".{name}{TRASH_SUFFIX}")

    # --- rule 1: ours or refused ---------------------------------------------
    def check(self) -> None:
        """Refuse, touching nothing, an output that is a file or a foreign non-empty directory."""
        p = self.path
        if os.path.lexists(p) and not os.path.isdir(p):
            raise DataError(f"{self.what} {p}: is a file, not a directory; pass a new or "
                            f"empty directory (or one this project wrote)")
        if os.path.isdir(p) and os.listdir(p) and not (is_ours(p) or self.legacy(p)):
            raise DataError(f"{self.what} {p}: not empty and not written by this project "
                            f"(no {MARKER_NAME} marker); nothing was touched: pass a new or "
                            f"empty directory")
        for sibling, role in ((self.staging, "staging directory"), (self.old, "old copy"),
                              (self.trash, "trash")):
            if os.path.lexists(sibling) and not self._ours(sibling):
                raise DataError(f"{sibling}: is in the way of the {role} of {p} and was not "
                                f"written by this project (no {MARKER_NAME} marker); nothing was "
                                f"touched: move it away")

    def _ours(self, directory: str) -> bool:
        """A real directory (never a link) with the marker, empty, or a legacy output."""
        return _is_ours_or_unborn(directory) or (
            os.path.isdir(directory) and not os.path.islink(directory) and self.legacy(directory))

    # --- rule 3: one writer ----------------------------------------------------
    def lock(self) -> OutputLock:
        """An unacquired lock: `with out.lock(): ...` (DataError naming the holder)."""
        return OutputLock(self.path)

    # --- rule 2: staging and swap ----------------------------------------------
    def start_staging(self, keep: bool = False) -> str:
        """The staging directory, marker first.  keep=False empties a leftover one;
        keep=True leaves its contents for the caller to resume from."""
        if not keep and os.path.lexists(self.staging):
            _remove(self.staging)
        drop_marker(self.staging, self.kind)
        return self.staging

    def discard_staging(self) -> None:
        """Remove the staging directory (e.g. after a disk-full error), ignoring errors."""
        shutil.rmtree(self.staging, ignore_errors=True)

    def swap_in(self) -> None:
        """Replace the output by the finished staging directory (see the module doc)."""
        if not os.path.isdir(self.path):
            os.replace(self.staging, self.path)
            return
        os.replace(self.path, self.old)
        os.replace(self.staging, self.path)
        self._carry_and_delete_old()

    def repair(self) -> str | None:
        """Finish a swap a crash interrupted; returns what it did (for a log line) or None."""
        self.check()      # the siblings it would move or delete are ours (or refused, untouched)
        did = None
        if os.path.isdir(self.old):
            if not os.path.isdir(self.path):
                if os.path.isdir(self.staging):        # crashed between the two renames
                    os.replace(self.staging, self.path)
                    did = f"finished an interrupted swap: {self.path} is the newer result"
                else:                                   # never got further than the first
                    os.replace(self.old, self.path)
                    return f"restored {self.path} from an interrupted swap"
            did = did or f"finished cleaning up after an interrupted swap of {self.path}"
            self._carry_and_delete_old()
        if os.path.lexists(self.trash):
            _remove_ours(self.trash)
            did = did or f"removed the old copy an interrupted swap of {self.path} left behind"
        return did

    def _carry_and_delete_old(self) -> None:
        for name in sorted(os.listdir(self.old)):
            source, target = os.path.join(self.old, name), os.path.join(self.path, name)
            nested = os.path.isdir(source) and not os.path.islink(source) and (
                is_ours(source) or any(is_ours(e.path) for e in os.scandir(source) if e.is_dir()))
            if os.path.lexists(target) or (not nested and self.owns(name)):
                continue
            if nested and not self.keep_nested(self.old, self.path):
                continue
            os.replace(source, target)
        if not is_ours(self.old):            # a legacy output: marked, so its trash is recognised
            drop_marker(self.old, self.kind)
        os.replace(self.old, self.trash)     # past this point nothing in it is carried
        _remove_ours(self.trash)


def where_you_stand(path: str, what: str) -> str | None:
    """Why `path` cannot be an output that is built aside and renamed into place, or
    None: the current directory or a folder holding it (`.`, `..`, `/`) cannot be
    renamed over, and replacing it would pull the directory from under the shell."""
    here, target = os.path.realpath("."), os.path.realpath(path)
    if os.path.commonpath([here, target]) == target:
        return (f"{what} {path}: is the current directory or holds it ({target}); the output is "
                f"replaced whole, so name a folder of its own, e.g. {what} "
                f"{os.path.join(path, 'NAME') if path not in ('', '.') else 'NAME'}")
    return None
