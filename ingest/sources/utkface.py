"""UTKFace (aligned & cropped faces): the labels are in the file names.

Names are `[age]_[gender]_[race]_[date&time].jpg`; the download's end in
`.jpg.chip.jpg`, and some lack the race field (`39_1_20170116174525125.jpg.chip.jpg`),
which still carry age and gender and are kept (their race is unknown).  The race
field (0 White, 1 Black, 2 Asian, 3 Indian, 4 Others) is the group attribute `race`,
stored as its word; a name without one, or with another code, is unknown.  Gender 0 is male and 1 female,
the reverse of the schema's coding, so it is mapped.  A name whose age or gender
field is not an integer (of at most 6 digits; gender 0 or 1), or that is not UTF-8
text, is removed by the step `unparsable_name`;
ages run to 116, which the common `age_above_max` step removes.  Files that are
not images (by extension) are not rows at all.  There are no identities and no
official splits: the split is random and seeded.  The crops are tight (aligned
faces, no margin): the manifest's margin is 0.0.
"""

from __future__ import annotations

import hashlib
import os
import re

import numpy as np
import pandas as pd

from ingest.sources.table import Options, Table
from ingest.sources.samples import Sample
from records import schema

NAME = "utkface"
LOOKS_FOR = "a folder where most image names start with <int>_<int>_ (utkface)"
HELP = "UTKFace's folder of [age]_[gender]_[race]_[date&time].jpg.chip.jpg crops"
SAMPLES = (Sample("utkface", "the UTKFace folder format", "ingest.sample_sources"),)
OPTIONS = ()   # reads none of the source flags (ingest.pipeline.SOURCE_FLAGS)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
MARGIN = 0.0
_INT = re.compile(r"[0-9]{1,6}")   # longer is no age (and would overflow an int64)
_GENDER = {0: schema.GENDER_MALE, 1: schema.GENDER_FEMALE}   # UTKFace code -> schema code
RACES = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}   # the race field


def image_files(src: str) -> list[str]:
    """Image files under `src`, relative to it, sorted (the row order)."""
    out = []
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        rel = os.path.relpath(folder, src)
        out += [name if rel == "." else os.path.join(rel, name)
                for name in files if name.lower().endswith(IMAGE_EXTENSIONS)]
    return sorted(out)


def parse_name(name: str) -> tuple[int, int] | None:
    """(age, UTKFace gender code) from a file name, or None if either field is
    not an integer of at most 6 digits (or the gender is not 0/1), or the name is not
    UTF-8 text."""
    try:
        name.encode("utf-8")        # a key and a manifest entry must be UTF-8 text
    except UnicodeEncodeError:
        return None
    fields = os.path.basename(name).split("_")
    if len(fields) < 3 or not (_INT.fullmatch(fields[0]) and _INT.fullmatch(fields[1])):
        return None
    age, gender = int(fields[0]), int(fields[1])
    return (age, gender) if gender in _GENDER else None


def parse_race(name: str) -> str:
    """The race word of a name with four fields (`age_gender_race_date`), else "" (unknown)."""
    fields = os.path.basename(name).split("_")
    return RACES.get(fields[2], "") if len(fields) >= 4 else ""


def recognise(src: str) -> bool:
    if not os.path.isdir(src):
        return False
    names = image_files(src)
    return bool(names) and sum(parse_name(n) is not None for n in names) * 2 > len(names)


def dataset(src: str) -> str:
    return NAME


def load_table(src: str, options: Options) -> Table:
    names = image_files(src)
    parsed = [parse_name(n) for n in names]
    age = np.array([p[0] if p else -1 for p in parsed], dtype=np.int64)
    frame = pd.DataFrame({
        "path": names,
        "name_valid": [p is not None for p in parsed],
        "age": age,
        "age_mean": age.astype(np.float64),
        "age_std": 0.0,
        "real_age": schema.REAL_AGE_UNKNOWN,
        "gender": [_GENDER[p[1]] if p else schema.GENDER_UNKNOWN for p in parsed],
        "face_score": np.nan,
        "identity": "",
        "split": "",
        "box": None,
        "race": [parse_race(n) for n in names],
    })
    # The labels are the names: a listing of names and sizes is what the table was read from.
    listing = "".join(f"{n}\t{os.path.getsize(os.path.join(src, n))}\n" for n in names)
    listing = listing.encode("utf-8", "surrogateescape")     # a non-UTF-8 name is a row too
    steps = [("unparsable_name", "the name is not age_gender[_race]_date, with an integer age and gender 0 or 1, "
                                   "as in 25_0_2_20170116174525125.jpg.chip.jpg", lambda d: ~d["name_valid"])]
    return Table(frame=frame, root=src, dataset=NAME, described=f"{len(names)} image names",
                 entries=len(frame), fingerprint=hashlib.sha256(listing).hexdigest(),
                 label=schema.LABEL_REAL, margin=MARGIN, steps=steps)
