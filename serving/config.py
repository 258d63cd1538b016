"""serving's settings: how `serving.predict` turns photos into faces (`PredictConfig`,
built once from its flags by `serving.flags`) and `serving.export`'s --tflite choices."""

from __future__ import annotations

import dataclasses

from faces import facebox, framing
from faces.detect import MIN_FACE

TFLITE_PRECISIONS = ("none", "float32", "float16")   # --tflite of serving.export


@dataclasses.dataclass(frozen=True)
class PredictConfig:
    """How `serving.predict` turns photos into faces for the model."""
    detect: bool = True
    detector: str = framing.DEFAULT_DETECTOR   # faces.detect: one of framing.DETECTORS
    align: bool = True                  # turn each face so its eyes are level (the detector's eye landmarks)
    margin: float = facebox.DEFAULT_MARGIN
    min_face: int = MIN_FACE            # smallest face the detector reports, in pixels
    batch_size: int = 64                # faces per model call
    probs: bool = False
    # Each framed face stored as the run's training faces were (faces.framing.Stored)
    # before the model's resize; None: passed as framed.
    stored: framing.Stored | None = None
