"""Apparent age of the faces in photos, from this bundle's files alone: the reference
implementation of detect -> crop -> age that a phone app repeats.

    python reference.py PHOTO...      one JSON line per photo:
    {"file", "faces": [{"box": [x, y, w, h], "crop": [x0, y0, x1, y1], "angle",
      "apparent_age", "age_sd", "age_low", "age_high", "most_likely_age"}], "error"}

Needs NumPy, Pillow and a TFLite interpreter (`ai_edge_litert`, else TensorFlow's
`tf.lite`); imports nothing else.  framing.json beside this file says every step in
words; this file is the same steps as code: BlazeFace (the short-range model, its
full-range model where that finds no face), the box rounded to whole pixels, the photo
turned about its centre so the eyes are level, the box plus the margin cropped, the
crop squashed to the stored side and stored as the training crops were (JPEG), then
the age model (`--model` picks age_float16.tflite or age_int8.tflite).
"""

import argparse
import io
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
KEYPOINTS = 6            # per face: photo-left eye, photo-right eye, nose, mouth, two ears


def interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=path)


# ------------------------------------------------------------------- detector

def anchors(strides, side, per_cell):
    """Anchor centres (x, y) in [0, 1], in the model's output order."""
    out, layer = [], 0
    while layer < len(strides):
        stride, count = strides[layer], 0
        while layer < len(strides) and strides[layer] == stride:
            count += per_cell
            layer += 1
        cells = side // stride
        mid = (2 * np.arange(cells) + 1) / (2 * cells)
        ys, xs = np.meshgrid(mid, mid, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), count, axis=0))
    return np.concatenate(out).astype(np.float32)


class Detector:
    """One BlazeFace model: its file, input side and anchors."""

    def __init__(self, path, strides, per_cell, min_score, nms_iou):
        self.min_score, self.nms_iou = min_score, nms_iou
        self.net = interpreter(path)
        self.net.allocate_tensors()
        self.side = int(self.net.get_input_details()[0]["shape"][1])
        self.anchors = anchors(strides, self.side, per_cell)
        outputs = {int(d["shape"][-1]): d["index"] for d in self.net.get_output_details()}
        self.regressors, self.scores = outputs[4 + 2 * KEYPOINTS], outputs[1]

    def __call__(self, rgb):
        """[(score, row)]: row x0, y0, x1, y1, then 6 keypoints' x, y, photo pixels."""
        side = self.side
        height, width = rgb.shape[:2]
        scale = side / max(height, width)
        w, h = max(1, round(width * scale)), max(1, round(height * scale))
        pad_x, pad_y = (side - w) // 2, (side - h) // 2
        canvas = np.zeros((side, side, 3), np.float32)
        canvas[pad_y:pad_y + h, pad_x:pad_x + w] = np.asarray(
            Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.BILINEAR), np.float32)
        self.net.set_tensor(self.net.get_input_details()[0]["index"], (canvas / 127.5 - 1.0)[None])
        self.net.invoke()
        logits = self.net.get_tensor(self.scores)[0]
        raw = self.net.get_tensor(self.regressors)[0]
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
        keep = scores >= self.min_score
        raw, centre = raw.reshape(-1, 4 + 2 * KEYPOINTS)[keep].astype(np.float64) / side, self.anchors[keep]
        cx, cy = raw[:, 0] + centre[:, 0], raw[:, 1] + centre[:, 1]
        points = raw[:, 4:].reshape(-1, KEYPOINTS, 2) + centre[:, None, :]
        rows = np.concatenate([np.stack([cx - raw[:, 2] / 2, cy - raw[:, 3] / 2,
                                         cx + raw[:, 2] / 2, cy + raw[:, 3] / 2], axis=1),
                               points.reshape(-1, 2 * KEYPOINTS)], axis=1)
        shift = np.tile([pad_x, pad_y], 2 + KEYPOINTS)
        return [(s, (row * side - shift) / scale) for s, row in weighted_nms(scores[keep], rows, self.nms_iou)]


def iou(box, boxes):
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(scores, rows, nms_iou):
    order = np.argsort(-scores, kind="stable")
    scores, rows = scores[order], rows[order]
    out = []
    while len(scores):
        cluster = iou(rows[0, :4], rows[:, :4]) > nms_iou
        cluster[0] = True
        weights = scores[cluster]
        out.append((float(scores[0]), (rows[cluster] * weights[:, None]).sum(axis=0) / weights.sum()))
        scores, rows = scores[~cluster], rows[~cluster]
    return out


def find_faces(rgb, detectors, min_face):
    """[(box x, y, w, h, (left eye, right eye))], largest first: the first detector's
    faces, else the fallback's."""
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        return []
    found = []
    for detect in detectors:
        found = detect(rgb)
        if found:
            break
    faces = []
    for _, row in found:
        x0, y0, x1, y1 = (int(round(v)) for v in row[:4])
        if min(x1 - x0, y1 - y0) >= min_face:
            eyes = [round(float(v), 2) for v in row[4:8]]
            faces.append(((x0, y0, x1 - x0, y1 - y0), ((eyes[0], eyes[1]), (eyes[2], eyes[3]))))
    return sorted(faces, key=lambda f: (-f[0][2] * f[0][3], f[0][1], f[0][0]))


