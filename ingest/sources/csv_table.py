"""CSV: any other data set (IMDB-clean, MiVOLO-style annotations, your own photos).

    path,age[,gender][,x_min,y_min,x_max,y_max][,identity][,split][,race]

- `path`: the image, relative to the CSV's folder.  A path leaving that folder is
  never opened and is counted as `unsafe_path`, a missing file as `missing`.
- `age`: a number.  `age_mean` keeps it exactly, `age` is schema.round_age(value); a
  row whose age is not a number is removed by the step `invalid_age`.
- `gender`: M/F/male/female in any case, empty = unknown.  Numeric codes are
  refused unless --gender_male_code says which number is male.
- `x_min,y_min,x_max,y_max`: the face box in pixels.  Ingest stores the box plus
  --margin (a fraction of its width/height on each side) clipped to the photo;
  a row whose box is not a box is removed by the step `invalid_box`, an image whose
  box misses the upright photo is skipped as `box_outside_photo` (ingest.images).  Without
  boxes the images are stored whole, and --margin states the margin they have.
- `identity`: who is in the photo, for --split_by identity.
- `split`: train/val/test on every row, kept as given (a column filled on some
  rows only is refused).
- `race`: a free text group label (empty = unknown), stored as given; the manifest
  lists the labels with their counts per split.
A path listed twice (compared normalised: `./a.jpg` is `a.jpg`) is removed after its
first row by the step `duplicate_path`.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from errors import DataError
from faces import facebox
from faces.pixels import MAX_PIXELS
from ingest.sources.table import Options, Table, read_csv, root_of, sha256_of
from ingest.sources.samples import Sample
from records import schema

NAME = "csv"
LOOKS_FOR = "a .csv file (csv)"
HELP = "a .csv file of path,age[,gender][,box][,identity][,split][,race] (any other data set)"
SAMPLES = (Sample("csv", "faces.csv and faces_split.csv over photos/ (--src FOLDER/faces.csv)",
                  "ingest.sample_sources", src="faces.csv"),)
OPTIONS = ("margin", "gender_male_code")   # the source flags it reads (ingest.pipeline)
MARGIN = facebox.DEFAULT_MARGIN   # --margin's default: the framing IMDB-WIKI's crops have
REQUIRED = ("path", "age")
BOX = ("x_min", "y_min", "x_max", "y_max")
GENDER_WORDS = {"m": schema.GENDER_MALE, "male": schema.GENDER_MALE,
                "f": schema.GENDER_FEMALE, "female": schema.GENDER_FEMALE, "": schema.GENDER_UNKNOWN}
SPLIT_VALUES = schema.SPLITS


def recognise(src: str) -> bool:
    return os.path.isfile(src) and src.lower().endswith(".csv")


def _genders(values: pd.Series, male_code: int | None, where: str) -> np.ndarray:
    words = values.str.strip().str.lower()
    known = words.isin(GENDER_WORDS)
    numeric = pd.to_numeric(words[~known], errors="coerce")
    if numeric.isna().any():
        bad = sorted(set(values[~known][numeric.isna()]))[:5]
        raise DataError(f"{where}: gender values {bad} are not M/F/male/female (any case) or "
                        f"empty; fix those rows")
    out = words.map(GENDER_WORDS).fillna(schema.GENDER_UNKNOWN).to_numpy(dtype=np.int64)
    if len(numeric):
        if male_code is None:
            raise DataError(f"{where}: gender holds numeric codes {sorted(set(numeric))[:5]}; "
                            f"pass --gender_male_code 0 or 1 to say which number is male")
        if not numeric.isin((0, 1)).all():
            raise DataError(f"{where}: numeric gender codes must be 0 or 1, found "
                            f"{sorted(set(numeric) - {0, 1})[:5]}; fix those rows")
        out[np.flatnonzero(~known.to_numpy())] = np.where(
            numeric.to_numpy() == male_code, schema.GENDER_MALE, schema.GENDER_FEMALE)
    return out


def dataset(src: str) -> str:
    """The CSV's file name without .csv."""
    return os.path.splitext(os.path.basename(src))[0]


