"""Find faces in a user's photo: OpenCV's frontal-face Haar cascade, whose model
file ships inside the opencv-python-headless wheel (nothing is downloaded).
Prediction crops each box with the run's margin (records.facebox).
"""

from __future__ import annotations

import os
import queue

import numpy as np

MIN_FACE = 30    # the smallest face the detector reports, in pixels (--min_face)

CASCADE = "haarcascade_frontalface_default.xml"
# Idle cascades. A cascade is not safe to share between threads, and loading one takes
# ~0.1 s, so batch prediction's parallel workers borrow one each and give it back:
# there are never more cascades than concurrent detections.
_idle: queue.SimpleQueue = queue.SimpleQueue()


def _load_detector():
    import cv2   # here, not at the top: OpenCV loads only when a command detects faces

    cv2.setNumThreads(1)     # parallelism comes from the pipeline's threads
    path = os.path.join(cv2.data.haarcascades, CASCADE)
    detector = cv2.CascadeClassifier(path)
    if detector.empty():
        raise RuntimeError(f"{path}: OpenCV could not load its bundled face cascade; "
                           f"reinstall opencv-python-headless<5")
    return detector


def detect_faces(rgb: np.ndarray, min_face: int = MIN_FACE) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, width, height), largest first."""
    import cv2   # (see _load_detector)

    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gray = cv2.equalizeHist(gray)
    try:
        detector = _idle.get_nowait()
    except queue.Empty:
        detector = _load_detector()
    try:
        boxes = detector.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
    finally:
        _idle.put(detector)
    boxes = [tuple(int(v) for v in b) for b in (boxes if len(boxes) else [])]
    return sorted(boxes, key=lambda b: -b[2] * b[3])

