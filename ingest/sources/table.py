"""The canonical table every source loads its metadata into, and what a source
takes from the flags (see ingest.sources for the seam)."""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field

import pandas as pd

from errors import DataError
from records import schema
from storage.bounded import UnboundedFile, read_bounded
from storage.checksum import hash_file

# The largest metadata CSV a source reads (read whole, then parsed: pandas takes a few
# times its size): a FIFO, a device or a larger file is refused before it is read.
MAX_CSV_BYTES = 1 << 28

# The canonical table every source produces (extra columns are the source's own).
COLUMNS = {
    "path": "image file, relative to Table.root (also the record key)",
    "age": "int label (rows outside 1..100 are removed by the common cleaning)",
    "age_mean": "float: the data set's own label (apparent-age mean; = age elsewhere)",
    "age_std": "float: spread of the human votes, 0 where there are none",
    "real_age": "int: a real age besides the label (APPA-REAL), else -1",
    "gender": "int: 1 male, 0 female, -1 unknown (the schema's coding)",
    "face_score": "float: the detector score (IMDB-WIKI), NaN elsewhere",
    "identity": "str: who is in the photo, '' unknown (for --split_by identity)",
    "split": "str: the source's official split (train/val/test), '' none",
    "box": "(x_min, y_min, x_max, y_max) face box in pixels, or None: crop the whole image",
}
# Optional columns: the group attributes (records.schema.GROUP_ATTRIBUTES), free text,
# "" unknown; a source without one writes every face's as unknown.
GROUP_COLUMNS = {
    "race": "str: the face's race or ethnicity label as the source words it, '' unknown",
}


@dataclass(frozen=True)
class Options:
    """What sources take from the flags."""
    min_face_score: float
    gender_male_code: int | None = None   # CSV numeric genders: which number is male
    margin: float | None = None           # CSV: margin around its boxes (or of its crops);
                                          # None: the source's MARGIN


@dataclass
class Table:
    frame: pd.DataFrame            # COLUMNS (+ the source's own)
    root: str                      # folder the paths are relative to (decode checks they stay in it)
    dataset: str                   # default --out is shards/<dataset>
    described: str                 # what was read, for summaries (e.g. "wiki.mat")
    entries: int                   # rows before cleaning
    fingerprint: str               # sha256 of what the table was read from: changed -> re-ingest
    label: str                     # schema.LABEL_KINDS: what `age` measures
    margin: float                  # face margin of the stored crops, per side, fraction of the face
    steps: list = field(default_factory=list)   # the source's own clean.Step list
    splits_from: str = ""          # what gives the `split` column (its own splits), "" = none
    has_identity: bool = False     # the `identity` column names people

    @property
    def has_splits(self) -> bool:
        """The table's `split` column is the split (no --split_by/fractions)."""
        return bool(self.splits_from)

    def __post_init__(self):
        missing = [c for c in COLUMNS if c not in self.frame]
        if missing or self.label not in schema.LABEL_KINDS:
            raise ValueError(f"source table lacks columns {missing} or has label {self.label!r}")


def read_csv(path: str, required, unreadable_fix: str, missing_fix: str, **read_options) -> pd.DataFrame:
    """A metadata CSV as a DataFrame (pandas.read_csv with `read_options`), or one
    DataError line: not a regular file, larger than MAX_CSV_BYTES, unreadable (then `unreadable_fix`), a header naming a column twice
    (pandas would quietly rename the second `path` to `path.1`), or without a `required`
    column (then `missing_fix`)."""
    try:
        data = read_bounded(path, MAX_CSV_BYTES)
    except UnboundedFile as e:
        raise DataError(f"{path}: {e}; pass a metadata CSV, a regular file") from None
    except OSError as e:
        raise DataError(f"{path}: unreadable CSV ({e}); {unreadable_fix}") from e
    try:
        frame = pd.read_csv(io.BytesIO(data), **read_options)
        header = pd.read_csv(io.BytesIO(data), header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    except (ValueError, IndexError) as e:
        raise DataError(f"{path}: unreadable CSV ({e}); {unreadable_fix}") from e
    names = [name.strip() for name in header]
    twice = next((name for name in names if names.count(name) > 1), None)
    if twice is not None:
        where = [i + 1 for i, name in enumerate(names) if name == twice]
        raise DataError(f"{path}: the header names the column {twice!r} {len(where)} times (columns "
                        f"{', '.join(map(str, where))}); keep one column of each name: rename or delete the others")
    missing = [c for c in required if c not in frame]
    if missing:
        raise DataError(f"{path}: lacks the column(s) {missing} (has {list(frame.columns)}); {missing_fix}")
    return frame


def root_of(src: str) -> str:
    """The folder a table's paths are relative to: --src, or the folder of a --src file (CSV)."""
    return os.path.dirname(os.path.abspath(src)) if os.path.isfile(src) else src


def sha256_of(paths: list[str]) -> str:
    """One sha256 over the contents of `paths`, in order."""
    h = hashlib.sha256()
    for path in paths:
        hash_file(h, path)
    return h.hexdigest()
