"""The run's checkpoints (`--model_dir/checkpoints/`), found from their files.

`tf.train.CheckpointManager` writes `ckpt-N.index` + `ckpt-N.data-*` per saved
epoch and lists them in a small text index, `checkpoint`. That index is a
convenience, not the truth: when it is lost, emptied or garbled, TensorFlow
reports "no checkpoint" (or raises), and a resumed run would silently start
over and prune the old checkpoints. Here the checkpoints are the files on disk:

    numbers(dir)         the saved epochs, newest first (an .index and its data present)
    write_index(dir)     rewrite the index from those files (before the manager reads it)
    remove_partial(dir)  what a killed save leaves: `ckpt-N_temp/`, `checkpoint.tmp*`
    restore(ckpt, dir)   the newest checkpoint that reads back whole; a damaged one
                         (a flipped byte fails TensorFlow's checksum) is named and the
                         previous one is tried
"""

from __future__ import annotations

import glob
import os
import re
import shutil
from typing import Callable

from storage.atomic import atomic_write_bytes
from storage.run_dir import RunDirError

PREFIX = "ckpt"                      # tf.train.CheckpointManager's default checkpoint_name
INDEX_NAME = "checkpoint"            # the manager's text index
_NUMBERED = re.compile(rf"^{PREFIX}-(\d+)\.index$")


def path(directory: str, number: int) -> str:
    return os.path.join(directory, f"{PREFIX}-{number}")


def numbers(directory: str) -> list[int]:
    """Epoch numbers of the checkpoints on disk (a regular `ckpt-N.index` and its data
    present), newest first."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _NUMBERED.match(name)
        if match and os.path.isfile(os.path.join(directory, name)) \
                and not os.path.islink(os.path.join(directory, name)) and glob.glob(glob.escape(path(directory, int(match.group(1)))) + ".data-*"):
            found.append(int(match.group(1)))
    return sorted(found, reverse=True)


def write_index(directory: str) -> None:
    """The `checkpoint` index listing exactly the checkpoints on disk, newest last (the
    manager's order), so it resumes from and later prunes the right files: only plain
    names of this directory, whatever the index held before. Without a checkpoint on
    disk an index there is removed."""
    found = sorted(numbers(directory))
    index = os.path.join(directory, INDEX_NAME)
    if not found:
        # An index without checkpoints of this run is not this run's: the manager would
        # take the names it lists (which may lead anywhere) for its own and prune them.
        if os.path.lexists(index):
            if os.path.isdir(index) and not os.path.islink(index):
                raise RunDirError(f"{index}: a directory where the checkpoint index belongs; "
                                  f"move it away or choose another --model_dir")
            os.remove(index)
        return
    # The manager prunes only checkpoints whose timestamp is after last_preserved_timestamp.
    stamps = [os.path.getmtime(path(directory, n) + ".index") for n in found]
    lines = [f'model_checkpoint_path: "{PREFIX}-{found[-1]}"'] + \
        [f'all_model_checkpoint_paths: "{PREFIX}-{n}"' for n in found] + \
        [f"all_model_checkpoint_timestamps: {t!r}" for t in stamps] + \
        [f"last_preserved_timestamp: {min(stamps) - 1.0!r}"]
    atomic_write_bytes(index, ("\n".join(lines) + "\n").encode())


def remove_partial(directory: str) -> list[str]:
    """Delete what a save killed midway leaves (never a finished checkpoint); returns the names."""
    if not os.path.isdir(directory):
        return []
    removed = []
    for name in sorted(os.listdir(directory)):
        full = os.path.join(directory, name)
        if re.match(rf"^{PREFIX}-\d+_temp$", name) and os.path.isdir(full):
            shutil.rmtree(full)
        elif name.startswith(f"{INDEX_NAME}.tmp") or name.startswith(f".{INDEX_NAME}.tmp-"):
            os.remove(full)
        else:
            continue
        removed.append(name)
    return removed


def restore(checkpoint: tf.train.Checkpoint, directory: str, log: Callable[[str], None] = print) -> int:
    """Restore the newest checkpoint that reads back whole; returns its epoch number.
    A damaged one is named and the previous one is tried; none readable is one line.
    (TensorFlow is imported here only: finding the checkpoints needs none, so the
    trainer checks a run it resumes before TensorFlow loads.)"""
    import tensorflow as tf

    found = numbers(directory)
    failures = []
    for number in found:
        try:
            checkpoint.restore(path(directory, number)).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError) as e:
            reason = re.sub(r"\{\{[^}]*\}\}\s*", "", getattr(e, "message", "") or str(e)).strip()
            reason = reason.splitlines()[0][:160] if reason else type(e).__name__
            failures.append(f"{PREFIX}-{number}")
            log(f"Checkpoint {path(directory, number)} is unreadable ({reason}); "
                f"falling back to the previous one")
            continue
        if failures:
            log(f"Restored {PREFIX}-{number} instead of {', '.join(failures)}: epochs after "
                f"{number} are lost and will be trained again")
        return number
    raise RunDirError(f"{directory}: no readable checkpoint ({', '.join(failures) or 'none'} failed); "
                      f"restore the files from a backup, or start a new run with another --model_dir")