# ------------------------------------------------------------------- framing

def crop_region(box, margin, width, height):
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    left = min(max(0, math.floor(x0 - mx)), width - 1)
    top = min(max(0, math.floor(y0 - my)), height - 1)
    right, bottom = min(width, math.ceil(x1 + mx)), min(height, math.ceil(y1 + my))
    return left, top, max(right, left + 1), max(bottom, top + 1)


def frame(rgb, box, margin, angle):
    """The box plus margin cut from the photo turned by -angle about its centre."""
    height, width = rgb.shape[:2]
    if angle == 0:
        left, top, right, bottom = region = crop_region(box, margin, width, height)
        return rgb[top:bottom, left:right], region
    x0, y0, x1, y1 = box
    t = math.radians(-angle)
    px, py = (x0 + x1) / 2 - width / 2, (y0 + y1) / 2 - height / 2
    cx = width / 2 + math.cos(t) * px - math.sin(t) * py
    cy = height / 2 + math.sin(t) * px + math.cos(t) * py
    w, h = x1 - x0, y1 - y0
    left, top, right, bottom = region = crop_region((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2),
                                                    margin, width, height)
    t = math.radians(angle)
    c, s = math.cos(t), math.sin(t)
    ox, oy = left - width / 2, top - height / 2
    coefficients = (c, -s, c * ox - s * oy + width / 2, s, c, s * ox + c * oy + height / 2)
    out = Image.fromarray(np.ascontiguousarray(rgb)).transform(
        (right - left, bottom - top), Image.AFFINE, coefficients, resample=Image.BILINEAR)
    return np.asarray(out), region


def as_stored(pixels, storage, side):
    """The crop squashed to side x side and stored as the training crops were."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    if image.size != (side, side):
        image = image.resize((side, side), Image.BILINEAR)
    if storage.get("encoding") != "jpeg":
        return np.asarray(image)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=storage["jpeg_quality"])
    with Image.open(io.BytesIO(buf.getvalue())) as stored:
        return np.asarray(stored.convert("RGB"))


def read_rgb(path):
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGB", rgba.size, (255, 255, 255))
            background.paste(rgba, mask=rgba.getchannel("A"))
            image = background
        return np.asarray(image.convert("RGB"))


# ------------------------------------------------------------------- age

class AgeModel:
    def __init__(self, path):
        self.net = interpreter(path)
        self.run = self.net.get_signature_runner("serve")
        self.side = int(self.net.get_input_details()[0]["shape"][1])

    def __call__(self, pixels):
        if pixels.shape[:2] != (self.side, self.side):   # the model's resize (bilinear, antialiased)
            pixels = np.asarray(Image.fromarray(pixels).resize((self.side, self.side), Image.BILINEAR))
        return {k: np.asarray(v)[0] for k, v in self.run(pixels=pixels[None].astype(np.uint8)).items()}


def predict(path, spec, detectors, age_model):
    rgb = read_rgb(path)
    faces = []
    margin, aligned = spec["crop"]["margin"], spec["rotation"]["aligned"]
    for (x, y, w, h), (left, right) in find_faces(rgb, detectors, spec["box"]["min_face_px"]):
        angle = math.degrees(math.atan2(right[1] - left[1], right[0] - left[0])) if aligned else 0.0
        pixels, region = frame(rgb, (x, y, x + w, y + h), margin, angle)
        if spec.get("output"):
            pixels = as_stored(pixels, spec.get("storage", {}), spec["output"]["side"])
        out = age_model(pixels)
        faces.append({"box": [x, y, w, h], "crop": [int(v) for v in region], "angle": round(angle, 1),
                      "apparent_age": round(float(out["apparent_age"]), 2),
                      "age_sd": round(float(out["age_sd"]), 2),
                      "age_low": int(out["age_low"]), "age_high": int(out["age_high"]),
                      "most_likely_age": int(np.argmax(out["age_probs"]))})
    return faces


def main(argv=None):
    parser = argparse.ArgumentParser(description="Apparent age of the faces in photos (this bundle's reference).")
    parser.add_argument("photos", nargs="+")
    parser.add_argument("--model", default="age_float16.tflite", help="the age model file in this folder")
    args = parser.parse_args(argv)
    with open(os.path.join(HERE, "framing.json")) as f:
        spec = json.load(f)
    found = spec["detector"]
    detectors = [Detector(os.path.join(HERE, found[file]), found["anchors"][kind]["strides"],
                          found["anchors"][kind]["per_cell"], found["min_score"], found["nms_iou"])
                 for file, kind in (("model_file", "model"), ("fallback_model_file", "fallback"))]
    age_model = AgeModel(os.path.join(HERE, os.path.basename(args.model)))
    worked = 0
    for path in args.photos:
        try:
            faces, error = predict(path, spec, detectors, age_model), None
            if not faces:
                error = f"{path}: no face found"
        except Exception as e:
            faces, error = [], f"{path}: {e}"
        worked += error is None
        print(json.dumps({"file": path, "faces": faces, "error": error}), flush=True)
    return 0 if worked else 1


if __name__ == "__main__":
    sys.exit(main())
