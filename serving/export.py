"""`python -m serving.export --model_dir runs/X --out exports/X [--tta=flip] [--tflite=none|float32|float16]`

The age model of a run as artifacts that need neither this project nor Keras:

    exports/X/                  a SavedModel (TF Serving, `tf.saved_model.load`)
      serving_default(image_bytes: string [B])      JPEG or PNG face crops
      predict_pixels(pixels: uint8 [B, H, W, 3])    face crops, one size per batch
        -> apparent_age float32 [B], age_probs float32 [B, 101]
           [, male_probability float32 [B] for age_gender runs]
    exports/X/model.tflite      (--tflite) the pixel endpoint at the model's input
                                size: uint8 [B, S, S, 3], the caller resizes (any
                                other shape: RuntimeError at invoke)
    exports/X/export.json       what was exported: run, input size, task, tta, tflite, and
                                the framing a caller must reproduce (faces.framing):
                                `detector` (mtcnn, haar, or `source`: the data set's own
                                crops), `aligned` (turned so the eyes are level) and
                                `margin` (the face box plus this fraction of its
                                width/height on every side), as faces.facebox.frame does;
                                `image_size`, `encoding`, `jpeg_quality`: how the training
                                crops were stored (faces.pixels.as_stored repeats it);
                                `framing` says it all in words, and `framing_spec` as data
                                a phone developer implements step by step (detector and
                                model file, box, eye-levelling turn, crop, squash,
                                storage: serving.framing_spec);
                                `interval_calibration`: the calibrated levels age_low /
                                age_high come from (trainer.calibration), null for the
                                central 90% interval
    exports/X/bundle/           (--bundle) the phone bundle: BlazeFace's TFLite files, the
                                age model as float16 and int8 TFLite, framing.json and
                                reference.py (serving.bundle)

Decode (TensorFlow's JPEG decoder with the accurate integer IDCT, which gives
PIL's pixels, as everywhere in this project; a PNG's transparency composited on
white, as serving.predict does: `decode_rgb`) and the resize to the input size
run inside the graph.  TensorFlow's decoders ignore EXIF orientation: send
upright crops.  The export is an output of storage.outdir: one writer (the lock
`.NAME.lock` beside it), built in `.NAME.staging` (marker first) and swapped in, so
a failed or killed export leaves the previous one usable, and the next run
repairs a swap a kill interrupted (the old export restored, or the new one
completed) and removes a leftover staging folder.  Every export carries the marker
`.dex-age` (kind "export"); an existing `--out` without it (whatever files it
holds: a SavedModel of the user's is the user's), or a link, is never replaced.
serving_default bounds a request's memory, not only its pixels per image: every
image's JPEG or PNG header is read first, and a request is refused (InvalidArgumentError
naming the limit) when one image is over SERVING_MAX_PIXELS or all of them together over
SERVING_REQUEST_PIXELS, before a byte is decoded; the images are then decoded one at a
time (a decoded PNG costs about 40 bytes a pixel at its peak).
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads (python -m serving.export)

if __name__ == "__main__":   # the command line is checked before TensorFlow loads below
    from serving import flags as _cli
    entry.check_flags(_cli.define_export_flags, _cli, check=_cli.check_export_values)

import json
import os
import re
import tempfile

import keras
import tensorflow as tf

from faces import framing
from model import age_outputs, resize_pixels, uncertainty
from model import input_size as model_input_size
from model.load import load_run_model
from model.uncertainty import RUN_KEY
from records import schema
from records.reader import JPEG_DCT_METHOD
from serving import flags as serving_flags
from serving.export_dir import EXPORT_INFO, MARKER_KIND, TFLITE_FILE, MKDTEMP, ExportError, check_out, target  # noqa: F401
from serving import bundle as phone_bundle
from serving import framing_spec
from storage import outdir
from storage.run_dir import RunDir, run_framing

# serving_default's bounds, read from the headers before anything is decoded: an image
# (16.8 MP, 4096x4096; a face crop is far smaller, and a decoded PNG peaks near 40 bytes
# a pixel: about 0.7 GB) and a request's images together (four such images).  Both are
# below faces.pixels.MAX_PIXELS, the limit of predict and ingest.
SERVING_MAX_PIXELS = 1 << 24
SERVING_REQUEST_PIXELS = 1 << 26


def decode_rgb(data):
    """JPEG or PNG bytes -> uint8 RGB [H, W, 3], the pixels faces.pixels.read_rgb gives:
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


