"""The record schema: the one definition of what a shard holds.

Every writer (ingest, the feature cache) and every reader (records.reader, verify,
the trainer) takes the feature names, dtypes and file-name pattern from here, so
the on-disk contract is stated exactly once.
"""

from __future__ import annotations

import math
import re

from faces.encoding import ENCODING_JPEG, ENCODING_RAW, ENCODINGS, JPEG_QUALITY  # noqa: F401  (the shards' encodings)
from records import wire

SCHEMA_VERSION = 3        # what writers write
READ_VERSIONS = (1, 2, 3) # what readers accept: version 1 lacks age_mean/age_std/real_age,
                          # read as age_mean = age, age_std = 0, real_age = -1; versions 1
                          # and 2 lack the group attributes, read as unknown
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val", "test")

VGG_FACE_SIZE = 224       # the full VGG-Face's input side: the stored side ingest writes by default
NUM_AGES = 101            # ages 0..100, the DEX softmax classes
GENDER_UNKNOWN = -1       # gender: 1 male, 0 female, -1 unknown
GENDER_MALE, GENDER_FEMALE = 1, 0
# The manifest's `gender_counts` keys; any gender outside these counts as "unknown".
GENDER_NAMES = {GENDER_MALE: "male", GENDER_FEMALE: "female", GENDER_UNKNOWN: "unknown"}
REAL_AGE_UNKNOWN = -1     # real_age where the source has none
# Group attributes (schema version 3): free text labels a source may carry, "" when it
# has none for a face; the manifest counts them per split under `group_counts`, where
# "" is written GROUP_UNKNOWN (an unknown face is counted, never dropped).
RACE = "race"
GROUP_ATTRIBUTES = (RACE,)
GROUP_UNKNOWN = "unknown"
MAX_GROUP_LABEL = 64      # bytes of one label (a CSV's free text is bounded)
# The age bands evaluation reports errors by and the data card shows faces of (true age,
# inclusive; None: no upper end).
AGE_BANDS = ((0, 12), (13, 17), (18, 24), (25, 39), (40, 59), (60, None))


def band_name(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else f"{lo}-{hi}"

LABEL_KINDS = ("real", "apparent")   # manifest "label": what `age` measures
# Only apparent labels come from human votes, so only they have a spread (age_std > 0):
# every source of real ages writes age_std 0 (schema version 1 has no age_std at all).
LABEL_REAL, LABEL_APPARENT = LABEL_KINDS

KIND_IMAGES = "images"     # manifest "kind": face crops written by ingest
KIND_FEATURES = "features" # manifest "kind": pool5 features written by the feature cache
FEATURES_FOLDER = "features"     # <data set>/features/NAME: its feature caches (trainer.features)

# One concept under two names: the manifest's "encoding" (str) is every record's
# "image/format" (bytes). faces.encoding's mapping is the only place they are paired.
FORMAT_JPEG = ENCODINGS[ENCODING_JPEG]
FORMAT_RAW = ENCODINGS[ENCODING_RAW]
FORMATS = tuple(ENCODINGS.values())

# Feature names, as written by ingest and parsed by the reader.
IMAGE_ENCODED = "image/encoded"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
AGE = "age"               # int 0..100: the class the 101-way head trains on
AGE_MEAN = "age_mean"     # float: the data set's own label (apparent-age mean, or = age)
AGE_STD = "age_std"       # float: spread of the human votes, 0 where there are none
REAL_AGE = "real_age"     # int: the real age where the source has one besides its label, else -1
GENDER = "gender"
FACE_SCORE = "face_score"
KEY = "key"
FEATURES = "features"     # feature records: raw float16 bytes of manifest["feature_shape"]

SHARD_SUFFIX = ".tfrecord"
_SHARD_RE = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.tfrecord$")


def shard_name(split: str, index: int, total: int) -> str:
    """`train-00000-of-00004.tfrecord`: index and total in every name, so a listing shows
    whether a split is complete."""
    return f"{split}-{index:05d}-of-{total:05d}{SHARD_SUFFIX}"


def parse_shard_name(name: str) -> tuple[str, int, int] | None:
    """(split, index, total) of a final shard name, or None for anything else."""
    m = _SHARD_RE.match(name)
    return (m["split"], int(m["index"]), int(m["total"])) if m else None


def feature_spec() -> dict:
    """The `tf.io.parse_example` spec of an image record (imports TF lazily:
    ingest's decode workers never need it)."""
    import tensorflow as tf

    return {
        IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64),
        AGE: tf.io.FixedLenFeature([], tf.int64),
        GENDER: tf.io.FixedLenFeature([], tf.int64),
        FACE_SCORE: tf.io.FixedLenFeature([], tf.float32),
        KEY: tf.io.FixedLenFeature([], tf.string),
        **label_spec(),
        **group_spec(),
    }


def group_spec() -> dict:
    """The parse spec of the group attributes: a record without them (schema versions
    1 and 2) parses as "" (unknown)."""
    import tensorflow as tf

    return {name: tf.io.FixedLenFeature([], tf.string, default_value=b"") for name in GROUP_ATTRIBUTES}


