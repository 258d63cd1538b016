"""Apparent ages from Python in one call, the same answers as `python -m serving.predict`.

    from serving import AgeEstimator
    est = AgeEstimator()                     # the shipped model (models/small-utkface)
    est = AgeEstimator("runs/X")             # or a training run
    faces = est.predict("photo.jpg")         # or an HxWx3 uint8 array
    faces[0].age, faces[0].age_low, faces[0].age_high, faces[0].box
    for result in est.predict(["a.jpg", "b.jpg", array]):   # a list: one result per item, batched
        print(result.error or [f.age for f in result])

The model loads once; each call finds the faces with the run's framing (detector,
alignment, margin: serving.predict's defaults), stores each face as the run's training
faces were stored, and asks the model in batches of `batch_size` faces: per face the
same steps, functions and numbers as the command. One image that cannot be read or
has no face raises its `ProjectError` (one line naming the image); in a list, that item
is an empty result carrying the error and the others keep their faces.
"""

from __future__ import annotations

import entry  # noqa: F401  first: TensorFlow's start-up notices filtered, its log level set

import dataclasses
import os

import numpy as np

from errors import ProjectError
from faces import framing
from faces.pixels import read_rgb
from serving import shipped
from serving.config import PredictConfig


class ImageError(ProjectError):
    """An image given to AgeEstimator.predict that gives no age; the message names it and why."""


@dataclasses.dataclass(frozen=True)
class Face:
    """One face: `age` (the expected apparent age), its central interval `age_low`..`age_high`
    (90%, calibrated when the run was), `age_sd`, `most_likely_age`, `box` (x, y, width,
    height in the photo), `angle` (degrees the face was turned to level its eyes),
    `gender` ("male"/"female" for an age_gender model, else None)."""
    age: float
    age_low: int
    age_high: int
    age_sd: float
    most_likely_age: int
    box: tuple[int, int, int, int]
    angle: float
    gender: str | None = None


class Faces(list):
    """The faces of one image (a list of Face), with `source` (the path, or "array N") and
    `error` (None, or why the image gave no age)."""

    def __init__(self, faces=(), source: str = "", error: str | None = None):
        super().__init__(faces)
        self.source, self.error = source, error


class AgeEstimator:
    """An age model loaded once: `model_dir` a run (best.keras) or a shipped model folder;
    None: the shipped default (checked against its recorded sizes and checksums)."""

    def __init__(self, model_dir: str | None = None, *, detector: str | None = None, align: bool | None = None,
                 margin: float | None = None, tta: str | None = None, batch_size: int = PredictConfig.batch_size,
                 min_face: int = PredictConfig.min_face):
        from serving import predict   # TensorFlow loads here, once

        if model_dir is None:
            model_dir = shipped.path()
            shipped.verify(model_dir)
        self.model_dir = model_dir
        self._predict = predict
        self.model = predict.AgeModel.load(model_dir, tta)
        job = predict.Job(model_dir=model_dir, tta=tta, detector=detector, align=align, margin=margin)
        self.config = predict.face_config(PredictConfig(batch_size=batch_size, min_face=min_face), job, self.model)
        self.framing = framing.Framing(self.config.detector, self.config.align, self.config.margin)

    def predict(self, images):
        """Faces of one image (a path or an HxWx3 uint8 array), or a list of Faces for a list."""
        if isinstance(images, (list, tuple)):
            return self._many(list(images))
        result = self._many([images])[0]
        if result.error:
            raise ImageError(result.error)
        return result

    # -- the work ----------------------------------------------------------------
    def _pixels(self, item, i: int) -> tuple[str, np.ndarray]:
        if isinstance(item, (str, os.PathLike)):
            return os.fspath(item), read_rgb(os.fspath(item))
        name = f"array {i}"
        array = np.asarray(item)
        if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
            raise ImageError(f"{name}: an image array must be HxWx3 uint8 RGB (got {array.dtype} {array.shape})")
        return name, np.ascontiguousarray(array)

    def _many(self, items: list) -> list[Faces]:
        import tensorflow as tf

        from model import resize_pixels

        results, crops = [], []   # crops: (result index, box, crop, angle, pixels at the model's input)
        size = self.model.input_size
        for i, item in enumerate(items):
            try:
                name, rgb = self._pixels(item, i)
            except Exception as e:   # one item's failure is its result, never the others'
                results.append(Faces(source=f"item {i}", error=self._predict.file_error(f"item {i}", e)))
                continue
            boxes, regions, angles, padded, sizes, error = self._predict._detect(rgb, name.encode(), self.config)
            results.append(Faces(source=name, error=error.decode() or None))
            for box, region, angle, pixels, (h, w) in zip(boxes, regions, angles, padded, sizes):
                crops.append((len(results) - 1, box, region, angle,
                              resize_pixels(tf.constant(pixels[:h, :w]), size).numpy()))
        step = self.config.batch_size
        for start in range(0, len(crops), step):
            chunk = crops[start:start + step]
            outputs = self.model(np.stack([c[4] for c in chunk]))
            for j, (index, box, region, angle, _) in enumerate(chunk):
                face = self._predict.face_result(box, region, angle, outputs, j, False)
                results[index].append(Face(age=face["apparent_age"], age_low=face["age_low"],
                                           age_high=face["age_high"], age_sd=face["age_sd"],
                                           most_likely_age=face["most_likely_age"], box=tuple(face["box"]),
                                           angle=face["angle"], gender=face.get("gender")))
        return results
