"""The two contracts every synthetic sample keeps (`ingest.sample`'s IMDB-WIKI and
`ingest.sample_sources`' UTKFace, APPA-REAL and CSV), defined once for both:

- Pixels encode the age: every channel of a face sits at `age_level(age) = 20 + 2*age`
  plus zero-mean noise (`face_pixels`), so the label survives grayscale/CMYK
  conversion, resize and JPEG, and `age_from_pixels` reads it back (the trainer's
  end-to-end test learns exactly this).
- Counts follow from `n` alone: each category gets `count(n, fraction)` rows, at
  least one, so with n >= MIN_N every quirk appears and `expected_counts` can state
  exactly what default ingest keeps and skips.
"""

from __future__ import annotations

import numpy as np

MIN_N = 100                # the smallest sample in which every quirk appears


def count(n: int, fraction: float) -> int:
    """Rows of a category that is `fraction` of `n` rows: at least one."""
    return max(1, int(n * fraction))


def age_level(age: int) -> int:
    """The pixel intensity (every channel) that encodes `age` (clipped to 0..100)."""
    return 20 + 2 * int(np.clip(age, 0, 100))


def age_from_pixels(rgb: np.ndarray) -> int:
    """Inverse of `age_level` on a decoded (possibly resized / re-encoded) image."""
    return int(round((float(np.mean(rgb)) - 20.0) / 2.0))


def face_pixels(level: int, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """An h x w RGB uint8 face at `level` with zero-mean texture: the mean (the label)
    survives, but it is not a flat card (a face of at most 9 pixels is flat)."""
    noise = rng.integers(-12, 13, size=(h, w, 1), dtype=np.int16) if w * h > 9 else 0
    return np.clip(level + noise + np.zeros((h, w, 3), np.int16), 0, 255).astype(np.uint8)
