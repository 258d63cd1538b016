"""The crop of a face box plus a margin, clipped to the photo.

A CSV may give each photo's face box (x_min, y_min, x_max, y_max in pixels);
ingest stores the box grown by `margin` x its width/height on every side (0.4:
the framing IMDB-WIKI's and APPA-REAL's crops have, which the model learns),
clipped to the photo, then resized like any other crop.
"""

from __future__ import annotations

import math

Box = tuple[float, float, float, float]   # x_min, y_min, x_max, y_max in pixels


def crop_region(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The integer pixel region (left, top, right, bottom) to keep, never empty."""
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    left, top = max(0, math.floor(x0 - mx)), max(0, math.floor(y0 - my))
    right, bottom = min(width, math.ceil(x1 + mx)), min(height, math.ceil(y1 + my))
    return left, top, max(right, left + 1), max(bottom, top + 1)

