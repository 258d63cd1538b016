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
DETECTORS = ("mtcnn", "haar", "blazeface")  # the face finders (faces.detect); the first is the default:
# on real photos MTCNN finds the face in 98% of UTKFace's tight crops where Haar finds 46%
# (docs/serving.md "Face finding and framing").  BlazeFace finds 100% of them, 15-22x faster than
# MTCNN one photo at a time, but misses faces under about a tenth of the photo's longer side.
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
