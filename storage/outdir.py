"""Output directories this project writes: recognisable, built aside, swapped in.

Every writer (ingest's data set, the trainer's run directory, the feature
cache) follows the same three rules, implemented here once:

1. **Ours or refused.**  A writer drops the marker file `.dex-age` (exactly the
   JSON object {kind, created}, a regular file, written through storage.atomic)
   *first* into every directory it creates, so even an interrupted first run is
   recognisable.  Nothing else makes a directory the project's: no file name, no
   look-alike content.  `Output.check()` refuses (one-line DataError, nothing
   touched) an output path that is a link or a file, a non-empty directory
   without the marker, or a marked one of another kind.  A directory killed
   before its marker was in place is "unborn": empty, or holding only the
   marker's temporaries (`..dex-age.tmp-PID`, storage.atomic's exact name), which
   the next start removes.
2. **Built aside, swapped in.**  The new result is built in the staging
   directory `parent/.NAME.staging` (a fixed name, so the next run of the same
   command finds it again and may resume from it).  `swap_in()` then
       renames NAME -> .NAME.old, renames .NAME.staging -> NAME,
       moves back from .NAME.old what the writer does not own (user files; nested
       outputs, the subdirectories of a `nested` folder marked with its kind such
       as a feature cache `features/NAME`, only if `keep_nested` says they still
       fit; any other folder, even one holding a copy of an output, is the user's
       and moves back whole),
       renames .NAME.old -> .NAME.trash, deletes .NAME.trash (its marker last).
   Staging, old and trash are only touched when they carry the marker of the
   output's kind (or are unborn): a user's folder or link of that name is refused
   by `check()`, untouched.
   A directory cannot be replaced atomically, so `repair()` (call it at every
   start, under the lock) finishes a swap that a crash interrupted: each state
   between two renames is recognisable from which of the names exist.
3. **One writer.**  `Output.lock()` is a `storage.lock.OutputLock` on the output.

Typical use (ingest):

    out = Output("shards/wiki", kind="images", owns=names_ingest_writes, nested={"features": "features"},
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
import re
import shutil
from typing import Callable

from errors import DataError
from storage.atomic import atomic_write_bytes, temp_name
from storage.json_file import load_json
from storage.lock import OutputLock, is_lock_file, lock_path

MARKER_NAME = ".dex-age"
STAGING_SUFFIX = ".staging"
OLD_SUFFIX = ".old"
TRASH_SUFFIX = ".trash"
MARKER_MAX_BYTES = 1024     # the marker is one short JSON object
# The temporary a kill inside write_mark leaves: storage.atomic's exact name for the marker.
MARKER_TEMP = re.compile(re.escape(temp_name(MARKER_NAME, "")) + r"[0-9]+")


def read_mark(path: str) -> str | None:
    """The `kind` of the mark file `path`, or None unless it is exactly one of ours: a
    regular file (never read through a link) holding the JSON object {kind, created}
    that write_mark writes."""
    try:
        value = load_json(path, MARKER_MAX_BYTES, follow_links=False)
    except (OSError, ValueError):
        return None
    if isinstance(value, dict) and set(value) == {"kind", "created"} and \
            isinstance(value["kind"], str) and isinstance(value["created"], str):
        return value["kind"]
    return None


def is_ours(directory: str) -> bool:
    """True when `directory` (a real directory, never a link) carries the marker this
    project drops first."""
    return marker_kind(directory) is not None


def write_mark(path: str, kind: str) -> None:
    """The marker's content ({kind, created}) at `path`."""
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    atomic_write_bytes(path, (json.dumps({"kind": kind, "created": created}) + "\n").encode())


def drop_marker(directory: str, kind: str) -> None:
    """Create `directory` (if needed) and write the marker into it before anything else;
    the temporaries of a marker write a kill interrupted are removed after it."""
    os.makedirs(directory, exist_ok=True)
    write_mark(os.path.join(directory, MARKER_NAME), kind)
    remove_marker_temps(directory)


def marker_kind(directory: str) -> str | None:
    """The `kind` the marker of `directory` names, or None (no marker, not one of ours,
    a link)."""
    if os.path.islink(directory) or not os.path.isdir(directory):
        return None
    return read_mark(os.path.join(directory, MARKER_NAME))


def _marker_temps(directory: str) -> list[os.DirEntry]:
    return [e for e in os.scandir(directory)
            if MARKER_TEMP.fullmatch(e.name) and e.is_file(follow_symlinks=False)]


def remove_marker_temps(directory: str) -> list[str]:
    """Remove the marker temporaries (storage.atomic's exact name for `.dex-age`, regular
    files) a kill inside write_mark left in `directory`; their names."""
    removed = []
    for entry in _marker_temps(directory):
        os.remove(entry.path)
        removed.append(entry.name)
    return removed


def is_unborn(directory: str) -> bool:
    """A real directory killed before its marker was in place: empty, or holding only
    marker temporaries (nothing in it can be anyone's work)."""
    if os.path.islink(directory) or not os.path.isdir(directory):
        return False
    names = os.listdir(directory)
    return len(_marker_temps(directory)) == len(names)


