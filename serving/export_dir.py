"""The export directory (`serving.export --out`): the names of its files, its marker
kind, and whether an existing --out may be replaced. Standard library only: the
command checks its --out before TensorFlow loads."""

from __future__ import annotations

import os

from errors import DataError, ProjectError
from storage import outdir

TFLITE_FILE = "model.tflite"
EXPORT_INFO = "export.json"
MARKER_KIND = "export"      # the kind of the marker (storage.outdir) every export carries
# The temporary folders of tempfile.mkdtemp(prefix=".NAME.") / (".NAME.old.") beside --out:
# the export's own when they carry its marker (serving.export.repair_leftovers removes or restores them).
MKDTEMP = "[a-z0-9_]{8}"


class ExportError(ProjectError):
    """An export that cannot be written as asked; the message says why and what to do."""


def target(out: str) -> outdir.Output:
    """--out as an output of storage.outdir: every name in it is the export's."""
    return outdir.Output(out, kind=MARKER_KIND, what="--out")


def check_out(out: str) -> None:
    """Refuse, touching nothing, an --out that is not a new or empty folder or an export
    of ours (a link, a user's folder or SavedModel, another output of this project), or
    the current directory or a folder holding it (outdir.where_you_stand)."""
    if problem := outdir.where_you_stand(out, "--out"):
        raise ExportError(problem)
    try:
        target(out).check()
    except DataError as e:
        if os.path.islink(out) or not os.path.isdir(out) or outdir.is_ours(out) or outdir.is_unborn(out):
            raise ExportError(str(e)) from None
        raise ExportError(f"{out}: exists and is not an export this project wrote (no "
                          f"{outdir.MARKER_NAME} marker of kind {MARKER_KIND!r}); nothing was "
                          f"touched: pass a new --out") from None
