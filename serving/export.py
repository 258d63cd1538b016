"""`python -m serving.export --model_dir runs/X --out exports/X [--tta=flip] [--tflite=none|float32|float16]`

The age model of a run as artifacts that need neither this project nor Keras:

    exports/X/                  a SavedModel (TF Serving, `tf.saved_model.load`)
      serving_default(image_bytes: string [B])      JPEG or PNG face crops
      predict_pixels(pixels: uint8 [B, H, W, 3])    face crops, one size per batch
        -> apparent_age float32 [B], age_probs float32 [B, 101]
           [, male_probability float32 [B] for age_gender runs]
    exports/X/model.tflite      (--tflite) the pixel endpoint at the model's input
                                size: uint8 [B, S, S, 3], the caller resizes
    exports/X/export.json       what was exported: run, input size, task, tta, tflite, and
                                the framing a caller must reproduce (records.framing):
                                `detector` (mtcnn, haar, or `source`: the data set's own
                                crops), `aligned` (turned so the eyes are level) and
                                `margin` (the face box plus this fraction of its
                                width/height on every side), as records.facebox.frame does;
                                `framing` says it in words

Decode (TensorFlow's JPEG decoder with the accurate integer IDCT, which gives
PIL's pixels, as everywhere in this project; a PNG's transparency composited on
white, as serving.predict does: `decode_rgb`) and the resize to the input size
run inside the graph.  TensorFlow's decoders ignore EXIF orientation: send
upright crops.  The export is written beside `--out` and renamed into place, so
a failed export leaves the previous one usable; an existing `--out` without
export.json (not made by this command) is never replaced.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads (python -m serving.export)

import json
import os
import shutil
import tempfile

import keras
import tensorflow as tf
from absl import app

from entry.errors import ProjectError
from model import input_size as model_input_size
from model import age_outputs, resize_pixels
from records.reader import JPEG_DCT_METHOD
from serving import flags as serving_flags
from records import framing
from trainer.run_dir import RunDir, load_run_model

TFLITE_FILE = "model.tflite"
EXPORT_INFO = "export.json"


class ExportError(ProjectError):
    """An export that cannot be written as asked; the message says why and what to do."""


def decode_rgb(data):
    """JPEG or PNG bytes -> uint8 RGB [H, W, 3], the pixels records.pixels.read_rgb gives:
    JPEG with the accurate integer IDCT; PNG with its alpha (an RGBA, grey + alpha or
    palette transparency) composited on white, rounded as PIL's masked paste rounds,
    round((rgb * a + 255 * (255 - a)) / 255), so hidden colour under alpha 0 never
    reaches the model."""
    def png():
        rgba = tf.cast(tf.io.decode_png(data, channels=4), tf.int32)
        alpha = rgba[..., 3:]
        return tf.cast((rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255, tf.uint8)

    return tf.cond(tf.io.is_jpeg(data),
                   lambda: tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD), png)


def saved_model_archive(net, input_size: int, with_gender: bool, tta: bool):
    """ExportArchive with serving_default(image_bytes) and predict_pixels(pixels)."""
    outputs = age_outputs(net, with_gender, tta)

    def decode(data):
        return resize_pixels(decode_rgb(data), input_size)   # the model's own resize (then an identity)

    def serving_default(image_bytes):
        pixels = tf.map_fn(decode, image_bytes,
                           fn_output_signature=tf.TensorSpec([input_size, input_size, 3], tf.uint8))
        return outputs(pixels)

    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint("serving_default", serving_default,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("predict_pixels", outputs,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="pixels")])
    return archive


def tflite_bytes(net, input_size: int, with_gender: bool, tta: bool, precision: str) -> bytes:
    """The pixel endpoint at the input size as a LiteRT flatbuffer (float32, or float16
    weights), converted from an ExportArchive SavedModel: the archive tracks the
    Keras variables, so they reach the flatbuffer as constants."""
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint("serve", age_outputs(net, with_gender, tta),
                         input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.uint8,
                                                        name="pixels")])
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]   # no Flex delegate needed
        if precision == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        return converter.convert()


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(path) for name in files)


def framing_text(trained: framing.Framing) -> str:
    """What a caller must do to a photo before sending a crop: the run's framing."""
    if trained.detector == framing.SOURCE:
        how = "crop each face as the training data set's crops are"
    else:
        how = (f"find faces with {trained.detector}"
               + (", turn the photo so the eyes are level" if trained.aligned else ""))
    return f"{how}, then crop the face box plus {trained.margin:g} of its width/height on every side " \
           f"(records.facebox.frame)"


def export_run(model_dir: str, out: str, *, tta: str = "none", tflite: str = "none", log=print) -> dict:
    """Writes the export of run `model_dir` to `out`; returns export.json's content."""
    if os.path.exists(out) and not os.path.exists(os.path.join(out, EXPORT_INFO)):
        raise ExportError(f"{out}: exists and is not an export (no {EXPORT_INFO}); pass a new --out")
    run = RunDir(model_dir)
    info = run.read_info()
    net = load_run_model(run)
    input_size = model_input_size(net)
    with_gender = isinstance(net.output, dict)
    flip = tta == "flip"
    export_info = {"model_dir": os.path.abspath(model_dir), "input_size": input_size,
                   "task": info.get("task", "age_gender" if with_gender else "age"),
                   **framing.of(info).as_dict(), "framing": framing_text(framing.of(info)),
                   "tta": tta, "tflite": tflite,
                   "signatures": {"serving_default": "image_bytes", "predict_pixels": "pixels"}}

    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
    os.chmod(tmp, 0o755)   # mkdtemp's 0700 would hide the export from a serving container's user
    try:
        saved_model_archive(net, input_size, with_gender, flip).write_out(tmp, verbose=False)
        if tflite != "none":
            with open(os.path.join(tmp, TFLITE_FILE), "wb") as f:
                f.write(tflite_bytes(net, input_size, with_gender, flip, tflite))
        with open(os.path.join(tmp, EXPORT_INFO), "w") as f:
            json.dump(export_info, f, indent=2)
            f.write("\n")
        # Replace an earlier export only once the new one is complete.
        old = None
        if os.path.exists(out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.old.", dir=parent)
            os.rename(out, os.path.join(old, "export"))
        os.rename(tmp, out)
        if old:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sizes = {"SavedModel": _size(out) - _size(os.path.join(out, EXPORT_INFO))
             - (_size(os.path.join(out, TFLITE_FILE)) if tflite != "none" else 0)}
    if tflite != "none":
        sizes[f"{TFLITE_FILE} ({tflite})"] = _size(os.path.join(out, TFLITE_FILE))
    log(f"Exported {model_dir} (input {input_size}x{input_size}, tta {tta}) to {out}:")
    for name, size in sizes.items():
        log(f"  {name:<24} {size / 1e6:10.2f} MB")
    return export_info


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    f = serving_flags.FLAGS
    export_run(f.model_dir, f.out, tta=f.tta, tflite=f.tflite)


if __name__ == "__main__":
    entry.run(main, serving_flags.define_export_flags, serving_flags)