def header_pixels(data):
    """width * height (int64) from a JPEG's SOF or a PNG's IHDR, read before anything is
    decoded; 0 for anything else (its decoder names the problem)."""
    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(data), tf.int64)
        return shape[0] * shape[1]

    def png():
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(data, 16, 8), tf.uint8), tf.int64)
        big_endian = tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64)
        return tf.reduce_sum(b[:4] * big_endian) * tf.reduce_sum(b[4:] * big_endian)

    is_png = tf.logical_and(tf.strings.length(data) >= 24,
                            tf.equal(tf.strings.substr(data, 0, 8), b"\x89PNG\r\n\x1a\n"))
    return tf.cond(tf.io.is_jpeg(data), jpeg,
                   lambda: tf.cond(is_png, png, lambda: tf.constant(0, tf.int64)))


def checked_request(image_bytes):
    """`image_bytes`, after checking (InvalidArgumentError) from the headers alone that no
    image is over SERVING_MAX_PIXELS and all together not over SERVING_REQUEST_PIXELS."""
    pixels = tf.map_fn(header_pixels, image_bytes, fn_output_signature=tf.int64)
    each = tf.debugging.assert_less_equal(
        tf.reduce_max(tf.concat([pixels, [0]], 0)), tf.constant(SERVING_MAX_PIXELS, tf.int64),
        message=f"image_bytes: an image of more than the {SERVING_MAX_PIXELS} pixel limit of this "
                f"signature (a decompression bomb, or a photo to downscale first); send face crops")
    with tf.control_dependencies([each]):
        total = tf.debugging.assert_less_equal(
            tf.reduce_sum(pixels), tf.constant(SERVING_REQUEST_PIXELS, tf.int64),
            message=f"image_bytes: the images of one request have more than the {SERVING_REQUEST_PIXELS} "
                    f"pixel limit of a request together; send fewer or smaller images per request")
    with tf.control_dependencies([each, total]):
        return tf.identity(image_bytes)


def saved_model_archive(net, input_size: int, with_gender: bool, tta: bool):
    """ExportArchive with serving_default(image_bytes) and predict_pixels(pixels)."""
    outputs = age_outputs(net, with_gender, tta)

    def decode(data):
        return resize_pixels(decode_rgb(data), input_size)   # the model's own resize (then an identity)

    def serving_default(image_bytes):
        # One image decoded at a time: a request's peak is its largest image, not their sum.
        pixels = tf.map_fn(decode, checked_request(image_bytes), parallel_iterations=1,
                           fn_output_signature=tf.TensorSpec([input_size, input_size, 3], tf.uint8))
        return outputs(pixels)

    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint("serving_default", serving_default,
                         input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    archive.add_endpoint("predict_pixels", outputs,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="pixels")])
    return archive


def fixed_size_pixels(pixels, input_size: int):
    """`pixels`, failing at run time unless shaped [B, input_size, input_size, 3].

    A LiteRT interpreter resizes its input to whatever it is given, and the converter
    takes the signature's sizes for granted: it folds `tf.shape(pixels)[1:]` to a
    constant and drops asserts, so a 64x64 batch of one would run as four 32x32 faces.
    The sizes are read with a gather, which it does not fold, and a mismatch becomes a
    reshape to zero images, which fails (the interpreter raises RuntimeError; a size
    the gather cannot read fails there)."""
    shape = tf.shape(pixels)
    fits = tf.reduce_all(tf.equal(tf.gather(shape, [1, 2, 3]), [input_size, input_size, 3]))
    return tf.reshape(pixels, tf.stack([shape[0] * tf.cast(fits, tf.int32), input_size, input_size, 3]))


