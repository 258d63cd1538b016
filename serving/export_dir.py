"""The export directory (`serving.export --out`): the names of its files, its marker
kind, and whether an existing --out may be replaced. Standard library only: the
command checks its --out before TensorFlow loads."""

from __future__ import annotations

import os

from errors import ProjectError
from storage import outdir

TFLITE_FILE = "model.tflite"
EXPORT_INFO = "export.json"
MARKER_KIND = "export"      # the kind of the marker (storage.outdir) every export carries
# What an export written before markers holds (it is replaced only if it holds nothing else).
UNMARKED_EXPORT = {EXPORT_INFO, TFLITE_FILE, "saved_model.pb", "variables", "assets", "fingerprint.pb"}


class ExportError(ProjectError):
    """An export that cannot be written as asked; the message says why and what to do."""


def replaceable(out: str) -> bool:
    """True for a missing or empty --out, or an export of ours: a real directory with the
    export marker, or one written before markers that holds exactly an export's files."""
    if not os.path.lexists(out):
        return True
    if os.path.islink(out) or not os.path.isdir(out):
        return False
    names = set(os.listdir(out))
    return (not names or outdir.marker_kind(out) == MARKER_KIND
            or ({EXPORT_INFO, "saved_model.pb"} <= names <= UNMARKED_EXPORT))


def check_out(out: str) -> None:
    """Refuse (ExportError, nothing touched) an --out that is not replaceable."""
    if not replaceable(out):
        raise ExportError(f"{out}: exists and is not an export this project wrote (no "
                          f"{outdir.MARKER_NAME} marker of kind {MARKER_KIND!r}); nothing was "
                          f"touched: pass a new --out")
