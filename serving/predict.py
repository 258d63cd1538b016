"""`python -m serving.predict --model_dir runs/X PATH... [--output preds.jsonl]`

Apparent age per face of every image file a PATH names: a file, a folder (searched
recursively for images) or `@list.txt` (one path a line).  Faces are detected
(OpenCV's offline Haar cascade), cropped with the run's margin (`--margin`, by
default the margin of the crops the model was trained on, from run.json) and
given to best.keras as uint8 pixels; the model's own `Resize` layer owns the resize to
its input size (the batch path runs the same op on each crop first, so a batch has
one size), so prediction sees the pixels training and evaluation saw.

The files stream through one tf.data pipeline (parallel read and decode, parallel
face detection, crop, batch of faces, the model).  Each file gives one result,
`{file, faces: [{box, crop, apparent_age, age_sd, age_low, age_high, most_likely_age[, gender]
[, age_probs]}], error}` (box: the face x, y, width, height; crop: the region given to the
model, x0, y0, x1, y1; age_sd the spread of the age distribution, age_low..age_high its
central 90% interval, `model.uncertainty`):
a bad file (missing, empty, a directory, a FIFO or device, not an image, a
decompression bomb, no face, or any exception its own read, detection or
pictures raise) is its result's `error`, naming the file, and never stops the run.
`--output` appends one JSON line per file as it goes; a rerun with the same
`--output` skips the files already in it (after cutting a line torn by a kill).
The file is locked before it is read: a second trainer.predict on it is refused
and changes nothing.  Progress (entry.progress) goes to stderr, with --output or
when stdout is not a terminal; results never share a stream with it.
The exit status is non-zero only when no file could be processed.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads (python -m serving.predict)

import fcntl
import json
import os
import sys

import numpy as np
import tensorflow as tf
from absl import app

from entry.errors import ProjectError
from entry.progress import Progress
from model import age_outputs, input_size, resize_pixels
from records import facebox
from records.pixels import PixelError, read_rgb
from serving import faces, plots
from serving import flags as serving_flags
from trainer.config import PredictConfig
from trainer.run_dir import RunDir, load_run_model, run_margin

# What a folder PATH is searched for (any other file in it is not listed).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class PredictError(ProjectError):
    """Bad arguments or output file; the message names the thing and the fix."""


# ----------------------------------------------------------------------------- inputs

def expand_paths(args: list[str]) -> list[str]:
    """The image files the PATH arguments name, in order, each once: a file as
    given, a folder's images (recursively, sorted), `@list.txt`'s lines (as given:
    a line naming a folder is that line's error, not a search)."""
    out, seen = [], set()

    def add(path):
        if path not in seen:
            seen.add(path)
            out.append(path)

    for arg in args:
        if arg.startswith("@"):
            try:
                with open(arg[1:]) as f:
                    for line in f:
                        if line.strip():
                            add(line.rstrip("\r\n"))
            except OSError as e:
                raise PredictError(f"{arg}: cannot read the list ({e.strerror}); give @FILE with one "
                                   f"image path a line") from None
        elif os.path.isdir(arg):
            for root, dirs, files in os.walk(arg):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        add(os.path.join(root, name))
        else:
            add(arg)
    return out


def resume_output(out, path: str) -> set[str]:
    """The files an earlier run already wrote to the --output file `path`, read through
    its open, locked handle `out` (binary, append mode); a last line torn by a kill is
    cut off first."""
    out.seek(0)
    data = out.read()
    end = data.rfind(b"\n") + 1
    done = set()
    for number, line in enumerate(data[:end].splitlines(), 1):
        try:
            done.add(json.loads(line)["file"])
        except (ValueError, KeyError, TypeError):
            raise PredictError(f"{path}: line {number} is not a prediction line; --output only "
                               f"continues its own files, so pass a new file name") from None
    if end < len(data):
        out.truncate(end)
    return done


def open_output(path: str):
    """The --output file open for appending (binary) and locked for this process (one
    writer), and the files already in it (resume_output).  The lock comes first: a
    file another serving.predict is writing is refused before a byte of it is read
    or cut."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    out = open(path, "a+b")
    try:
        fcntl.flock(out, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        out.close()
        raise PredictError(f"{path}: another serving.predict is writing it; wait for it or pass "
                           f"another --output") from None
    try:
        return out, resume_output(out, path)
    except BaseException:
        out.close()
        raise


# ----------------------------------------------------------------------------- pipeline

def file_error(path: str, error: Exception) -> str:
    """A file's `error` text for any exception from its own work (a damaged file can
    make a decoder or OpenCV raise anything): the file, the kind, the message, on one line."""
    if isinstance(error, PixelError):   # already names the file and the reason
        return str(error)
    text = " ".join(str(error).split()) or "no message"
    return f"{path}: could not be processed ({type(error).__name__}: {text})"


def _read(path: bytes):
    """tf.numpy_function body: (RGB pixels, '') or (a 1x1 placeholder, error)."""
    try:
        return read_rgb(path.decode()), b""
    except Exception as e:   # one file's failure is its result, never the run's
        return np.zeros((1, 1, 3), np.uint8), file_error(path.decode(), e).encode()


def _detect(rgb: np.ndarray, path: bytes, margin: float, min_face: int):
    """tf.numpy_function body: face boxes and margin crop boxes [n, 4] (x, y, w, h and
    x0, y0, x1, y1), and the error (no face is one)."""
    none = np.zeros((0, 4), np.int32)
    try:
        boxes = faces.detect_faces(rgb, int(min_face))
        height, width = rgb.shape[:2]
        crops = [facebox.crop_region((x, y, x + w, y + h), float(margin), width, height) for x, y, w, h in boxes]
    except Exception as e:   # e.g. cv2.error: one file's failure is its result, never the run's
        return none, none, file_error(path.decode(), e).encode()
    if not boxes:
        return none, none, (f"{path.decode()}: no face found; pass a photo with a frontal face, or "
                            f"--no_detect if the image already is a face crop").encode()
    return np.array(boxes, np.int32), np.array(crops, np.int32), b""


def parallel_calls() -> int:
    """Files read, decoded and searched for faces at once: the CPU cores this process
    may run on (its affinity mask, which a container or `taskset` narrows)."""
    return len(os.sched_getaffinity(0))


def make_pipeline(paths: list[str], input_size: int, config: PredictConfig):
    """Batches of faces {index (of the file in `paths`), box, crop, pixels uint8
    [input_size, input_size, 3], valid, error}.  A file without faces (an error)
    gives one invalid row, so every file reaches the consumer, in order."""
    face_spec = tf.TensorSpec([input_size, input_size, 3], tf.uint8)

    def read(path):
        rgb, error = tf.numpy_function(_read, [path], [tf.uint8, tf.string], stateful=False)
        return tf.ensure_shape(rgb, [None, None, 3]), tf.ensure_shape(error, [])

    def rows(index, boxes, crops, faces, valid, error):
        n = tf.shape(boxes)[0]
        return {"index": tf.fill([n], index), "box": boxes, "crop": crops, "pixels": faces,
                "valid": valid, "error": tf.fill([n], error)}

    def whole_image(index, path):
        """--no_detect: the image is the face (resized with the model's own op, so
        the model's Resize layer is an identity on the batch)."""
        rgb, error = read(path)
        shape = tf.shape(rgb)
        whole = tf.stack([0, 0, shape[1], shape[0]])[None]   # box (x, y, w, h) = crop (x0, y0, x1, y1)
        return rows(index, whole, whole, resize_pixels(rgb, input_size)[None], tf.equal(error, "")[None], error)

    def detected_faces(index, path):
        rgb, error = read(path)

        def detect():
            boxes, crops, err = tf.numpy_function(
                lambda r, p: _detect(r, p, config.margin, config.min_face), [rgb, path],
                [tf.int32, tf.int32, tf.string], stateful=False)
            return tf.ensure_shape(boxes, [None, 4]), tf.ensure_shape(crops, [None, 4]), tf.ensure_shape(err, [])

        none = tf.zeros([0, 4], tf.int32)
        boxes, crops, error = tf.cond(tf.equal(error, ""), detect, lambda: (none, none, error))
        faces = tf.map_fn(lambda c: resize_pixels(rgb[c[1]:c[3], c[0]:c[2]], input_size), crops,
                          fn_output_signature=face_spec)
        n = tf.shape(boxes)[0]
        pad = tf.maximum(1 - n, 0)   # a file without faces still sends one (invalid) row
        return rows(index, tf.concat([boxes, tf.zeros([pad, 4], tf.int32)], 0),
                    tf.concat([crops, tf.zeros([pad, 4], tf.int32)], 0),
                    tf.concat([faces, tf.zeros([pad, input_size, input_size, 3], tf.uint8)], 0),
                    tf.range(n + pad) < n, error)

    # No autotuning: its model thread sleeps in doubling periods (10 ms, 20 ms, ...,
    # up to a minute), and deleting the iterator at the end of a run with it on waits
    # for the current period to pass (measured: 3-5 s of idle tail on a 7 s run of 60
    # photos, up to a minute on long runs).  The per-file work is CPU-bound, so one
    # call per usable core is what autotuning would settle on anyway.
    options = tf.data.Options()
    options.autotune.enabled = False
    return (tf.data.Dataset.from_tensor_slices(tf.constant(paths, tf.string))
            .enumerate()
            # Per file, in parallel and in order: read and decode (PIL releases the GIL
            # while decoding), detect faces (OpenCV releases it too, and runs one thread
            # per detection: trainer.faces), crop each face with the margin and resize
            # it to the model input with the in-model op.
            .map(detected_faces if config.detect else whole_image,
                 num_parallel_calls=parallel_calls(), deterministic=True)
            # Faces, not files, fill a batch: a group photo and a crop batch the same.
            .unbatch()
            .batch(config.batch_size)
            .prefetch(2)
            .with_options(options))


# ----------------------------------------------------------------------------- model

class AgeModel:
    """An age model (best.keras of a run), called on batches of uint8 faces at its input
    size; `margin`: the face margin of the crops it was trained on."""

    def __init__(self, net, tta: str = "none", margin: float = facebox.DEFAULT_MARGIN):
        self.net = net
        self.margin = margin
        self.input_size = input_size(net)
        self.with_gender = isinstance(self.net.output, dict)
        # The exported model's outputs, computed the same way (with its flip average under
        # tta "flip"), so trainer.predict and the export agree by construction.
        # One trace for every batch size: the last, partial batch of a run reuses it.
        self._call = tf.function(age_outputs(net, self.with_gender, tta == "flip"),
                                 input_signature=[tf.TensorSpec([None, self.input_size, self.input_size, 3],
                                                                tf.uint8)])

    @classmethod
    def load(cls, model_dir: str, tta: str = "none") -> "AgeModel":
        run = RunDir(model_dir)
        info = run.read_info()   # a clear error for a directory that is not a run
        return cls(load_run_model(run), tta, run_margin(info))

    def __call__(self, pixels) -> dict:
        """{age_probs [faces, 101], apparent_age, age_sd, age_low, age_high [faces]
        (, male_probability [faces])}, numpy."""
        return {k: v.numpy() for k, v in self._call(pixels).items()}


def face_result(box, crop, outputs: dict, i: int, probs: bool) -> dict:
    face = {"box": [int(v) for v in box], "crop": [int(v) for v in crop],
            "apparent_age": round(float(outputs["apparent_age"][i]), 2),
            "age_sd": round(float(outputs["age_sd"][i]), 2),
            "age_low": int(outputs["age_low"][i]), "age_high": int(outputs["age_high"][i]),
            "most_likely_age": int(np.argmax(outputs["age_probs"][i]))}
    if "male_probability" in outputs:
        face["gender"] = "male" if outputs["male_probability"][i] >= 0.5 else "female"
    if probs:
        face["age_probs"] = [round(float(p), 6) for p in outputs["age_probs"][i]]
    return face


def predict_files(age_model: AgeModel, paths: list[str], config: PredictConfig):
    """Yields one result dict per path, in order, as the batches complete."""
    if not paths:
        return
    current = None
    for batch in make_pipeline(paths, age_model.input_size, config):
        outputs = age_model(batch["pixels"])
        index, boxes, crops, valid, errors = (batch[k].numpy() for k in ("index", "box", "crop", "valid", "error"))
        for i in range(len(index)):
            if current is None or current["index"] != index[i]:
                if current is not None:
                    yield current["result"]
                current = {"index": index[i], "result": {"file": paths[index[i]], "faces": [],
                                                         "error": errors[i].decode() or None}}
            if valid[i]:
                current["result"]["faces"].append(face_result(boxes[i], crops[i], outputs, i, config.probs))
    if current is not None:
        yield current["result"]


def annotate(result: dict, out_dir: str) -> None:
    """The photo with its boxes and ages, and each face's age distribution, in out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(result["file"]))[0]
    result["annotated"] = plots.annotate(read_rgb(result["file"]), result["faces"],
                                         os.path.join(out_dir, f"{stem}_annotated.png"))
    if all("age_probs" in face for face in result["faces"]):
        result["distributions"] = [
            plots.age_distribution(np.asarray(face["age_probs"]),
                                   os.path.join(out_dir, f"{stem}_face{i + 1}_ages.png"), f"{stem} face {i + 1}")
            for i, face in enumerate(result["faces"])]


def print_text(result: dict, note) -> None:
    """A result as text on stdout; its error through `note` (a line on stderr)."""
    if result["error"]:
        note(f"error: {result['error']}")
        return
    for i, face in enumerate(result["faces"], 1):
        extra = f", {face['gender']}" if "gender" in face else ""
        print(f"{result['file']}: face {i} at {tuple(face['box'])}: apparent age "
              f"{face['apparent_age']:.1f} ± {face['age_sd']:.1f}, 90% in {face['age_low']}-{face['age_high']} "
              f"(most likely {face['most_likely_age']}{extra})")
    for path in [result.get("annotated")] + result.get("distributions", []):
        if path:
            print(f"  wrote {path}")


def run(f, args: list[str]) -> int:
    """The command; returns the exit status."""
    paths = expand_paths(args)
    out = None
    if f.output:
        out, done = open_output(f.output)
        if done:
            print(f"{f.output}: {len(done)} files already done; continuing", file=sys.stderr)
        paths = [p for p in paths if p not in done]
    age_model = AgeModel.load(f.model_dir, f.tta)
    config = PredictConfig(detect=not f.no_detect, margin=age_model.margin if f.margin is None else f.margin,
                           min_face=f.min_face, batch_size=f.batch_size, probs=f.probs or bool(f.out))
    # Progress goes to stderr; results go to --output or stdout, never mixed with it.
    # Without --output on a terminal the printed results are the progress.
    progress = Progress(len(paths), "files") if out or not sys.stdout.isatty() else None
    note = progress.note if progress else lambda text: print(text, file=sys.stderr)
    results, worked = [], 0
    for result in predict_files(age_model, paths, config):
        if f.out and result["error"] is None:
            try:
                annotate(result, f.out)
            except Exception as e:   # the pictures are this file's work too
                result["error"] = file_error(result["file"], e)
            if not f.probs:
                for face in result["faces"]:
                    face.pop("age_probs")
        worked += result["error"] is None
        if out:
            out.write((json.dumps(result) + "\n").encode())
            out.flush()
        elif f.json:
            results.append(result)
        else:
            print_text(result, note)
        if progress:
            progress.update()
    if progress:
        progress.close()
    if out:
        out.close()
    if f.json and not out:
        print(json.dumps(results, indent=2))
    return 0 if worked or not paths else 1


def main(argv):
    f = serving_flags.FLAGS
    if len(argv) < 2:
        raise app.UsageError("give one or more images, folders or @lists: "
                             "python -m serving.predict --model_dir runs/X photo.jpg")
    if f.batch_size < 1:
        raise PredictError(f"--batch_size={f.batch_size}: must be at least 1")
    if f.margin is not None and not f.margin >= 0:
        raise PredictError(f"--margin={f.margin}: must be 0 or more (a fraction of the face box added "
                           f"on every side); leave it out to use the run's margin")
    return run(f, argv[1:])


if __name__ == "__main__":
    entry.run(main, serving_flags.define_predict_flags, serving_flags)
