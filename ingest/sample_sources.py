"""Synthetic UTKFace, APPA-REAL and CSV data sets in their real formats, quirks
included (`python -m ingest.sample --dataset utkface|appa_real|csv`).

As in the wiki sample, the pixels of every face encode its int label
(`ingest.sample_contract.age_level`), and the counts are fixed by `n` alone, so
`expected_counts(dataset, n)` states exactly what default ingest reports:
rows removed per cleaning step, files skipped per reason, records written.

- utkface: `UTKFace/`-style flat folder of 200x200 JPEGs named
  `[age]_[gender]_[race]_[date&time].jpg.chip.jpg` (gender 0 male, 1 female);
  some names lack the race field (kept), some have a non-integer age or gender
  field (removed: unparsable_name), ages up to 116 (removed: age_above_max),
  and a few non-image files (not rows at all).
- appa_real: `appa-real-release/` with train/ valid/ test/ holding NNNNNN.jpg (a
  photo whose pixels do NOT encode the age) and NNNNNN.jpg_face.jpg (the crop
  that does), gt_avg_{train,valid,test}.csv, and allcategories_{train,valid}.csv
  (none for test: its genders are unknown).  Some apparent means round to 0
  (removed: age_below_min), one is above 100.5 (clipped to 100, kept), some face
  crops are missing (skipped: missing).
- csv: `faces.csv` (path,age,gender,x_min,y_min,x_max,y_max,identity) and
  `faces_split.csv` (the same rows plus split) over `photos/`: photos with a
  face box on a background of level BACKGROUND, non-integer ages, gender words
  in any case, bad ages and boxes, repeated paths, paths leaving the folder and
  missing files.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from ingest.sample_contract import MIN_N, age_level, count, face_pixels
from records import schema

DATASETS = ("utkface", "appa_real", "csv")
BACKGROUND = 250          # the CSV photos' level outside the face box (no age maps to it)
UTK_SIDE = 200
NON_IMAGES = ("README.txt", ".DS_Store", "landmark_list.txt")
APPA_FOLDERS = (("train", 0.5), ("valid", 0.25), ("test", 0.25))
APPA_WITH_CATEGORIES = ("train", "valid")
CSV_FILES = ("faces.csv", "faces_split.csv")


def _jpeg(pixels: np.ndarray, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _write(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


# --- UTKFace -----------------------------------------------------------------

UTK_REMOVED = (("unparsable_name", 0.02), ("age_above_max", 0.03))
UTK_NO_RACE = 0.05        # of kept names: no race field


def utkface_rows(n: int, seed: int = 0) -> list[dict]:
    """One dict per image file: name, category, age (int label or None), gender
    (the schema's coding: 1 male, 0 female)."""
    rng = np.random.default_rng(seed)
    cats = {c: count(n, f) for c, f in UTK_REMOVED}
    cats["kept"] = n - sum(cats.values())
    labels = np.array([c for c, k in cats.items() for _ in range(k)], dtype=object)
    rng.shuffle(labels)
    kept = np.flatnonzero(labels == "kept")
    no_race = set(rng.choice(kept, count(len(kept), UTK_NO_RACE), replace=False).tolist())
    extremes = {int(kept[0]): 1, int(kept[1]): 100}
    rows = []
    for i, cat in enumerate(labels):
        utk_gender = int(rng.integers(2))
        age = extremes.get(i, int(np.clip(round(rng.normal(33, 18)), 1, 100)))
        stamp = f"2017{int(rng.integers(101, 1232)):04d}{int(rng.integers(10**8, 10**9))}{i % 10}"
        race = str(int(rng.integers(5)))
        if cat == "age_above_max":
            age = 116 if i == np.flatnonzero(labels == cat)[0] else int(rng.integers(101, 117))
        fields = [str(age), str(utk_gender), race, stamp]
        if cat == "unparsable_name":
            if i % 2:
                fields[0] = f"{age}.5"           # a non-integer age field
            else:
                fields[1] = "x"                  # a non-integer gender field
            age = None
        elif i in no_race:
            del fields[2]
        rows.append({"name": "_".join(fields) + ".jpg.chip.jpg", "category": cat, "age": age,
                     "gender": 1 - utk_gender, "seed": int(rng.integers(2**31))})
    return rows


def write_utkface(out: str, n: int, seed: int = 0) -> list[dict]:
    rows = utkface_rows(n, seed)
    for r in rows:
        rng = np.random.default_rng(r["seed"])
        _write(os.path.join(out, r["name"]),
               _jpeg(face_pixels(age_level(r["age"] or 30), UTK_SIDE, UTK_SIDE, rng)))
    for name in NON_IMAGES:
        _write(os.path.join(out, name), b"not an image\n")
    return rows


# --- APPA-REAL ---------------------------------------------------------------

APPA_BELOW_MIN = 0.03     # apparent mean < 0.5: age 0
APPA_MISSING = 0.02       # of kept rows: the _face.jpg crop is absent


def appa_rows(n: int, seed: int = 0) -> list[dict]:
    """One dict per gt_avg row: folder, split, file_name, the csv fields, category
    (age_below_min or kept), quirk (missing or ""), gender word, age (int label)."""
    rng = np.random.default_rng(seed)
    sizes = [int(n * f) for _, f in APPA_FOLDERS]
    sizes[0] += n - sum(sizes)
    folders = [name for (name, _), k in zip(APPA_FOLDERS, sizes) for _ in range(k)]
    below = set(rng.choice(n, count(n, APPA_BELOW_MIN), replace=False).tolist())
    kept = [i for i in range(n) if i not in below]
    missing = set(rng.choice(kept, count(len(kept), APPA_MISSING), replace=False).tolist())
    readable = [i for i in kept if i not in missing]
    top = readable[0]                                 # an apparent mean above 100.5: clipped to 100
    rows = []
    for i, folder in enumerate(folders):
        real = int(rng.integers(1, 90))
        mean = float(np.clip(real + rng.normal(0, 4), 1.0, 99.0))
        if i in below:
            mean = float(rng.uniform(0.0, 0.49))
        elif i == top:
            mean = 100.7
        mean = round(mean, 6)
        rows.append({"folder": folder, "split": "val" if folder == "valid" else folder,
                     "file_name": f"{i:06d}.jpg", "num_ratings": int(rng.integers(30, 40)),
                     "apparent_age_avg": mean, "apparent_age_std": round(float(rng.uniform(1, 8)), 6),
                     "real_age": real, "age": schema.label_age(mean),
                     "category": "age_below_min" if i in below else "kept",
                     "quirk": "missing" if i in missing else "",
                     "gender_word": "male" if rng.random() < 0.5 else "female",
                     "seed": int(rng.integers(2**31))})
    return rows


def write_appa_real(out: str, n: int, seed: int = 0) -> list[dict]:
    rows = appa_rows(n, seed)
    for folder, _ in APPA_FOLDERS:
        mine = [r for r in rows if r["folder"] == folder]
        with open(os.path.join(_mkdir(out), f"gt_avg_{folder}.csv"), "w") as f:
            f.write("file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n")
            for r in mine:
                f.write(f"{r['file_name']},{r['num_ratings']},{r['apparent_age_avg']:.6f},"
                        f"{r['apparent_age_std']:.6f},{r['real_age']}\n")
        if folder in APPA_WITH_CATEGORIES:
            with open(os.path.join(out, f"allcategories_{folder}.csv"), "w") as f:
                f.write("file,gender,race,makeup,time,happiness\n")
                for r in mine:
                    f.write(f"{r['file_name']},{r['gender_word']},caucasian,no_makeup,"
                            f"daytime,neutral\n")
        for r in mine:
            rng = np.random.default_rng(r["seed"])
            base = os.path.join(out, folder, r["file_name"])
            # the photo: not the label's level, so reading it instead of the crop shows
            _write(base, _jpeg(face_pixels(BACKGROUND, 90, 70, rng)))
            if r["quirk"] != "missing":
                side = int(rng.integers(40, 90))
                _write(base + "_face.jpg", _jpeg(face_pixels(age_level(r["age"]), side, side, rng)))
    return rows


def _mkdir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


# --- CSV ---------------------------------------------------------------------

CSV_REMOVED = (("invalid_age", 0.02), ("invalid_box", 0.02), ("duplicate_path", 0.02),
               ("age_above_max", 0.02), ("age_below_min", 0.02))
CSV_SKIPPED = (("missing", 0.01), ("unsafe_path", 0.01))    # of kept rows
GENDER_WORDS = (("M", 1), ("m", 1), ("male", 1), ("MALE", 1), ("F", 0), ("f", 0),
                ("female", 0), ("Female", 0), ("", -1))


def csv_rows(n: int, seed: int = 0) -> list[dict]:
    """One dict per CSV row (file order): path, age text, gender word and code,
    box, photo size, identity, split, category, quirk, age (int label of kept rows)."""
    rng = np.random.default_rng(seed)
    cats = {c: count(n, f) for c, f in CSV_REMOVED}
    cats["kept"] = n - sum(cats.values())
    labels = [c for c, k in cats.items() for _ in range(k)]
    kept_total = cats["kept"]
    quirks = [q for q, f in CSV_SKIPPED for _ in range(count(kept_total, f))]
    rows = []
    for i, cat in enumerate(labels):
        w, h = int(rng.integers(80, 160)), int(rng.integers(80, 160))
        bw, bh = int(rng.integers(20, w // 2)), int(rng.integers(20, h // 2))
        # every 5th face touches the photo's edge, so the margin must be clipped
        x0 = 0 if i % 5 == 0 else int(rng.integers(0, w - bw))
        y0 = int(rng.integers(0, h - bh))
        mean = round(float(np.clip(rng.normal(35, 16), 1, 99)) + float(rng.choice([0, 0.25, 0.5, 0.75])), 2)
        word, code = GENDER_WORDS[int(rng.integers(len(GENDER_WORDS)))]
        row = {"path": f"photos/{i:05d}.jpg", "age_text": f"{mean:g}", "age_mean": mean,
               "gender_word": word, "gender": code, "box": (x0, y0, x0 + bw, y0 + bh),
               "size": (w, h), "identity": f"person-{int(rng.integers(n // 4))}" if i % 7 else "",
               "split": str(rng.choice(["train", "train", "val", "test"])), "category": cat,
               "quirk": "", "seed": int(rng.integers(2**31))}
        if cat == "invalid_age":
            row["age_text"], row["age_mean"] = ["", "abc", "n/a"][i % 3], None
        elif cat == "invalid_box":
            x0, y0, x1, y1 = row["box"]
            row["box"] = (x1, y0, x0, y1) if i % 2 else (x0, y0, x1, "")
        elif cat == "age_above_max":
            row["age_mean"] = float(rng.integers(101, 120)) + 0.25
            row["age_text"] = f"{row['age_mean']:g}"
        elif cat == "age_below_min":
            row["age_mean"] = 0.25
            row["age_text"] = "0.25"
        rows.append(row)
    kept = [r for r in rows if r["category"] == "kept"]
    for r, q in zip(kept[-len(quirks):], quirks):
        r["quirk"] = q
    for j, r in enumerate(r for r in kept if r["quirk"] == "unsafe_path"):
        # never opened; each unique, so no unsafe row is also a duplicate_path
        r["path"] = f"../outside-{j}.jpg" if j % 2 == 0 else ("/etc/hostname" if j == 1 else f"/etc/hostname-{j}")
    # duplicates repeat a readable kept row's path, later in the file
    readable = [r for r in kept if not r["quirk"]]
    for r, first in zip([r for r in rows if r["category"] == "duplicate_path"], readable):
        r["path"], r["quirk"], r["duplicate_of"] = first["path"], "duplicate", first
    order = rng.permutation(len(rows))
    rows = [rows[j] for j in order]
    # a duplicate must come after its first row: move each one to the end
    rows = [r for r in rows if r["quirk"] != "duplicate"] + [r for r in rows if r["quirk"] == "duplicate"]
    for r in rows:
        if r["age_mean"] is not None:
            r["age"] = int(schema.round_age(r["age_mean"]))
        else:
            r["age"] = None
    return rows


def photo_pixels(row: dict) -> np.ndarray:
    """The photo of a CSV row: BACKGROUND, with the face box at the label's level."""
    rng = np.random.default_rng(row["seed"])
    w, h = row["size"]
    pixels = face_pixels(BACKGROUND, w, h, rng)
    x0, y0, x1, y1 = row["box"]
    if all(isinstance(v, int) for v in (x0, y0, x1, y1)) and x1 > x0:
        pixels[y0:y1, x0:x1] = face_pixels(age_level(row["age"] if row["age"] is not None else 0),
                                     x1 - x0, y1 - y0, rng)
    return pixels


def write_csv(out: str, n: int, seed: int = 0) -> list[dict]:
    rows = csv_rows(n, seed)
    for r in rows:
        if r["quirk"] in ("missing", "unsafe_path", "duplicate"):
            continue
        _write(os.path.join(out, r["path"]), _jpeg(photo_pixels(r), 95))
    _write(os.path.join(os.path.dirname(os.path.abspath(out)), "outside.jpg"),
           _jpeg(face_pixels(100, 10, 10, np.random.default_rng(0))))
    for name in CSV_FILES:
        with open(os.path.join(out, name), "w") as f:
            f.write("path,age,gender,x_min,y_min,x_max,y_max,identity"
                    + (",split\n" if name == "faces_split.csv" else "\n"))
            for r in rows:
                f.write(",".join([r["path"], r["age_text"], r["gender_word"],
                                  *map(str, r["box"]), r["identity"]])
                        + (f",{r['split']}\n" if name == "faces_split.csv" else "\n"))
    return rows


# --- what default ingest reports ------------------------------------------------

def expected_counts(dataset: str, n: int, seed: int = 0) -> dict:
    """`entries`, `cleaning` [{step, removed, remaining}], `kept`, `skipped`,
    `written`, `gender_counts` of default `python -m ingest` on the sample."""
    if dataset == "utkface":
        rows = utkface_rows(n, seed)
        steps = ["unparsable_name", "age_above_max", "age_below_min"]
        skipped: dict = {}
        written = [r for r in rows if r["category"] == "kept"]
    elif dataset == "appa_real":
        rows = appa_rows(n, seed)
        steps = ["invalid_age", "age_above_max", "age_below_min"]
        skipped = {"missing": sum(r["quirk"] == "missing" for r in rows)}
        written = [r for r in rows if r["category"] == "kept" and not r["quirk"]]
    elif dataset == "csv":
        rows = csv_rows(n, seed)
        steps = ["invalid_age", "invalid_box", "duplicate_path", "age_above_max", "age_below_min"]
        skipped = {q: sum(r["quirk"] == q and r["category"] == "kept" for r in rows)
                   for q, _ in CSV_SKIPPED}
        written = [r for r in rows if r["category"] == "kept" and not r["quirk"]]
    else:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    remaining, cleaning = len(rows), []
    for step in steps:
        removed = sum(r["category"] == step for r in rows)
        remaining -= removed
        cleaning.append({"step": step, "removed": removed, "remaining": remaining})
    genders = [r.get("gender") for r in written]
    if dataset == "appa_real":
        genders = [{"male": 1, "female": 0}[r["gender_word"]] if r["folder"] in APPA_WITH_CATEGORIES
                   else -1 for r in written]
    return {"entries": len(rows), "cleaning": cleaning, "kept": remaining,
            "skipped": dict(sorted(skipped.items())), "written": len(written),
            "gender_counts": {"male": genders.count(1), "female": genders.count(0),
                              "unknown": genders.count(-1)}}


WRITERS = {"utkface": write_utkface, "appa_real": write_appa_real, "csv": write_csv}


def generate(dataset: str, out: str, n: int, seed: int = 0) -> list[dict]:
    """Write the sample of `dataset` into the folder `out`; returns its ground-truth rows."""
    if dataset not in WRITERS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if n < MIN_N:
        raise ValueError(f"n must be at least {MIN_N} (got {n}) so every quirk appears")
    os.makedirs(out, exist_ok=True)
    return WRITERS[dataset](out, n, seed)


# --- the source seam's writer interface (ingest.sources.samples) -------------

def write_sample(name: str, out: str, n: int, seed: int = 0, workers: int | None = None,
                 face_px: tuple[int, int] | None = None) -> list[dict]:
    """`generate` (these formats are written in one process at their own sizes:
    `workers` and `face_px` are the IMDB-WIKI sample's)."""
    return generate(name, out, n, seed)


def sample_counts(name: str, n: int, seed: int = 0) -> dict:
    return expected_counts(name, n, seed)


def describe(name: str, out: str, exp: dict) -> str:
    return (f"wrote the {name} sample {out} with {exp['entries']} entries; default "
            f"ingest keeps {exp['kept']}, skips {sum(exp['skipped'].values())} files, writes "
            f"{exp['written']}")
