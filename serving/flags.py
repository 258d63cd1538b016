"""The command lines of `python -m serving.predict` and `python -m serving.export`
(also reachable as `trainer.predict` / `trainer.export`). Defaults come from
`serving.config`; library code never reads these flags."""

from __future__ import annotations

from absl import flags

from faces import framing
from faces.facebox import DEFAULT_MARGIN
from model.tta import TTA, define_tta_flag
from serving.config import TFLITE_PRECISIONS, PredictConfig
from serving.output import PredictError

FLAGS = flags.FLAGS


def define_predict_flags() -> None:
    """Flags of `python -m serving.predict`."""
    flags.DEFINE_string("model_dir", None, "Run directory holding best.keras.")
    flags.DEFINE_string("jsonl", None, "The predictions file: one JSON line per photo appended here as the "
                        "photos complete; a rerun with the same file skips the photos already in it.")
    flags.DEFINE_boolean("probs", PredictConfig.probs, "Add each face's age distribution (age_probs, 101 floats).")
    flags.DEFINE_integer("batch_size", PredictConfig.batch_size, "Faces per model call.")
    flags.DEFINE_string("pictures_dir", None, "A folder for pictures: each photo annotated with its faces' "
                        "ages, and each face's age distribution.")
    flags.DEFINE_boolean("no_detect", not PredictConfig.detect, "Treat each image as one face crop instead "
                         "of detecting faces.")
    flags.DEFINE_enum("detector", None, list(framing.DETECTORS), "The face finder (all offline): mtcnn "
                      "(boxes and eye landmarks), blazeface (MediaPipe's short-range model: boxes and eye "
                      "landmarks, much faster; faces under about a tenth of the photo's longer side are missed) "
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
    define_tta_flag()
    flags.mark_flag_as_required("model_dir")


def check_predict_values(argv: list[str]) -> None:
    """The values of predict's command line that no flag type checks (photos named, a
    batch of at least one face, a margin of 0 or more); a PredictError names the first
    wrong one. No TensorFlow: the command checks them before it loads."""
    if len(argv) < 2:
        raise PredictError("no photo given: name one or more images, folders or @lists after the "
                           "flags, e.g. python -m serving.predict --model_dir runs/X photo.jpg")
    if FLAGS.batch_size < 1:
        raise PredictError(f"--batch_size={FLAGS.batch_size}: must be at least 1")
    if FLAGS.margin is not None and not FLAGS.margin >= 0:
        raise PredictError(f"--margin={FLAGS.margin}: must be 0 or more (a fraction of the face box added "
                           f"on every side); leave it out to use the run's margin")


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
    flags.mark_flag_as_required("model_dir")
    flags.mark_flag_as_required("out")
