"""How a model's faces are framed: the detector that found them, whether they were
turned so the eyes are level, and the margin around the face box.

A data set's manifest records the framing of its crops (`detector`, `aligned`,
`margin`), the trainer copies it into run.json, and export.json, every report and
prediction carry it: prediction frames a photo's faces the run's way by default, and
evaluating or predicting faces framed another way prints one warning line.
Imports nothing heavy (ingest's workers, the trainer and serving all read it).
"""

from __future__ import annotations

import dataclasses

from faces import facebox
from faces.encoding import ENCODING_JPEG, ENCODINGS, JPEG_QUALITY

SOURCE = "source"              # the data set's own crops (no detector ran at ingest)
DETECTORS = ("blazeface", "mtcnn", "haar")  # the face finders (faces.detect); the first is the default:
# BlazeFace (MediaPipe's short-range model, its full-range model where that finds no face) finds
# every face of 300 real UTKFace crops and every face of bench.predict's photos, as MTCNN does,
# at a tenth or less of MTCNN's time one photo at a time (docs/serving.md "Face finding and framing").
DEFAULT_DETECTOR = DETECTORS[0]
REFRAME_NONE = "none"          # ingest --reframe: keep the source's crops
REFRAME = (REFRAME_NONE,) + DETECTORS
EYE_DETECTORS = ("mtcnn", "blazeface")   # the DETECTORS that give eye landmarks


def aligns_by_default(detector: str) -> bool:
    """--align's default: on with a detector that gives eye landmarks (EYE_DETECTORS)."""
    return detector in EYE_DETECTORS


@dataclasses.dataclass(frozen=True)
class Framing:
    detector: str     # SOURCE or one of DETECTORS
    aligned: bool     # turned about the photo's centre so the eyes are level
    margin: float     # of the face box, per side (faces.facebox)

    def as_dict(self) -> dict:
        return {"detector": self.detector, "aligned": self.aligned, "margin": self.margin}

    def describe(self) -> str:
        found = "the data set's own crops" if self.detector == SOURCE else f"{self.detector} faces"
        return f"{found}{', aligned' if self.aligned else ''}, margin {self.margin:g}"


def of(info: dict) -> Framing:
    """The framing a manifest or run.json/export.json records; one that records only a
    margin (or nothing) holds its source's own crops (margin: facebox.DEFAULT_MARGIN)."""
    return Framing(info.get("detector", SOURCE), bool(info.get("aligned", False)),
                   float(info.get("margin", facebox.DEFAULT_MARGIN)))


@dataclasses.dataclass(frozen=True)
class Stored:
    """How a data set stores each framed face: squashed to `size` px, then `encoding`
    (at `jpeg_quality`).  Prediction stores each face it frames the same way
    (faces.pixels.as_stored) before the model's resize, as training read them."""
    size: int
    encoding: str = ENCODING_JPEG
    jpeg_quality: int = JPEG_QUALITY

    def as_dict(self) -> dict:
        return {"image_size": self.size, "encoding": self.encoding, "jpeg_quality": self.jpeg_quality}


def stored(info: dict) -> Stored | None:
    """The storage a manifest or run.json records (a manifest keeps the quality among its
    ingest flags); None without an image size (a run from before it was recorded)."""
    size = info.get("image_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        return None
    encoding = info.get("encoding", ENCODING_JPEG)
    quality = info.get("jpeg_quality", (info.get("flags") or {}).get("jpeg_quality", JPEG_QUALITY))
    if encoding not in ENCODINGS or not isinstance(quality, int) or not 1 <= quality <= 100:
        return None
    return Stored(size, encoding, quality)


def differs(trained: Framing, used: Framing) -> bool:
    """Whether faces framed `used` reach a model trained on `trained` framed otherwise:
    another margin or alignment, or another detector (a data set's own crops say
    nothing of which detector made them, so they match any)."""
    return (trained.margin != used.margin or trained.aligned != used.aligned
            or SOURCE not in (trained.detector, used.detector) and trained.detector != used.detector)


def warning(trained: Framing, used: Framing, what: str, fix: str) -> str | None:
    """The one warning line when `what` (the faces scored) is framed unlike the training
    faces, else None."""
    if not differs(trained, used):
        return None
    return (f"warning: {what} are framed as {used.describe()}; the model was trained on "
            f"{trained.describe()}, so its ages may be off; {fix}")


def ingest_command(trained: Framing, detector: str = DEFAULT_DETECTOR) -> str:
    """The ingest command whose training faces are framed as `trained` (a run on a data
    set's own crops: found with `detector`, framed with ingest's defaults)."""
    own = trained.detector in DETECTORS
    detector = trained.detector if own else detector
    command = f"python -m ingest --src SRC --out OUT --reframe {detector}"
    if own and trained.aligned != aligns_by_default(detector):
        command += " --align" if trained.aligned else " --noalign"
    if own and trained.margin != facebox.DEFAULT_MARGIN:
        command += f" --margin {trained.margin:g}"
    return command


def flag_text(name: str, value) -> str:
    """A framing flag as typed: --detector haar, --align / --noalign, --margin 0.2."""
    if isinstance(value, bool):
        return f"--{'' if value else 'no'}{name}"
    return f"--{name} {value:g}" if isinstance(value, float) else f"--{name} {value}"


def predict_notice(trained: Framing, used: Framing, passed: dict) -> str | None:
    """The one line prediction prints about framing, or None.  `passed`: the framing
    flags the user gave ({"detector": ..., "align": ..., "margin": ...}, None where left
    out; prediction frames the rest as the run's faces were).  A run on a data set's own
    crops: a note of what that means for photos and the ingest command for matching
    training faces.  Else a warning only when a flag the user gave frames faces unlike
    the run's, naming those flags."""
    if trained.detector == SOURCE:
        margin = passed.get("margin")
        flag = (f"; --margin {margin:g} crops them unlike the run's margin {trained.margin:g}: leave it out to "
                f"crop them as its were" if margin is not None and margin != trained.margin else "")
        return (f"note: this run was trained on the data set's own crops (margin {trained.margin:g}), not on faces "
                f"found in photos; it sees the photos' faces as {used.describe()}, so its ages may be off; for "
                f"training faces framed as in prediction, ingest with "
                f"`{ingest_command(trained, used.detector)}` and train on OUT{flag}")
    if not differs(trained, used):
        return None
    runs = {"detector": trained.detector, "align": trained.aligned, "margin": trained.margin}
    given = [flag_text(k, v) for k, v in passed.items() if v is not None and v != runs[k]]
    given = given or [flag_text(k, v) for k, v in passed.items() if v is not None]
    return (f"warning: {' '.join(given)} frames the faces found as {used.describe()}; the model was trained on "
            f"{trained.describe()}, so its ages may be off; leave out {' '.join(given)} to frame them as the run's")


def data_fix(trained: Framing) -> str:
    """The fix for scoring records framed unlike a run's training faces."""
    if trained.detector in DETECTORS:
        return f"re-ingest them with the run's framing: `{ingest_command(trained)}`"
    return (f"score records of the run's own source crops (margin {trained.margin:g}), or ingest both with "
            f"`{ingest_command(trained)}` and retrain")