def load_table(src: str, options: Options) -> Table:
    raw = read_csv(src, REQUIRED, "it needs a header row with path,age", "a CSV source needs path,age",
                   dtype=str, keep_default_na=False, skipinitialspace=True)
    given_box = [c for c in BOX if c in raw]
    if given_box and len(given_box) != len(BOX):
        raise DataError(f"{src}: has box column(s) {given_box} but not all of {list(BOX)}; "
                        f"give all four or none")
    split = raw["split"].str.strip().str.lower() if "split" in raw else pd.Series("", index=raw.index)
    filled = split != ""
    if filled.any() and not filled.all():
        raise DataError(f"{src}: the split column is empty on {int((~filled).sum())} of {len(raw)} "
                        f"rows; give train/val/test on every row or drop the column")
    if filled.any() and not split.isin(SPLIT_VALUES).all():
        raise DataError(f"{src}: split values {sorted(set(split) - set(SPLIT_VALUES))[:5]} are not "
                        f"{'/'.join(SPLIT_VALUES)}; fix those rows")

    age_mean = pd.to_numeric(raw["age"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    age_valid = np.isfinite(age_mean)
    gender = (_genders(raw["gender"], options.gender_male_code, src) if "gender" in raw
              else np.full(len(raw), schema.GENDER_UNKNOWN))
    if given_box:
        corners = np.stack([pd.to_numeric(raw[c].str.strip(), errors="coerce").to_numpy(np.float64)
                            for c in BOX], axis=1)
        # A corner beyond MAX_PIXELS lies outside any photo ingest decodes (1.5e308 would
        # overflow the margin arithmetic): not a box.
        box_valid = (np.isfinite(corners).all(axis=1) & (corners <= MAX_PIXELS).all(axis=1)
                     & (corners[:, 0] >= 0) & (corners[:, 1] >= 0)
                     & (corners[:, 2] > corners[:, 0]) & (corners[:, 3] > corners[:, 1]))
        boxes = [tuple(map(float, c)) if ok else None for c, ok in zip(corners, box_valid)]
    else:
        box_valid, boxes = np.ones(len(raw), dtype=bool), [None] * len(raw)
    frame = pd.DataFrame({
        "path": raw["path"].str.strip(),
        "age_valid": age_valid,
        "box_valid": box_valid,
        # Clipped first: a huge age (1e308) stays huge (age_above_max), not an int64 overflow.
        "age": schema.round_age(np.clip(np.where(age_valid, age_mean, -1.0), -1.0, 1e6)).astype(np.int64),
        "age_mean": age_mean,
        "age_std": 0.0,
        "real_age": schema.REAL_AGE_UNKNOWN,
        "gender": gender,
        "face_score": np.nan,
        "identity": raw["identity"].str.strip() if "identity" in raw else "",
        "split": split,
        "box": boxes,
        "race": raw["race"].map(schema.group_label) if "race" in raw else "",
    })
    steps = [("invalid_age", "age is not a number", lambda d: ~d["age_valid"])]
    if given_box:
        steps.append(("invalid_box", f"not 0 <= x_min < x_max, 0 <= y_min < y_max (all at most {MAX_PIXELS})",
                      lambda d: ~d["box_valid"]))
    # Compared normalised: `./imgs/a.jpg` and `imgs//a.jpg` are the file `imgs/a.jpg`.
    steps.append(("duplicate_path", "path (normalised) listed on an earlier row",
                  lambda d: d["path"].map(os.path.normpath).duplicated()))
    return Table(frame=frame, root=root_of(src), dataset=dataset(src),
                 described=os.path.basename(src), entries=len(frame), fingerprint=sha256_of([src]),
                 label=schema.LABEL_REAL, margin=MARGIN if options.margin is None else options.margin,
                 steps=steps,
                 splits_from="its split column" if filled.any() else "",
                 has_identity="identity" in raw)
