"""Every flag of `python -m ingest`, defined in this one module (library modules
define none) and turned into a pipeline.Config by `to_config`."""

from __future__ import annotations

from absl import flags

from faces import framing
from ingest import sources, split
from ingest.pipeline import Config
from ingest.sources import csv_table
from records import schema


def define_flags() -> None:
    d = Config.__dataclass_fields__  # defaults live in one place: pipeline.Config
    flags.DEFINE_string("src", None, "The data set: a folder (IMDB-WIKI's wiki_crop/ or "
                        "imdb_crop/, UTKFace's folder, appa-real-release/) or a .csv file.")
    flags.DEFINE_enum("source", d["source"].default, sources.CHOICES, sources.source_help())
    flags.DEFINE_string("out", "", "Shard directory to (re)write. Default: shards/<name>: wiki, "
                        "imdb, utkface, appa_real, or the CSV's file name without .csv.")
    flags.DEFINE_integer("image_size", d["image_size"].default, "Stored images are "
                         "image_size x image_size RGB (the whole crop, resized).", lower_bound=1)
    flags.DEFINE_enum("encoding", d["encoding"].default, list(schema.ENCODINGS),
                      "jpeg: re-encoded JPEG (small); raw: uint8 pixels (no decode cost, ~10x larger).")
    flags.DEFINE_integer("jpeg_quality", d["jpeg_quality"].default, "JPEG quality for "
                         "--encoding=jpeg.", lower_bound=1, upper_bound=100)
    flags.DEFINE_float("shard_mb", d["shard_mb"].default, "Target shard size in MB (each split "
                       "gets at least one shard).", lower_bound=1e-6)
    flags.DEFINE_integer("workers", d["workers"].default, "Decode processes; 0 = all cores.",
                         lower_bound=0)
    flags.DEFINE_integer("seed", d["seed"].default, "Seed of the split and of the write order.")
    flags.DEFINE_enum("split_by", None, split.SPLIT_BY,
                      f"Default {split.SPLIT_BY[0]}. random: rows split at random (as the "
                      f"original); identity: no person in two splits (IMDB-WIKI name or "
                      f"celeb_id, a CSV identity column). Refused for sources with their own "
                      f"splits (APPA-REAL, a CSV split column).")
    flags.DEFINE_float("test_fraction", None, f"Fraction of kept rows in test (default "
                       f"{split.TEST_FRACTION}).", lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_float("val_fraction", None, f"Fraction of the non-test rows in val (default "
                       f"{split.VAL_FRACTION}; model selection never sees test).", lower_bound=0.0,
                       upper_bound=0.99)
    flags.DEFINE_float("min_face_score", d["min_face_score"].default,
                       "IMDB-WIKI: remove rows with face_score below this.")
    flags.DEFINE_integer("min_age", d["min_age"].default, "Remove rows younger than this "
                         "(default 1: age <= 0 is removed).", lower_bound=0, upper_bound=100)
    flags.DEFINE_integer("max_age", d["max_age"].default, "Remove rows older than this.",
                         lower_bound=0, upper_bound=100)
    flags.DEFINE_boolean("require_gender", d["require_gender"].default,
                         "Also remove rows of unknown gender (otherwise stored as -1).")
    flags.DEFINE_float("margin", None, f"CSV: the face box plus this fraction of its "
                       f"width/height on each side is stored (clipped to the photo); without "
                       f"boxes, the margin the CSV's crops have. Default {csv_table.MARGIN}. "
                       f"Recorded in the manifest. Refused for the other sources (their crops "
                       f"have a fixed margin) unless --reframe.", lower_bound=0.0)
    flags.DEFINE_enum("reframe", framing.REFRAME_NONE, list(framing.REFRAME), "none: store the source's "
                      f"crops. {', '.join(framing.DETECTORS)}: find the face in every source image with that detector "
                      "(the one nearest the source's face box where it has one, else the largest), frame it as "
                      "prediction does (--align, --margin: default 0.4) and store that crop, so training and "
                      "prediction see the same framing; images without a face are skipped (no_face_found). "
                      f"{framing.DEFAULT_DETECTOR} is prediction's default detector.")
    flags.DEFINE_boolean("align", None, "--reframe: turn each face so its eyes are level (default: on with "
                         "blazeface and mtcnn; haar has no landmarks).")
    flags.DEFINE_enum("gender_male_code", None, ("0", "1"), "CSV: a numeric gender column is "
                      "refused unless this says which number is male (the other is female). "
                      "Refused for the other sources.")


def to_config(values: flags.FlagValues) -> Config:
    config = Config(**{name: values[name].value for name in (
        "src", "source", "out", "image_size", "encoding", "jpeg_quality", "shard_mb", "workers",
        "seed", "split_by", "test_fraction", "val_fraction", "min_face_score", "min_age",
        "max_age", "require_gender", "margin", "reframe", "align")})
    code = values["gender_male_code"].value
    config.gender_male_code = None if code is None else int(code)
    return config
