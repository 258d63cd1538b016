"""The project's error base, used by every package (records, model, ingest, trainer,
serving, entry). `ProjectError`: bad input a user can fix (a missing file, a wrong
flag, a stale run).

Every such error of the project derives from it, and its message is one line naming
the thing and the fix; `entry.run` prints it as `error: ...` and exits 1:
`DataError` (here: shards, manifests, sources, output folders), `faces.pixels.PixelError` (an
image file that gives no pixels), `records.service.ServiceError` and its
`EpochTimeout`, `model.WeightsError`, `trainer.config.ConfigError`,
`storage.run_dir.RunDirError`, `trainer.distribution.ClusterError`,
`trainer.train.TrainingDiverged`, `trainer.calibration.CalibrationError`, `serving.predict.PredictError` and
`serving.export_dir.ExportError`. No TensorFlow here.

`disk_problem` tells a full or read-only disk apart from other failures, so that
commands (and `entry.run`, for any write no command anticipated) report it in one line.
"""

from __future__ import annotations

import errno
import os


class ProjectError(Exception):
    """One-line, user-fixable error: the message names the file or flag and the fix."""


class DataError(ProjectError):
    """A shard directory is missing, incomplete or does not match its manifest.
    The message names the file and the fix."""


# A full or read-only disk is the user's to fix, whichever command meets it and wherever:
# an OSError from Python, or TensorFlow's error for a failed file write (a checkpoint,
# a SavedModel), which carries the system's text in its message and no errno.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def disk_problem(e: BaseException) -> str | None:
    """"No space left on device" (or the quota / read-only text) when `e` is a write that
    failed for want of a writable disk with free space; None for anything else."""
    if isinstance(e, OSError):
        return (e.strerror or os.strerror(e.errno)) if e.errno in DISK_ERRNOS else None
    if type(e).__module__.startswith("tensorflow"):           # tf.errors.OpError, without importing TF
        text = str(e)
        return next((os.strerror(code) for code in DISK_ERRNOS if os.strerror(code) in text), None)
    return None


def disk_target(e: BaseException) -> str:
    """The file a failed write named, as well as it can be told."""
    if isinstance(e, OSError):
        return str(e.filename) if e.filename else "a file"
    text = str(e).split("}}")[-1]                # TF: "{{function_node ...}} /path/file; No space left ..."
    return text.split(disk_problem(e) or "\0")[0].strip().rstrip(";:,").strip() or "a file"
