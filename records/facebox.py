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
