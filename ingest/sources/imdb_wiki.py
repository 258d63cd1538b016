"""IMDB-WIKI: wiki.mat / imdb.mat and the face crops -> the canonical table.

The .mat is a 1x1 Matlab struct of (1, N) arrays (see ingest.sample for the
exact layout); this module is the only code that knows it.  Its own cleaning
steps, in the original recipe's order: invalid_dob, no_face, second_face,
low_face_score (then the common age steps).  The label is the real age
(photo_taken - birth year); identities are the name (celeb_id for imdb).  Birth years are
computed vectorized with numpy datetime64, because imdb.mat has 460k rows and a
per-row `date.fromordinal` loop would dominate the metadata step.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from errors import DataError
from faces import facebox
from ingest.sources.table import Options, Table, sha256_of
from ingest.sources.samples import Sample
from records import schema

NAME = "imdb_wiki"
LOOKS_FOR = "a folder with wiki.mat or imdb.mat (imdb_wiki)"
HELP = "IMDB-WIKI's wiki_crop/ or imdb_crop/ (wiki.mat or imdb.mat and the face folders 00/..99/)"
SAMPLES = (Sample("wiki", "wiki.mat and 00/..99/", "ingest.sample"),
           Sample("imdb", "imdb.mat (adds celeb_names, celeb_id) with the wiki sample's rows, images and counts",
                  "ingest.sample"))
OPTIONS = ()   # reads none of the source flags (ingest.pipeline.SOURCE_FLAGS)
KNOWN_MATS = (("wiki.mat", "wiki"), ("imdb.mat", "imdb"))  # file name, struct key
MARGIN = facebox.DEFAULT_MARGIN   # the crops' margin around the detected face, per side

# Matlab datenum 1 is 1 Jan of year 0; Python's ordinal 1 is 1 Jan of year 1,
# 366 days later (year 0 is a leap year).  Python dates only span years 1..9999,
# which is what "a valid date" means here, as in `date.fromordinal(d - 366)`.
ORDINAL_OFFSET = 366
MIN_DATENUM = 1 + ORDINAL_OFFSET                # 0001-01-01
MAX_DATENUM = 3_652_059 + ORDINAL_OFFSET        # 9999-12-31
UNIX_EPOCH_ORDINAL = 719_163                   # date(1970, 1, 1).toordinal()


def find_mat(src: str) -> tuple[str, str]:
    """(path to the .mat inside `src`, its struct key 'wiki' or 'imdb')."""
    if os.path.isfile(src):
        raise DataError(f"--src {src}: is a file; pass the folder that holds it (wiki.mat or "
                        f"imdb.mat and the face folders 00/..99/), e.g. --src "
                        f"{os.path.dirname(src) or '.'}")
    if not os.path.isdir(src):
        raise DataError(f"--src {src}: no such directory; pass the extracted wiki_crop/ "
                        f"(or imdb_crop/) folder, or make a sample with "
                        f"`python -m ingest.sample --out {src}`")
    for name, key in KNOWN_MATS:
        path = os.path.join(src, name)
        if os.path.isfile(path):
            return path, key
    raise DataError(f"--src {src}: holds neither wiki.mat nor imdb.mat; pass the folder "
                    f"the IMDB-WIKI archive extracts to (e.g. wiki_crop/)")


def birth_years(dob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized `date.fromordinal(dob - 366).year`: (years int64, valid bool).
    Invalid datenums (no date in years 1..9999) get year 0 and valid False."""
    dob = np.asarray(dob, dtype=np.int64)
    valid = (dob >= MIN_DATENUM) & (dob <= MAX_DATENUM)
    days = np.where(valid, dob - ORDINAL_OFFSET - UNIX_EPOCH_ORDINAL, 0)
    years = days.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    return np.where(valid, years, 0), valid


def _strings(cells: np.ndarray) -> list[str]:
    """Cells of 1-element unicode arrays; empty (0,) arrays (nameless rows) -> ''."""
    return [str(c[0]) if c.size else "" for c in cells.ravel()]


REQUIRED_FIELDS = ("dob", "photo_taken", "full_path", "gender", "name", "face_score",
                   "second_face_score")


