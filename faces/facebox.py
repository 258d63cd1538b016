"""The crop of a face box plus a margin, clipped to the photo: the one framing rule
of ingest (a CSV's face boxes) and prediction (detected faces).

The box is grown by `margin` x its width/height on every side (0.4: the framing
IMDB-WIKI's and APPA-REAL's crops have, which the model learns; 0.0: UTKFace's
tight crops), clipped to the photo.  A data set's manifest records the margin of
its crops, the trainer copies it into the run, and prediction crops with the
run's margin, so a face reaches the model framed as its training faces were.
Imports nothing heavy: ingest's decode workers and prediction both use it.
"""

from __future__ import annotations

import math

Box = tuple[float, float, float, float]   # x_min, y_min, x_max, y_max in pixels

# The margin of a data set or run that does not record one (schema-1 manifests and
# the runs trained on them): IMDB-WIKI's crops.
DEFAULT_MARGIN = 0.4


def is_margin(value) -> bool:
    """A margin as every reader accepts it: a finite number >= 0 (not a bool)."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def overlaps(box: Box, width: int, height: int) -> bool:
    """Whether the box covers some of a width x height photo (a box wholly outside it
    frames nothing: crop_region would only keep an edge pixel)."""
    x0, y0, x1, y1 = box
    return x0 < width and y0 < height and x1 > 0 and y1 > 0


def crop_region(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The integer pixel region (left, top, right, bottom) to keep: inside the photo,
    never empty (a box partly outside is clipped to the part inside)."""
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    left = min(max(0, math.floor(x0 - mx)), width - 1)
    top = min(max(0, math.floor(y0 - my)), height - 1)
    right, bottom = min(width, math.ceil(x1 + mx)), min(height, math.ceil(y1 + my))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def eye_angle(left_eye: tuple[float, float], right_eye: tuple[float, float]) -> float:
    """The degrees the line from the photo's left eye to its right eye is turned from
    level (clockwise on the screen: image y points down)."""
    return math.degrees(math.atan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0]))


def _turn(x: float, y: float, degrees: float, width: int, height: int) -> tuple[float, float]:
    """(x, y) of the photo, in the photo turned by -degrees about its centre."""
    t = math.radians(-degrees)
    cx, cy = width / 2, height / 2
    return (cx + math.cos(t) * (x - cx) - math.sin(t) * (y - cy),
            cy + math.sin(t) * (x - cx) + math.cos(t) * (y - cy))


def frame(rgb, box: Box, margin: float, angle: float = 0.0):
    """The face of `box` framed: (pixels uint8 [h, w, 3], region (left, top, right,
    bottom)).  angle 0: the crop_region of the photo.  Otherwise the photo is turned
    by -angle about its centre (so eyes at `angle` become level), the box keeps its
    size around its turned centre, and the crop_region of that is taken, clipped to the
    turned photo's frame (corners beyond the photo are black); the turn and the crop
    are one resampling of the source pixels (bilinear), in the same code for ingest
    and prediction.  `rgb`: numpy [height, width, 3] uint8."""
    import numpy as np
    from PIL import Image

    height, width = rgb.shape[:2]
    if angle == 0:
        left, top, right, bottom = region = crop_region(box, margin, width, height)
        return rgb[top:bottom, left:right], region
    x0, y0, x1, y1 = box
    cx, cy = _turn((x0 + x1) / 2, (y0 + y1) / 2, angle, width, height)
    w, h = x1 - x0, y1 - y0
    left, top, right, bottom = region = crop_region((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                                                    margin, width, height)
    # Output pixel (u, v) is the turned photo's (left + u, top + v); PIL asks where that
    # is in the source: turn it back by +angle about the centre.
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    ox, oy = left - width / 2, top - height / 2
    coefficients = (c, -s, c * ox - s * oy + width / 2, s, c, s * ox + c * oy + height / 2)
    out = Image.fromarray(np.ascontiguousarray(rgb)).transform(
        (right - left, bottom - top), Image.AFFINE, coefficients, resample=Image.BILINEAR)
    return np.asarray(out), region
