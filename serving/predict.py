"""`python -m serving.predict [--model_dir runs/X] PATH... [--jsonl preds.jsonl]` (default: the shipped model)

Apparent age per face of every image file a PATH names: a file, a folder (searched
recursively for images) or `@list.txt` (one path a line).  Faces are detected
(`--detector` blazeface, mtcnn or haar, all offline), turned so the eyes are level (`--align`)
and cropped with a margin (`--margin`): by default the framing of the faces the model
was trained on, from run.json (faces.framing.predict_notice: one warning line naming a
flag that frames faces otherwise; one note for a run on a data set's own crops), with the code ingest's `--reframe` uses (serving.faces).  Each
framed face is then stored as the run's training faces were (squashed to the data
set's image size, JPEG at its quality, decoded: faces.pixels.as_stored), so it is
the record ingest would have written for that photo; the model's own `Resize` layer
owns the resize to its input size (the batch path runs the same op on each crop first,
so a batch has one size), so prediction sees the pixels training and evaluation saw.

The files stream through one tf.data pipeline (parallel read and decode, parallel
face detection, crop, batch of faces, the model).  Each file gives one result,
`{file, faces: [{box, crop, angle, apparent_age, age_sd, age_low, age_high, most_likely_age
[, gender][, age_probs]}], error}` (box: the face x, y, width, height; crop: the region
given to the model, x0, y0, x1, y1, in the photo turned by -angle degrees about its
centre; angle 0: unaligned; age_sd the spread of the age distribution, age_low..age_high
its 90% interval: the calibrated one of a run calibrated by `trainer.evaluate --calibrate`,
else the distribution's central one, `model.uncertainty.served_interval`):
a bad file (missing, empty, a directory, a FIFO or device, not an image, a
decompression bomb, no face, or any exception its own read, detection or
pictures raise) is its result's `error`, naming the file, and never stops the run.
`--jsonl` appends one JSON line per file as it goes; a rerun with the same
`--jsonl` skips the files already in it (after cutting a line torn by a kill).
The file is locked before it is read: a second trainer.predict on it is refused
and changes nothing.  Progress (entry.progress) goes to stderr, with --jsonl or
when stdout is not a terminal; results never share a stream with it.
The exit status is non-zero only when no file could be processed.
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads (python -m serving.predict)

if __name__ == "__main__":   # the command line is checked before TensorFlow loads below
    from serving import flags as _cli
    entry.check_flags(_cli.define_predict_flags, _cli, check=_cli.check_predict_values)

import dataclasses
import json
import os
import sys

import numpy as np
import tensorflow as tf

from entry.progress import Progress
from faces import framing
from faces.pixels import IMAGE_EXTENSIONS, PixelError, read_rgb  # (a folder PATH is searched for these)
from model import age_outputs, input_size, resize_pixels
from model.load import load_run_model
from model.tta import run_tta
from reports import prediction_plots as plots
from serving import faces, shipped, tally
from serving import flags as serving_flags
from serving.config import PredictConfig
from serving import output
from serving.output import (DISTRIBUTION_SUFFIX, PICTURE_SUFFIX, Pictures, PredictError, check_destinations,
                            open_output, writing)
from storage.bounded import UnboundedFile, read_bounded
from storage.run_dir import RunDir, run_framing



# ----------------------------------------------------------------------------- inputs

# The largest @list file (256 MB: a path a line, millions of them); a FIFO or device
# is refused unread (storage.bounded).
MAX_LIST_BYTES = 1 << 28


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
                text = read_bounded(arg[1:], MAX_LIST_BYTES).decode("utf-8", "surrogateescape")
            except (OSError, UnboundedFile) as e:
                raise PredictError(f"{arg}: cannot read the list ({getattr(e, 'strerror', None) or e}); "
                                   f"give @FILE, a regular file with one image path a line") from None
            for line in text.splitlines():
                if line.strip():
                    add(line)
        elif os.path.isdir(arg):
            for root, dirs, files in os.walk(arg):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(IMAGE_EXTENSIONS):
                        add(os.path.join(root, name))
        else:
            add(arg)
    return out


# ----------------------------------------------------------------------------- pipeline

def file_error(path: str, error: Exception) -> str:
    """A file's `error` text for any exception from its own work (a damaged file can
    make a decoder or OpenCV raise anything): the file, the kind, the message, on one line."""
    if isinstance(error, PixelError):   # already names the file and the reason
        return str(error)
    text = " ".join(str(error).split()) or "no message"
    return f"{path}: could not be processed ({type(error).__name__}: {text})"


def _read(path: bytes, min_face: int):
    """tf.numpy_function body: (RGB pixels, '') or (a 1x1 placeholder, error), an image
    under `min_face` among the errors (tally.too_small)."""
    try:
        rgb = read_rgb(path.decode())
    except Exception as e:   # one file's failure is its result, never the run's
        return np.zeros((1, 1, 3), np.uint8), file_error(path.decode(), e).encode()
    small = tally.too_small(path.decode(), rgb.shape, min_face)
    return (np.zeros((1, 1, 3), np.uint8), small.encode()) if small else (rgb, b"")


def _detect(rgb: np.ndarray, path: bytes, config: PredictConfig):
    """tf.numpy_function body: face boxes and crop regions [n, 4] (x, y, w, h and
    x0, y0, x1, y1), eye angles [n], the framed crops padded to one size [n, h, w, 3]
    and their sizes [n, 2] (height, width), and the error (no face is one)."""
    none = np.zeros((0, 4), np.int32)
    empty = (none, none, np.zeros(0, np.float32), np.zeros((0, 1, 1, 3), np.uint8), np.zeros((0, 2), np.int32))
    try:
        found = faces.framed_faces(rgb, config.detector, config.align, config.margin, config.min_face,
                                   config.stored)
    except Exception as e:   # e.g. cv2.error: one file's failure is its result, never the run's
        return (*empty, file_error(path.decode(), e).encode())
    if not found:
        return (*empty, (f"{path.decode()}: {tally.NO_FACE}; pass a photo with a frontal face, or "
                         f"--no_detect if the image already is a face crop").encode())
    sizes = np.array([pixels.shape[:2] for _, _, pixels, _ in found], np.int32)
    padded = np.zeros((len(found), *sizes.max(0), 3), np.uint8)
    for i, (_, _, pixels, _) in enumerate(found):
        padded[i, :pixels.shape[0], :pixels.shape[1]] = pixels
    return (np.array([face.box for face, _, _, _ in found], np.int32),
            np.array([region for _, _, _, region in found], np.int32),
            np.array([angle for _, angle, _, _ in found], np.float32), padded, sizes, b"")


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
        rgb, error = tf.numpy_function(lambda p: _read(p, config.min_face), [path], [tf.uint8, tf.string],
                                       stateful=False)
        return tf.ensure_shape(rgb, [None, None, 3]), tf.ensure_shape(error, [])

    def rows(index, boxes, crops, angles, faces, valid, error):
        n = tf.shape(boxes)[0]
        return {"index": tf.fill([n], index), "box": boxes, "crop": crops, "angle": angles, "pixels": faces,
                "valid": valid, "error": tf.fill([n], error)}

    def whole_image(index, path):
        """--no_detect: the image is the face (resized with the model's own op, so
        the model's Resize layer is an identity on the batch)."""
        rgb, error = read(path)
        shape = tf.shape(rgb)
        whole = tf.stack([0, 0, shape[1], shape[0]])[None]   # box (x, y, w, h) = crop (x0, y0, x1, y1)
        return rows(index, whole, whole, tf.zeros([1]), resize_pixels(rgb, input_size)[None],
                    tf.equal(error, "")[None], error)

    def detected_faces(index, path):
        rgb, error = read(path)

        def detect():
            boxes, crops, angles, pixels, sizes, err = tf.numpy_function(
                lambda r, p: _detect(r, p, config), [rgb, path],
                [tf.int32, tf.int32, tf.float32, tf.uint8, tf.int32, tf.string], stateful=False)
            return (tf.ensure_shape(boxes, [None, 4]), tf.ensure_shape(crops, [None, 4]),
                    tf.ensure_shape(angles, [None]), tf.ensure_shape(pixels, [None, None, None, 3]),
                    tf.ensure_shape(sizes, [None, 2]), tf.ensure_shape(err, []))

        none = tf.zeros([0, 4], tf.int32)
        boxes, crops, angles, pixels, sizes, error = tf.cond(
            tf.equal(error, ""), detect,
            lambda: (none, none, tf.zeros([0]), tf.zeros([0, 1, 1, 3], tf.uint8), tf.zeros([0, 2], tf.int32), error))
        faces = tf.map_fn(lambda ps: resize_pixels(ps[0][:ps[1][0], :ps[1][1]], input_size), (pixels, sizes),
                          fn_output_signature=face_spec)
        n = tf.shape(boxes)[0]
        pad = tf.maximum(1 - n, 0)   # a file without faces still sends one (invalid) row
        return rows(index, tf.concat([boxes, tf.zeros([pad, 4], tf.int32)], 0),
                    tf.concat([crops, tf.zeros([pad, 4], tf.int32)], 0), tf.concat([angles, tf.zeros([pad])], 0),
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
            # per detection; MTCNN's TensorFlow ops release it, its networks are shared
            # under a lock: faces.detect), frame each face (serving.faces) and resize
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
    size; `framing`: how the faces it was trained on were framed (faces.framing)."""

    def __init__(self, net, tta: str = "none", framing_: framing.Framing | None = None,
                 stored: framing.Stored | None = None):
        self.net = net
        self.framing = framing_ or framing.of({})
        self.stored = stored   # how its training faces were stored (faces.framing.Stored)
        self.margin = self.framing.margin
        self.input_size = input_size(net)
        self.with_gender = isinstance(self.net.output, dict)
        # The exported model's outputs, computed the same way (with its flip average under
        # tta "flip"), so trainer.predict and the export agree by construction.
        # One trace for every batch size: the last, partial batch of a run reuses it.
        self._call = tf.function(age_outputs(net, self.with_gender, tta == "flip"),
                                 input_signature=[tf.TensorSpec([None, self.input_size, self.input_size, 3],
                                                                tf.uint8)])

    @classmethod
    def load(cls, model_dir: str, tta: str | None = None) -> "AgeModel":
        """The run's model; tta None: the run's own (model.tta.run_tta)."""
        run = RunDir(model_dir)
        info = run.read_info()   # a clear error for a directory that is not a run
        return cls(load_run_model(run), tta or run_tta(info), run_framing(info, run.file("run.json")),
                   framing.stored(info))

    def __call__(self, pixels) -> dict:
        """{age_probs [faces, 101], apparent_age, age_sd, age_low, age_high [faces]
        (, male_probability [faces])}, numpy."""
        return {k: v.numpy() for k, v in self._call(pixels).items()}


def face_result(box, crop, angle, outputs: dict, i: int, probs: bool) -> dict:
    face = {"box": [int(v) for v in box], "crop": [int(v) for v in crop], "angle": round(float(angle), 1),
            "apparent_age": round(float(outputs["apparent_age"][i]), 2),
            "age_sd": round(float(outputs["age_sd"][i]), 2),
            "age_low": int(outputs["age_low"][i]), "age_high": int(outputs["age_high"][i]),
            "most_likely_age": int(np.argmax(outputs["age_probs"][i]))}
    if "male_probability" in outputs:
        face["gender"] = "male" if outputs["male_probability"][i] >= 0.5 else "female"
    if probs:
        face["age_probs"] = [round(float(p), 6) for p in outputs["age_probs"][i]]
    return face


def shown_name(path: str) -> str:
    """`path` as UTF-8 text (a byte a non-UTF-8 name holds becomes U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def predict_files(age_model: AgeModel, paths: list[str], config: PredictConfig):
    """Yields one result dict per path, in order, as the batches complete.  A file
    name that is not UTF-8 text is that file's error (the pipeline is given no name)."""
    if not paths:
        return
    named = [shown_name(p) == p for p in paths]
    not_text = {i for i, ok in enumerate(named) if not ok}
    current = None
    for batch in make_pipeline([p if ok else "" for p, ok in zip(paths, named)], age_model.input_size,
                               config):
        outputs = age_model(batch["pixels"])
        index, boxes, crops, angles, valid, errors = (batch[k].numpy() for k in ("index", "box", "crop", "angle",
                                                                                "valid", "error"))
        for i in range(len(index)):
            if current is None or current["index"] != index[i]:
                if current is not None:
                    yield current["result"]
                error = errors[i].decode() or None
                if index[i] in not_text:
                    error = (f"{shown_name(paths[index[i]])}: the file name is not UTF-8 text; "
                             f"rename the file")
                current = {"index": index[i], "result": {"file": shown_name(paths[index[i]]),
                                                         "faces": [], "error": error}}
            if valid[i]:
                current["result"]["faces"].append(face_result(boxes[i], crops[i], angles[i], outputs, i, config.probs))
    if current is not None:
        yield current["result"]


def annotate(result: dict, pictures: Pictures) -> None:
    """The photo with its boxes and ages, and each face's age distribution, in the
    pictures folder under the photo's own path (serving.output.Pictures: a picture
    with something not ours in its place is not written, its reason in `refused`)."""
    stem, image = pictures.stem(result["file"]), read_rgb(result["file"])
    picture = pictures.draw(stem, PICTURE_SUFFIX, "the annotated photo",
                            lambda path: plots.annotate(image, result["faces"], path))
    if picture:
        result["annotated"] = picture
    if all("age_probs" in face for face in result["faces"]):
        drawn = [pictures.draw(stem, DISTRIBUTION_SUFFIX.format(i + 1), "an age distribution",
                               lambda path, i=i, face=face: plots.face_distribution(
                                   face, path, f"{os.path.basename(stem)} face {i + 1}"))
                 for i, face in enumerate(result["faces"])]
        result["distributions"] = [path for path in drawn if path]


@dataclasses.dataclass(frozen=True)
class Job:
    """What the command predicts with and where its results go (PredictConfig says how
    photos become faces)."""
    model_dir: str
    tta: str | None = None          # None: the run's (model.tta.run_tta)
    jsonl: str | None = None        # --jsonl: JSON lines, resumable
    pictures_dir: str | None = None  # --pictures_dir: annotated photos and age distributions
    json: bool = False              # one JSON list on stdout instead of text
    keep_probs: bool = False        # --probs: age_probs stay in the results
    # The framing asked for; None: the run's (faces.framing).
    detector: str | None = None
    align: bool | None = None
    margin: float | None = None


def run(config: PredictConfig, job: Job, args: list[str]) -> int:
    """The command on the paths `args` names; returns the exit status."""
    check_destinations(job.jsonl, job.pictures_dir)
    paths = expand_paths(args)
    out = None
    if job.jsonl:
        out, done = open_output(job.jsonl)
        paths = [p for p in paths if p not in done]
        if done:
            print(f"{job.jsonl}: {len(done)} files already done; "
                  f"{f'continuing with {len(paths)}' if paths else 'nothing left to predict'}", file=sys.stderr)
    counts = tally.Tally(already=len(done) if out else 0)
    age_model = AgeModel.load(job.model_dir, job.tta)
    config = face_config(config, job, age_model)
    if config.detect:
        used = framing.Framing(config.detector, config.align, config.margin)
        line = framing.predict_notice(age_model.framing, used,
                                      {"detector": job.detector, "align": job.align, "margin": job.margin})
        if line:
            print(line, file=sys.stderr)
    # Progress goes to stderr; results go to --jsonl or stdout, never mixed with it.
    # Without --jsonl on a terminal the printed results are the progress.
    progress = Progress(len(paths), "files") if out or not sys.stdout.isatty() else None
    note = progress.note if progress else lambda text: print(text, file=sys.stderr)
    results, worked = [], 0
    pictures = Pictures(job.pictures_dir, paths) if job.pictures_dir else None
    for result in predict_files(age_model, paths, config):
        if job.pictures_dir and result["error"] is None:
            try:
                annotate(result, pictures)
            except PredictError:     # a full disk
                raise
            except Exception as e:   # the pictures are this file's work too
                result["error"] = file_error(result["file"], e)
            for line in pictures.refused:
                counts.pictures_refused += 1
                note(f"skipped: {line}")
            pictures.refused.clear()
            if not job.keep_probs:
                for face in result["faces"]:
                    face.pop("age_probs")
        worked += result["error"] is None
        counts.add(result)
        if out:
            with writing(job.jsonl, "the predictions", "free space on that disk, then rerun the same "
                         "command: it continues after the photos already in it"):
                out.write((json.dumps(result) + "\n").encode())
                out.flush()
        elif job.json:
            results.append(result)
        else:
            output.print_text(result, note)
        if progress:
            progress.update()
    if progress:
        progress.close()
    if out:
        out.close()
    if job.json and not out:
        print(json.dumps(results, indent=2))
    print(counts.line(job.jsonl, job.pictures_dir), file=sys.stderr)
    return 0 if worked or not paths else 1


def face_config(config: PredictConfig, job: Job, age_model: AgeModel) -> PredictConfig:
    """`config` framing faces as `job` asks, the run's way where it is silent (`framed`),
    and storing each as the run's training faces were stored."""
    return dataclasses.replace(framed(config, job, age_model.framing), stored=age_model.stored)


def framed(config: PredictConfig, job: Job, trained: framing.Framing) -> PredictConfig:
    """`config` with the job's framing; what the job leaves out frames faces as the run's
    were (a run on a data set's own crops: --detector's default, aligned when it can)."""
    own = trained.detector in framing.DETECTORS
    detector = job.detector or (trained.detector if own else framing.DEFAULT_DETECTOR)
    if job.align and not framing.aligns_by_default(detector):
        raise PredictError(f"--align: the {detector} detector gives no eye landmarks to level the eyes "
                           f"by; use --detector {' or '.join(framing.EYE_DETECTORS)} or leave out --align")
    if job.align is not None:
        align = job.align
    else:
        align = trained.aligned if own and trained.detector == detector else framing.aligns_by_default(detector)
    return dataclasses.replace(config, detector=detector, align=align,
                               margin=trained.margin if job.margin is None else job.margin)


def main(argv):
    f = serving_flags.FLAGS   # (its values were checked before TensorFlow loaded: check_predict_values)
    config = PredictConfig(detect=not f.no_detect, min_face=f.min_face, batch_size=f.batch_size,
                           probs=f.probs or bool(f.pictures_dir))
    model_dir = f.model_dir
    if model_dir is None:       # the shipped model (its files were checked with the flags)
        model_dir = shipped.path()
        print(shipped.describe(model_dir, shipped.read_info(model_dir)), file=sys.stderr)
    job = Job(model_dir=model_dir, tta=f.tta, jsonl=f.jsonl, pictures_dir=f.pictures_dir, json=f.json,
              keep_probs=f.probs, detector=f.detector, align=f.align, margin=f.margin)
    entry.interrupt.note(
        f"serving.predict stopped; {job.jsonl} keeps the predictions of the photos finished so far and the same "
        f"command continues after them" if job.jsonl else
        "serving.predict stopped; the results above are complete, the rest were not predicted: rerun the same "
        "command (with --jsonl FILE a rerun continues after the photos already done)")
    return run(config, job, argv[1:])


if __name__ == "__main__":
    entry.run(main, serving_flags.define_predict_flags, serving_flags)
