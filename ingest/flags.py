"""Every flag of `python -m ingest`, defined in this one module (library modules
define none) and turned into a pipeline.Config by `to_config`."""

from __future__ import annotations

from absl import flags

from ingest import images, split
from ingest.pipeline import Config


def define_flags() -> None:
    d = Config.__dataclass_fields__  # defaults live in one place: pipeline.Config
    flags.DEFINE_string("src", None, "Folder with wiki.mat or imdb.mat and the face JPEGs "
                        "(the extracted wiki_crop/ or imdb_crop/).")
    flags.DEFINE_string("out", "", "Shard directory to (re)write. Default: shards/wiki or "
                        "shards/imdb, after the .mat found in --src.")
    flags.DEFINE_integer("image_size", d["image_size"].default, "Stored images are "
                         "image_size x image_size RGB (the whole crop, resized).", lower_bound=1)
    flags.DEFINE_enum("encoding", d["encoding"].default, images.ENCODINGS,
                      "jpeg: re-encoded JPEG (small); raw: uint8 pixels (no decode cost, ~10x larger).")
    flags.DEFINE_integer("jpeg_quality", d["jpeg_quality"].default, "JPEG quality for "
                         "--encoding=jpeg.", lower_bound=1, upper_bound=100)
    flags.DEFINE_float("shard_mb", d["shard_mb"].default, "Target shard size in MB (each split "
                       "gets at least one shard).", lower_bound=1e-6)
    flags.DEFINE_integer("workers", d["workers"].default, "Decode processes; 0 = all cores.",
                         lower_bound=0)
    flags.DEFINE_integer("seed", d["seed"].default, "Seed of the split and of the write order.")
    flags.DEFINE_enum("split_by", d["split_by"].default, split.SPLIT_BY,
                      "random: rows split at random (as the original); identity: no person "
                      "(name, or celeb_id for imdb) in two splits.")
    flags.DEFINE_float("test_fraction", d["test_fraction"].default, "Fraction of kept rows in "
                       "test.", lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_float("val_fraction", d["val_fraction"].default, "Fraction of the non-test "
                       "rows in val (model selection never sees test).", lower_bound=0.0,
                       upper_bound=0.99)
    flags.DEFINE_float("min_face_score", d["min_face_score"].default,
                       "Remove rows with face_score below this.")
    flags.DEFINE_integer("min_age", d["min_age"].default, "Remove rows younger than this "
                         "(default 1: age <= 0 is removed).", lower_bound=0, upper_bound=100)
    flags.DEFINE_integer("max_age", d["max_age"].default, "Remove rows older than this.",
                         lower_bound=0, upper_bound=100)
    flags.DEFINE_boolean("require_gender", d["require_gender"].default,
                         "Also remove rows of unknown gender (otherwise stored as -1).")


def to_config(values: flags.FlagValues) -> Config:
    return Config(**{name: values[name].value for name in (
        "src", "out", "image_size", "encoding", "jpeg_quality", "shard_mb", "workers", "seed",
        "split_by", "test_fraction", "val_fraction", "min_face_score", "min_age", "max_age",
        "require_gender")})