def group_label(value) -> str:
    """A source's group value as its stored label: stripped text, "" for missing
    (None, NaN, empty), at most MAX_GROUP_LABEL bytes."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = str(value).strip()
    return text.encode("utf-8")[:MAX_GROUP_LABEL].decode("utf-8", "ignore")


def group_name(label: str) -> str:
    """The manifest's and report's name of a stored label ("" is GROUP_UNKNOWN)."""
    return label or GROUP_UNKNOWN


def label_spec() -> dict:
    """The parse spec of the version-2 labels.  A record without them (schema
    version 1, feature caches) parses with the defaults: age_mean NaN (the reader
    then takes `age`), age_std 0, real_age -1."""
    import tensorflow as tf

    return {
        AGE_MEAN: tf.io.FixedLenFeature([], tf.float32, default_value=float("nan")),
        AGE_STD: tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
        REAL_AGE: tf.io.FixedLenFeature([], tf.int64, default_value=REAL_AGE_UNKNOWN),
    }


def round_age(x):
    """The one rounding rule of a fractional age (a vote mean, a jittered label):
    floor(x + 0.5), so a half goes up (2.5 -> 3, never to the even 2). Works alike on
    a Python number, a numpy array and a TensorFlow tensor (floor division by 1);
    the result keeps the float type, callers clip and cast."""
    return (x + 0.5) // 1


def label_age(age_mean: float) -> int:
    """The int class of a (possibly fractional) label: `round_age`, clipped to 0..100."""
    return min(max(int(round_age(age_mean)), 0), NUM_AGES - 1)


def encode_example(*, image: bytes, image_format: bytes, height: int, width: int,
                   age: int, gender: int, face_score: float, key: str,
                   age_mean: float | None = None, age_std: float = 0.0,
                   real_age: int = REAL_AGE_UNKNOWN, race: str = "") -> bytes:
    """One serialized `tf.train.Example` in this schema (encoded without TensorFlow).
    age_mean defaults to `age` (a source whose label is an integer age); race "" is unknown."""
    if image_format not in FORMATS:
        raise ValueError(f"image_format must be one of {FORMATS}, got {image_format!r}")
    if not 0 <= age < NUM_AGES:
        raise ValueError(f"age must be in 0..{NUM_AGES - 1}, got {age} for {key}")
    if gender not in (0, 1, GENDER_UNKNOWN):
        raise ValueError(f"gender must be 1, 0 or {GENDER_UNKNOWN}, got {gender} for {key}")
    if not (age_std >= 0 and real_age >= REAL_AGE_UNKNOWN):
        raise ValueError(f"age_std must be >= 0 and real_age >= {REAL_AGE_UNKNOWN}, "
                         f"got {age_std}, {real_age} for {key}")
    return wire.example({
        IMAGE_ENCODED: wire.bytes_feature(image),
        IMAGE_FORMAT: wire.bytes_feature(image_format),
        IMAGE_HEIGHT: wire.int64_feature(height),
        IMAGE_WIDTH: wire.int64_feature(width),
        AGE: wire.int64_feature(age),
        GENDER: wire.int64_feature(gender),
        FACE_SCORE: wire.float_feature(face_score),
        KEY: wire.bytes_feature(key.encode("utf-8")),
        AGE_MEAN: wire.float_feature(float(age) if age_mean is None else age_mean),
        AGE_STD: wire.float_feature(age_std),
        REAL_AGE: wire.int64_feature(real_age),
        RACE: wire.bytes_feature(group_label(race).encode("utf-8")),
    })


def feature_record_spec() -> dict:
    """The `tf.io.parse_example` spec of a feature-cache record."""
    import tensorflow as tf

    return {
        FEATURES: tf.io.FixedLenFeature([], tf.string),
        AGE: tf.io.FixedLenFeature([], tf.int64),
        GENDER: tf.io.FixedLenFeature([], tf.int64),
        KEY: tf.io.FixedLenFeature([], tf.string),
    }


def encode_feature_example(*, features: bytes, age: int, gender: int, key: bytes,
                           age_mean: float | None = None, age_std: float = 0.0,
                           real_age: int = REAL_AGE_UNKNOWN) -> bytes:
    """One serialized feature-cache record: the trunk's output for one image, with
    the labels (version 2: age_mean, age_std, real_age, as `encode_example`) and key
    of the image record it came from."""
    return wire.example({
        FEATURES: wire.bytes_feature(features),
        AGE: wire.int64_feature(age),
        GENDER: wire.int64_feature(gender),
        KEY: wire.bytes_feature(key),
        AGE_MEAN: wire.float_feature(float(age) if age_mean is None else age_mean),
        AGE_STD: wire.float_feature(age_std),
        REAL_AGE: wire.int64_feature(real_age),
    })

# The record shuffle buffer of the training stream (records.reader; --shuffle_buffer's
# default). It holds *serialized* records (~10-20 kB for a 224-px JPEG, 150 kB raw):
# ~60 MB of JPEG shards.
DEFAULT_SHUFFLE_BUFFER = 4096