def remove_ours(directory: str) -> None:
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
    nested:      {folder name: marker kind} of nested outputs (e.g. {"features":
                 "features"}: the feature caches of a data set, `features/NAME`, each
                 marked with that kind); nothing else is nested.
    keep_nested: (old_dir, new_dir) -> bool: True moves the nested outputs into the
                 new directory, False drops them with the old one (anything else in
                 their folder is the user's and moves over).
    what:        how messages name the output (e.g. "--out").
    """

    def __init__(self, path: str, *, kind: str, owns: Callable[[str], bool] = lambda name: True,
                 nested: dict[str, str] | None = None,
                 keep_nested: Callable[[str, str], bool] = lambda old, new: False, what: str = "output"):
        self.path = os.path.normpath(path)
        self.kind, self.owns, self.nested, self.keep_nested = kind, owns, nested or {}, keep_nested
        self.what = what
        parent, name = os.path.split(os.path.abspath(self.path))
        self.staging = os.path.join(parent, f".{name}{STAGING_SUFFIX}")
        self.old = os.path.join(parent, f".{name}{OLD_SUFFIX}")
        self.trash = os.path.join(parent, f".{name}{TRASH_SUFFIX}")

    # --- rule 1: ours or refused ---------------------------------------------
    def check(self) -> None:
        """Refuse, touching nothing, an output that is a link or a file, a foreign
        non-empty directory, another kind of output of ours, or a sibling in the way."""
        p = self.path
        if os.path.islink(p):
            raise DataError(f"{self.what} {p}: is a symbolic link (to {os.path.realpath(p)}); nothing was "
                            f"touched: pass the folder it points to, or a new directory")
        if os.path.lexists(p) and not os.path.isdir(p):
            raise DataError(f"{self.what} {p}: is a file, not a directory; pass a new or "
                            f"empty directory (or one this project wrote)")
        if os.path.isdir(p) and not (is_ours(p) or is_unborn(p)):
            raise DataError(f"{self.what} {p}: not empty and not written by this project "
                            f"(no {MARKER_NAME} marker); nothing was touched: pass a new or "
                            f"empty directory")
        kind = marker_kind(p)
        if kind not in (None, self.kind):
            raise DataError(f"{self.what} {p}: holds a {kind} output of this project, not a {self.kind} "
                            f"one; nothing was touched: choose another {self.what}")
        for sibling, role in ((self.staging, "staging directory"), (self.old, "old copy"),
                              (self.trash, "trash")):
            if os.path.lexists(sibling) and not self._ours(sibling):
                raise DataError(f"{sibling}: is in the way of the {role} of {p} and was not "
                                f"written by this project (no {MARKER_NAME} marker of kind "
                                f"{self.kind!r}); nothing was touched: move it away")

    def _ours(self, directory: str) -> bool:
        """A real directory (never a link) with the marker of this kind, or unborn."""
        return marker_kind(directory) == self.kind or is_unborn(directory)

    def _nested_outputs(self, folder: str) -> list[str]:
        """The nested outputs in `folder` of the old copy (a real, unmarked directory named
        in `nested`): its subdirectories marked with that folder's kind."""
        kind = self.nested.get(os.path.basename(folder))
        if kind is None or os.path.islink(folder) or not os.path.isdir(folder) or is_ours(folder):
            return []
        return [e.path for e in os.scandir(folder) if marker_kind(e.path) == kind]

    # --- rule 3: one writer ----------------------------------------------------
    def lock(self) -> OutputLock:
        """An unacquired lock: `with out.lock(): ...` (DataError naming the holder)."""
        return OutputLock(self.path)

    # --- rule 2: staging and swap ----------------------------------------------
    def start_staging(self, keep: bool = False) -> str:
        """The staging directory, marker first.  keep=False empties a leftover one;
        keep=True leaves its contents for the caller to resume from."""
        if not keep and os.path.lexists(self.staging):
            if not self._ours(self.staging):
                self.check()          # refuses, naming it
            remove_ours(self.staging)
        drop_marker(self.staging, self.kind)
        return self.staging

    def discard_staging(self) -> None:
        """Remove the staging directory (e.g. after a disk-full error), ignoring errors."""
        if self._ours(self.staging):
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
        for directory in (self.path, self.staging, self.old):
            if os.path.isdir(directory) and not os.path.islink(directory):
                remove_marker_temps(directory)
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
            remove_ours(self.trash)
            did = did or f"removed the old copy an interrupted swap of {self.path} left behind"
        return did

    def _carry_and_delete_old(self) -> None:
        """Move what the writer does not own from the old copy into the new output (nested
        outputs only if keep_nested says so), then delete the old copy, marker last."""
        keep = None
        for name in sorted(os.listdir(self.old)):
            source, target = os.path.join(self.old, name), os.path.join(self.path, name)
            if os.path.lexists(target) or self.owns(name):
                continue
            nested = self._nested_outputs(source)
            if nested:
                keep = self.keep_nested(self.old, self.path) if keep is None else keep
                if not keep:
                    self._carry_all_but(source, target, nested)
                    continue
            os.replace(source, target)
        if not is_ours(self.old):            # unborn: marked, so its trash is recognised
            drop_marker(self.old, self.kind)
        os.replace(self.old, self.trash)     # past this point nothing in it is carried
        remove_ours(self.trash)

    @staticmethod
    def _carry_all_but(source: str, target: str, dropped: list[str]) -> None:
        """A folder holding nested outputs that are dropped (with their lock files): the rest
        of it is the user's."""
        locks = {lock_path(d) for d in dropped if is_lock_file(lock_path(d))}
        os.mkdir(target)
        for entry in os.scandir(source):
            if entry.path not in dropped and entry.path not in locks:
                os.replace(entry.path, os.path.join(target, entry.name))
        if not os.listdir(target):
            os.rmdir(target)


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