def tflite_bytes(net, input_size: int, with_gender: bool, tta: bool, precision: str,
                 representative=None) -> bytes:
    """The pixel endpoint at the input size as a LiteRT flatbuffer (float32, float16
    weights, or int8: weights and activations quantised on `representative`, a
    generator of {"pixels": uint8 [1, S, S, 3]}, float kernels where an op has no int8 one), converted from an ExportArchive SavedModel: the archive tracks the
    Keras variables, so they reach the flatbuffer as constants.  An input of any other
    shape is an error at invoke time (fixed_size_pixels)."""
    outputs = age_outputs(net, with_gender, tta)
    archive = keras.export.ExportArchive()
    archive.track(net)
    archive.add_endpoint("serve", lambda pixels: outputs(fixed_size_pixels(pixels, input_size)),
                         input_signature=[tf.TensorSpec([None, input_size, input_size, 3], tf.uint8,
                                                        name="pixels")])
    with tempfile.TemporaryDirectory() as tmp:
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp, signature_keys=["serve"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]   # no Flex delegate needed
        if precision == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif precision == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = representative
        return converter.convert()


def calibration_record(net, info: dict) -> dict | None:
    """What the exported intervals are: the calibration the model carries (its thresholds) with
    run.json's record of the fit (split, faces, guarantees), or None: central intervals."""
    layer = uncertainty.interval_calibration(net)
    if layer is None:
        return None
    config = layer.get_config()
    fitted = info.get(RUN_KEY) or {}
    return {**{k: v for k, v in fitted.items() if not k.startswith("val_coverage")},
            **{k: config[k] for k in ("masses", "band_starts", "thresholds")}}


def _size(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, files in os.walk(path) for name in files)


def repair_leftovers(out: str) -> list[str]:
    """The mkdtemp folders of killed exports beside `out` that carry the export marker:
    a hidden old export (`.NAME.old.XXXXXXXX/export`) is restored when `out` is gone,
    every other one removed (marker last).  What they did, as log lines."""
    parent, name = os.path.split(os.path.abspath(out))
    temp, old = re.compile(re.escape(f".{name}.") + MKDTEMP), re.compile(re.escape(f".{name}.old.") + MKDTEMP)
    did = []
    for item in sorted(os.scandir(parent), key=lambda e: e.name):
        if item.is_symlink() or not item.is_dir():
            continue
        if old.fullmatch(item.name) and os.listdir(item.path) == ["export"] \
                and outdir.marker_kind(os.path.join(item.path, "export")) == MARKER_KIND:
            if not os.path.lexists(out):
                os.rename(os.path.join(item.path, "export"), out)
                did.append(f"restored {out} from {item.path}, left by an interrupted export")
            else:
                outdir.remove_ours(os.path.join(item.path, "export"))
                did.append(f"removed {item.path}, the old export an interrupted export left")
            os.rmdir(item.path)
        elif temp.fullmatch(item.name) and outdir.marker_kind(item.path) == MARKER_KIND:
            outdir.remove_ours(item.path)
            did.append(f"removed {item.path}, the unfinished export an interrupted export left")
    return did


def write_export(out: str, fill, log=print) -> None:
    """One writer builds the export: under the lock beside `out`, a swap a kill
    interrupted is repaired, `fill(staging)` writes the export into `.NAME.staging`
    (marker first), and it is swapped in; a failure leaves no staging folder."""
    check_out(out)
    export = target(out)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with export.lock():
        for line in [export.repair()] + repair_leftovers(out):
            if line:
                log(f"serving.export: {line}")
        staging = export.start_staging(keep=False)
        os.chmod(staging, 0o755)   # readable by a serving container's user
        try:
            fill(staging)
            export.swap_in()
        except BaseException:
            export.discard_staging()
            raise


