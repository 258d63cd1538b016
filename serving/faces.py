"""The faces prediction finds in a user's photo: faces.detect's finders (MTCNN or
BlazeFace with eye landmarks, or OpenCV's Haar cascade), each framed by faces.facebox.frame with
the run's framing (faces.framing), the same code ingest's `--reframe` stores
training crops with.
"""

from __future__ import annotations

import numpy as np

from faces import facebox, framing
from faces.detect import MIN_FACE, Face, find_faces  # noqa: F401  (the finders prediction calls)
from faces.pixels import as_stored


def framed_faces(rgb: np.ndarray, detector: str, align: bool, margin: float, min_face: int,
                 stored: framing.Stored | None = None):
    """[(face, angle, pixels, region)] for every face found in `rgb`, largest first:
    `angle` the turn that levels its eyes (0 unaligned), `pixels` its framed crop (with
    `stored`: as a data set stored that way holds it, faces.pixels.as_stored),
    `region` (x0, y0, x1, y1) that crop in the photo turned by -angle."""
    out = []
    for face in find_faces(rgb, detector, min_face):
        angle = face.angle(align)
        pixels, region = facebox.frame(rgb, face.corners, margin, angle)
        if stored is not None:
            pixels = as_stored(pixels, stored.size, stored.encoding, stored.jpeg_quality)
        out.append((face, angle, pixels, region))
    return out


def detect_faces(rgb: np.ndarray, min_face: int = MIN_FACE, detector: str = "haar") -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, width, height), largest first."""
    return [face.box for face in find_faces(rgb, detector, min_face)]
