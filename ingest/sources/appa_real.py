"""APPA-REAL (appa-real-release/): apparent ages voted by people, official splits.

    train/ valid/ test/      NNNNNN.jpg (the photo), NNNNNN.jpg_face.jpg (the face crop,
                             40% margin, rotated upright): ingest reads the crops
    gt_avg_{train,valid,test}.csv   file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age
    allcategories_{split}.csv       optional: file,gender(male/female),race,...

The label is the apparent age: `age` = schema.round_age(apparent_age_avg) clipped to
0..100, `age_mean` the exact mean, `age_std` the votes' spread, `real_age` the
real age.  Gender and the group attribute `race` come from allcategories_{split}.csv
where it is present (race as its word there), else they are unknown.  The official splits are kept (valid -> val).  A row whose
apparent_age_avg, apparent_age_std or real_age is empty or not a number (a whole
number >= -1 for real_age, a spread >= 0 for the std) is removed by the step
`invalid_age`, as in a CSV source.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from errors import DataError
from faces import facebox
from ingest.sources.table import Options, Table, read_csv, sha256_of
from ingest.sources.samples import Sample
from records import schema

NAME = "appa_real"
LOOKS_FOR = "a folder with gt_avg_train.csv (appa_real)"
HELP = "APPA-REAL's appa-real-release/ (gt_avg_{train,valid,test}.csv and the train/ valid/ test/ faces)"
SAMPLES = (Sample("appa_real", "appa-real-release/, apparent ages with their spreads", "ingest.sample_sources"),)
OPTIONS = ()   # reads none of the source flags (ingest.pipeline.SOURCE_FLAGS)
MARGIN = facebox.DEFAULT_MARGIN   # the framing of its crops, as IMDB-WIKI's
FOLDERS = {"train": "train", "valid": "val", "test": "test"}   # folder/csv name -> split
FACE_SUFFIX = "_face.jpg"
NUMBERS = ("apparent_age_avg", "apparent_age_std", "real_age")   # real_age a whole number
GT_COLUMNS = ("file_name", *NUMBERS)
_GENDER = {"male": schema.GENDER_MALE, "female": schema.GENDER_FEMALE}


def recognise(src: str) -> bool:
    return os.path.isfile(os.path.join(src, "gt_avg_train.csv"))


def _read(path: str, columns: tuple[str, ...]) -> pd.DataFrame:
    return read_csv(path, columns, "re-extract appa-real-release", "is this the APPA-REAL release?",
                    dtype={"file_name": str, "file": str})


def _numbers(column: pd.Series) -> np.ndarray:
    """A column's cells as floats, NaN where a cell is empty or not a number."""
    return pd.to_numeric(column.astype(str).str.strip(), errors="coerce").to_numpy(np.float64)


def _categories(src: str, folder: str, files: pd.Series) -> tuple[np.ndarray, list[str], str | None]:
    """Gender codes and race labels of `files` from allcategories_{folder}.csv (unknown
    without the file, a row or a race column), and the file's path if read."""
    path = os.path.join(src, f"allcategories_{folder}.csv")
    if not os.path.isfile(path):
        return np.full(len(files), schema.GENDER_UNKNOWN), [""] * len(files), None
    cats = _read(path, ("file", "gender"))
    words = dict(zip(cats["file"], cats["gender"].astype(str).str.strip().str.lower()))
    races = dict(zip(cats["file"], cats["race"].map(schema.group_label))) if "race" in cats else {}
    return (np.array([_GENDER.get(words.get(f), schema.GENDER_UNKNOWN) for f in files]),
            [races.get(f, "") for f in files], path)


def dataset(src: str) -> str:
    return NAME


def load_table(src: str, options: Options) -> Table:
    parts, read = [], []
    for folder, split in FOLDERS.items():
        gt_path = os.path.join(src, f"gt_avg_{folder}.csv")
        if not os.path.isfile(gt_path):
            raise DataError(f"{gt_path}: missing; APPA-REAL has gt_avg_train/valid/test.csv "
                            f"next to train/ valid/ test/")
        gt = _read(gt_path, GT_COLUMNS)
        gender, race, cats_path = _categories(src, folder, gt["file_name"])
        read += [gt_path] + ([cats_path] if cats_path else [])
        mean, std, real = (_numbers(gt[c]) for c in NUMBERS)
        # A spread is >= 0 and a real age is -1 (unknown) or more: anything else would
        # only be refused record by record, mid-ingest (records.schema).
        valid = (np.isfinite(mean) & np.isfinite(std) & (std >= 0) & np.isfinite(real)
                 & (real == np.floor(real)) & (real >= schema.REAL_AGE_UNKNOWN))
        mean = np.where(valid, mean, -1.0)
        parts.append(pd.DataFrame({
            "path": [f"{folder}/{f}{FACE_SUFFIX}" for f in gt["file_name"]],
            "age_valid": valid,
            "age": np.clip(schema.round_age(mean), -1, schema.NUM_AGES - 1).astype(np.int64),
            "age_mean": mean,
            "age_std": np.where(valid, std, 0.0),
            "real_age": np.where(valid, real, schema.REAL_AGE_UNKNOWN).astype(np.int64),
            "gender": gender.astype(np.int64),
            "face_score": np.nan,
            "identity": "",
            "split": split,
            "box": None,
            "race": race,
        }))
    frame = pd.concat(parts, ignore_index=True)
    return Table(frame=frame, root=src, dataset=NAME, described="gt_avg_{train,valid,test}.csv",
                 entries=len(frame), fingerprint=sha256_of(read), label=schema.LABEL_APPARENT, margin=MARGIN,
                 steps=[("invalid_age", f"{'/'.join(NUMBERS)} not a number (std >= 0)",
                         lambda d: ~d["age_valid"])],
                 splits_from="its official splits (valid -> val)")