def _check_struct(struct, path: str, key: str) -> None:
    """The struct has every field load() reads, all of one length, and at least one entry."""
    names = getattr(getattr(struct, "dtype", None), "names", None)
    if not names:
        raise DataError(f"{path}: {key!r} is a plain {type(struct).__name__} array, not the "
                        f"IMDB-WIKI struct of fields; re-download or re-extract it")
    missing = [f for f in REQUIRED_FIELDS if f not in names]
    if missing:
        raise DataError(f"{path}: the {key!r} struct has no field {', '.join(missing)}; "
                        f"re-download or re-extract it")
    lengths = {f: int(np.asarray(struct[f]).size) for f in REQUIRED_FIELDS}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{path}: fields of different lengths ({', '.join(f'{k} {v}' for k, v in lengths.items())}); "
                        f"the file is damaged: re-download or re-extract it")
    if not lengths["dob"]:
        raise DataError(f"{path}: the {key!r} struct has 0 entries; re-download or re-extract it")


def load(path: str, key: str | None = None) -> pd.DataFrame:
    """Columns: full_path, name, dob, photo_taken, gender, face_score,
    second_face_score, birth_year, dob_valid, age (and celeb_id for imdb)."""
    import scipy.io   # here: only the .mat sources load SciPy

    key = key or dict(KNOWN_MATS).get(os.path.basename(path))
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (0 bytes); re-download or re-extract it")
    try:
        struct = scipy.io.loadmat(path)[key][0, 0]
    except (OSError, ValueError, KeyError, IndexError, scipy.io.matlab.MatReadError) as e:
        raise DataError(f"{path}: not a readable IMDB-WIKI .mat with a {key!r} struct ({e}); "
                        f"re-download or re-extract it") from e
    _check_struct(struct, path, key)
    dob = struct["dob"].ravel().astype(np.int64)
    years, valid = birth_years(dob)
    photo_taken = struct["photo_taken"].ravel().astype(np.int64)
    frame = pd.DataFrame({
        "full_path": _strings(struct["full_path"]),
        "name": _strings(struct["name"]),
        "dob": dob,
        "photo_taken": photo_taken,
        "gender": struct["gender"].ravel().astype(np.float64),
        "face_score": struct["face_score"].ravel().astype(np.float64),
        "second_face_score": struct["second_face_score"].ravel().astype(np.float64),
        "birth_year": years,
        "dob_valid": valid,
        "age": np.where(valid, photo_taken - years, 0),
    })
    if "celeb_id" in (struct.dtype.names or ()):
        frame["celeb_id"] = struct["celeb_id"].ravel().astype(np.int64)
    return frame


def recognise(src: str) -> bool:
    return os.path.isdir(src) and any(os.path.isfile(os.path.join(src, name))
                                      for name, _ in KNOWN_MATS)


def dataset(src: str) -> str:
    return find_mat(src)[1]


def steps(options: Options) -> list:
    """The .mat's own cleaning steps.  The dob check comes first: an invalid
    datenum has no age, so no later step could judge it."""
    t = options.min_face_score
    return [
        ("invalid_dob", "dob is not a date in years 1..9999", lambda d: ~d["dob_valid"]),
        ("no_face", "face_score is -inf", lambda d: np.isneginf(d["face_score"])),
        ("second_face", "second_face_score is not NaN", lambda d: d["second_face_score"].notna()),
        ("low_face_score", f"face_score < {t:g}", lambda d: ~(d["face_score"] >= t)),
    ]


def load_table(src: str, options: Options) -> Table:
    path, key = find_mat(src)
    frame = load(path, key)
    gender = frame["gender"].to_numpy()
    frame["path"] = frame["full_path"]
    frame["age_mean"] = frame["age"].astype(np.float64)
    frame["age_std"] = 0.0
    frame["real_age"] = schema.REAL_AGE_UNKNOWN
    frame["gender"] = np.where(np.isnan(gender), schema.GENDER_UNKNOWN,
                               np.nan_to_num(gender)).astype(np.int64)
    frame["identity"] = (frame["celeb_id"].astype(str) if "celeb_id" in frame else frame["name"])
    frame["split"] = ""
    frame["box"] = None
    return Table(frame=frame, root=src, dataset=key, described=os.path.basename(path),
                 entries=len(frame), fingerprint=sha256_of([path]), label=schema.LABEL_REAL, margin=MARGIN,
                 steps=steps(options), has_identity=True)