def framing_text(trained: framing.Framing, stored: framing.Stored | None = None) -> str:
    """What a caller must do to a photo before sending a crop: the run's framing, and
    how its training crops were stored (what serving.predict does to each face)."""
    if trained.detector == framing.SOURCE:
        how = "crop each face as the training data set's crops are"
    else:
        how = (f"find faces with {trained.detector}"
               + (", turn the photo so the eyes are level" if trained.aligned else ""))
    text = f"{how}, then crop the face box plus {trained.margin:g} of its width/height on every side " \
           f"(faces.facebox.frame)"
    if stored is not None:
        text += f", squashed to {stored.size}x{stored.size}" + (
            f" and stored as JPEG quality {stored.jpeg_quality}" if stored.encoding == schema.ENCODING_JPEG else "") + \
            " (faces.pixels.as_stored)"
    return text


def export_run(model_dir: str, out: str, *, tta: str = "none", tflite: str = "none", log=print,
               bundle: bool = False) -> dict:
    """Writes the export of run `model_dir` to `out` (with `bundle`: and the phone bundle,
    serving.bundle); returns export.json's content."""
    check_out(out)       # before the model loads
    run = RunDir(model_dir)
    info = run.read_info()
    trained = run_framing(info, run.file("run.json"))
    stored = framing.stored(info)
    if bundle:
        phone_bundle.check(trained)
    net = load_run_model(run)
    input_size = model_input_size(net)
    with_gender = isinstance(net.output, dict)
    flip = tta == "flip"
    export_info = {"model_dir": os.path.abspath(model_dir), "input_size": input_size,
                   "task": info.get("task", "age_gender" if with_gender else "age"),
                   **trained.as_dict(), **(stored.as_dict() if stored else {}),
                   "framing": framing_text(trained, stored),
                   "framing_spec": framing_spec.spec(trained, stored, input_size),
                   "tta": tta, "tflite": tflite, "interval_calibration": calibration_record(net, info),
                   "signatures": {"serving_default": "image_bytes", "predict_pixels": "pixels"}}

    def fill(staging: str) -> None:
        saved_model_archive(net, input_size, with_gender, flip).write_out(staging, verbose=False)
        if tflite != "none":
            with open(os.path.join(staging, TFLITE_FILE), "xb") as f:
                f.write(tflite_bytes(net, input_size, with_gender, flip, tflite))
        if bundle:
            export_info["bundle"] = phone_bundle.write(staging, net, info, trained, stored, input_size,
                                                       with_gender, flip, log)
        with open(os.path.join(staging, EXPORT_INFO), "x") as f:
            json.dump(export_info, f, indent=2)
            f.write("\n")

    write_export(out, fill, log)
    sizes = {"SavedModel": _size(out) - _size(os.path.join(out, EXPORT_INFO))
             - (_size(os.path.join(out, TFLITE_FILE)) if tflite != "none" else 0)}
    if tflite != "none":
        sizes[f"{TFLITE_FILE} ({tflite})"] = _size(os.path.join(out, TFLITE_FILE))
    log(f"Exported {model_dir} (input {input_size}x{input_size}, tta {tta}) to {out}:")
    for name, size in sizes.items():
        log(f"  {name:<24} {size / 1e6:10.2f} MB")
    return export_info


def main(argv):
    f = serving_flags.FLAGS   # (no positional argument: checked before TensorFlow loaded)
    entry.interrupt.note(f"serving.export stopped; {f.out} is as it was (an export is built aside and renamed "
                         f"into place when complete); rerun the same command")
    export_run(f.model_dir, f.out, tta=f.tta, tflite=f.tflite, bundle=f.bundle)


if __name__ == "__main__":
    entry.run(main, serving_flags.define_export_flags, serving_flags)
