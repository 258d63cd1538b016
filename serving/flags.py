"""The command lines of `python -m serving.predict` and `python -m serving.export`
(also reachable as `trainer.predict` / `trainer.export`). Defaults come from
`serving.config`; library code never reads these flags."""

from __future__ import annotations

import os

from absl import flags

import entry
from errors.paths import missing
from faces import framing
from faces.facebox import DEFAULT_MARGIN
from model.tta import TTA, define_tta_flag
from serving.config import TFLITE_PRECISIONS, PredictConfig
from serving.export_dir import check_out
from serving import shipped
from serving.output import PredictError, check_destinations
from storage.run_dir import check_run

FLAGS = flags.FLAGS


def define_predict_flags() -> None:
    """Flags of `python -m serving.predict`."""
    flags.DEFINE_string("model_dir", None, "A run directory holding best.keras, or a shipped model's folder. "
                        f"Default: the shipped model (models/{shipped.DEFAULT}: serving.shipped).")
    flags.DEFINE_string("jsonl", None, "The predictions file: one JSON line per photo appended here as the "
                        "photos complete; a rerun with the same file skips the photos already in it.")
    flags.DEFINE_boolean("probs", PredictConfig.probs, "Add each face's age distribution (age_probs, 101 floats).")
    flags.DEFINE_integer("batch_size", PredictConfig.batch_size, "Faces per model call.")
    flags.DEFINE_string("pictures_dir", None, "A folder for pictures: each photo annotated with its faces' "
                        "ages, and each face's age distribution.")
    flags.DEFINE_boolean("no_detect", not PredictConfig.detect, "Treat each image as one face crop instead "
                         "of detecting faces.")
    flags.DEFINE_enum("detector", None, list(framing.DETECTORS), "The face finder (all offline): blazeface "
                      "(MediaPipe's short-range model, its full-range model where that finds no face: boxes and "
                      "eye landmarks, fast), mtcnn (boxes and eye landmarks, ten times slower) "
                      "or haar (OpenCV's cascade, boxes only). Default: the run's "
                      f"(run.json), or {framing.DEFAULT_DETECTOR} for a run on a data set's own crops.")
    flags.DEFINE_boolean("align", None, "Turn each face so its eyes are level before cropping (needs eye "
                         "landmarks: mtcnn or blazeface). Default: as the run's faces were; on with those "
                         "otherwise.")
    flags.DEFINE_boolean("json", False, "Print one JSON list instead of text (without --jsonl).")
    flags.DEFINE_float("margin", None, "Margin added around each detected face box on every side, as a "
                       "fraction of its width/height. Default: the run's (run.json), the margin of the "
                       f"crops it was trained on ({DEFAULT_MARGIN:g} IMDB-WIKI, APPA-REAL, --reframe; 0.0 UTKFace).")
    flags.DEFINE_integer("min_face", PredictConfig.min_face,
                         "Smallest face side, in pixels: the detector reports no smaller face, and an "
                         "image with a side under it (with --no_detect the whole image is the face) is "
                         "skipped, counted as too small.", lower_bound=1)
    define_tta_flag(default=None)


def check_predict_values(argv: list[str]) -> None:
    """The values of predict's command line that no flag type checks (photos named, a
    batch of at least one face, a margin of 0 or more) and its paths (a trained run,
    a --jsonl file and a --pictures_dir folder, @lists that exist, and at least one
    PATH that exists: with some, a missing one is its own result's error); one line
    names the first wrong one. No TensorFlow: the command checks them before it loads."""
    if len(argv) < 2:
        raise PredictError("no photo given: name one or more images, folders or @lists after the "
                           "flags, e.g. python -m serving.predict photo.jpg")
    if FLAGS.batch_size < 1:
        raise PredictError(f"--batch_size={FLAGS.batch_size}: must be at least 1")
    if FLAGS.margin is not None and not FLAGS.margin >= 0:
        raise PredictError(f"--margin={FLAGS.margin}: must be 0 or more (a fraction of the face box added "
                           f"on every side); leave it out to use the run's margin")
    if FLAGS.model_dir is None:
        shipped.verify(shipped.path())
    else:
        check_run(FLAGS.model_dir)
    check_destinations(FLAGS.jsonl, FLAGS.pictures_dir)
    for arg in argv[1:]:
        if arg.startswith("@") and not os.path.isfile(arg[1:]):
            fix = "give @FILE with one image path a line"
            raise PredictError(missing(arg[1:], fix) if not os.path.lexists(arg[1:]) else f"{arg}: not a file; {fix}")
    if not any(os.path.lexists(arg) for arg in argv[1:] if not arg.startswith("@")) and not any(
            arg.startswith("@") for arg in argv[1:]):
        raise PredictError(missing(argv[1], "name an image, a folder of images or @list.txt"))


def check_export_values(argv: list[str]) -> None:
    """serving.export's command line before TensorFlow loads: flags only, a trained run,
    an --out that is new or an export of ours."""
    entry.only_flags(argv)
    check_run(FLAGS.model_dir)
    check_out(FLAGS.out)


def define_export_flags() -> None:
    """Flags of `python -m serving.export`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras.")
    flags.DEFINE_string("out", None, "Export directory (a SavedModel, export.json and model.tflite); "
                        "an earlier export there is replaced once the new one is complete.")
    flags.DEFINE_enum("tta", TTA[0], list(TTA), "Test-time augmentation inside the export: flip "
                      "averages the age distributions of each face and its mirror image (two model calls).")
    flags.DEFINE_enum("tflite", TFLITE_PRECISIONS[0], list(TFLITE_PRECISIONS),
                      "Also write model.tflite (the pixel endpoint at the model's input size): float32, "
                      "or float16 weights (half the size).")
    flags.DEFINE_boolean("bundle", False, "Also write bundle/: a phone bundle (BlazeFace's TFLite files, the "
                         "age model as float16 and int8 TFLite, framing.json, and reference.py that runs "
                         "detect -> crop -> age without this project); the int8 model's test-split MAE "
                         "change is printed and recorded in export.json. For runs framed with blazeface or "
                         "trained on a data set's own crops.")
    flags.mark_flag_as_required("model_dir")
    flags.mark_flag_as_required("out")
