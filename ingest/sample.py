"""A synthetic `wiki_crop/` (or `imdb_crop/`) in the exact format of the real IMDB-WIKI download.

    python -m ingest.sample --out demo/wiki_crop --n 3000 [--seed 0]
    python -m ingest.sample --out demo/imdb_crop --n 3000 --dataset imdb
    python -m ingest.sample --out demo/UTKFace --n 3000 --dataset utkface   (every source's samples:
                                                  their source modules' SAMPLES, ingest.sources)

writes `wiki.mat` (a 1x1 struct, fields in the real order and dtypes) and the
JPEG folders `00/`..`99/`; with `--dataset imdb`, `imdb.mat` (key `imdb`) with
the same fields plus `celeb_names` (1, C) and `celeb_id` (1, N, 1-based into
celeb_names), as the real imdb.mat.  The rows, the images and the counts are
the same for both datasets (a given n and seed); only the .mat differs.
Every quirk ingest must survive is there: empty names,
NaN genders, -inf face scores with 1x1 images, second faces, implausible and
invalid dobs, ages > 100 and <= 0, grayscale / CMYK / palette / alpha files,
a few truncated and a few missing files.

It keeps the two contracts of `ingest.sample_contract`: pixels encode the age
(`age_level`, `age_from_pixels`), and the label distribution is fixed by `n` alone
(not the seed, not the dataset), so `expected_counts(n)` states exactly what
default cleaning keeps and skips.

In the imdb variant every row has the celeb_id of its person, also the rows
whose `name` cell is empty, so an identity split by celeb_id keeps those rows
with their person where a split by name could not.
"""

from __future__ import annotations

import entry  # first: how every command starts (python -m ingest.sample)

import argparse
import io
import multiprocessing
import os
from datetime import date

import numpy as np
import scipy.io
from PIL import Image

from ingest import sources
from ingest.sample_contract import MIN_N, age_from_pixels, age_level, count, face_pixels  # noqa: F401  (age_from_pixels: the tests' reader)
from ingest.sources.imdb_wiki import MAX_DATENUM, ORDINAL_OFFSET, UNIX_EPOCH_ORDINAL

WIKI_FIELDS = ("dob", "photo_taken", "full_path", "gender", "name",
               "face_location", "face_score", "second_face_score")
IMDB_FIELDS = WIKI_FIELDS + ("celeb_names", "celeb_id")
DATASETS = ("wiki", "imdb")     # also the .mat file name and its struct key

# Rows removed by each default cleaning step, as a fraction of n, in the order
# ingest.clean applies them (each row fails exactly its own step, and passes
# every earlier one, so the counts are exact).
REMOVED_FRACTIONS = (
    ("invalid_dob", 0.01),      # datenum with no calendar date (< 367 or past year 9999)
    ("no_face", 0.25),          # face_score -inf, stored as a 1x1 image
    ("second_face", 0.05),      # second_face_score is a number
    ("low_face_score", 0.10),   # face_score < 3
    ("age_above_max", 0.03),    # age > 100 (half via implausible dobs like 4077 = year 11)
    ("age_below_min", 0.03),    # age <= 0
)

# Image quirks among the rows default cleaning keeps (counts as a fraction of kept).
KEPT_QUIRKS = (
    ("missing", 0.01),          # listed in wiki.mat, file absent: skipped as "missing"
    ("truncated", 0.01),        # file cut in half: skipped as "truncated"
    ("grayscale", 0.08),
    ("cmyk", 0.03),
    ("palette", 0.02),          # a PNG (palette + transparency) saved under a .jpg name
    ("rgba", 0.02),             # a PNG with an alpha channel under a .jpg name
    ("tiny", 0.01),             # 1x1 .. 3x3 pixels
)
UNKNOWN_GENDER_FRACTION = 0.05  # of kept rows (all with readable files)


def category_counts(n: int) -> dict[str, int]:
    """Rows per category: each cleaning step's name, then "kept"."""
    if n < MIN_N:
        raise ValueError(f"--n must be at least {MIN_N} (got {n}) so every quirk appears")
    counts = {step: count(n, f) for step, f in REMOVED_FRACTIONS}
    counts["kept"] = n - sum(counts.values())
    return counts


def quirk_counts(kept: int) -> dict[str, int]:
    return {q: count(kept, f) for q, f in KEPT_QUIRKS}


def expected_counts(n: int) -> dict:
    """What `python -m ingest` with default flags reports on a sample of `n` rows:
    `entries`, `cleaning` [{step, removed, remaining}], `kept`, `skipped`
    {reason: count}, `written`, `unknown_gender` (among kept = written rows,
    i.e. what --require_gender additionally removes)."""
    cats = category_counts(n)
    remaining, cleaning = n, []
    for step, _ in REMOVED_FRACTIONS:
        remaining -= cats[step]
        cleaning.append({"step": step, "removed": cats[step], "remaining": remaining})
    quirks = quirk_counts(cats["kept"])
    skipped = {"missing": quirks["missing"], "truncated": quirks["truncated"]}
    return {"entries": n, "cleaning": cleaning, "kept": cats["kept"], "skipped": skipped,
            "written": cats["kept"] - sum(skipped.values()),
            "unknown_gender": count(cats["kept"], UNKNOWN_GENDER_FRACTION)}


# --- the table of rows ------------------------------------------------------

def _date_text(datenum: int) -> str:
    """The birth date as the real file names spell it (numpy copes with invalid
    datenums too: year 0 or > 9999, which Python's date cannot hold)."""
    day = np.datetime64("0000-01-01") + np.timedelta64(int(datenum) - 1, "D")
    return str(day)


def person_name(person: int) -> str:
    """The `name` (and imdb `celeb_names` entry) of the sample's person number `person`."""
    return f"Person {person:05d}"


def build_rows(n: int, seed: int = 0) -> list[dict]:
    """The ground-truth rows: category, fields for the .mat, and how to draw the image.
    `person` is the person number (the same for a row whose `name` is empty)."""
    rng = np.random.default_rng(seed)
    cats = category_counts(n)
    labels = np.array([c for c, k in cats.items() for _ in range(k)], dtype=object)
    rng.shuffle(labels)

    # People: several photos each (so an identity split means something), one
    # birth date and gender per person, as in the real data.
    n_people = max(2, n // 4)
    first, last = (np.datetime64(d).astype(int) + UNIX_EPOCH_ORDINAL + ORDINAL_OFFSET   # datenums
                   for d in ("1920-01-01", "1995-12-31"))
    people_dob = rng.integers(first, last + 1, n_people)
    people_gender = np.where(rng.random(n_people) < 0.7, 1.0, 0.0)

    kept_idx = np.flatnonzero(labels == "kept")
    quirks = quirk_counts(len(kept_idx))
    kept_order = rng.permutation(kept_idx)
    quirk_of: dict[int, str] = {}
    pos = 0
    for q, k in quirks.items():
        for i in kept_order[pos:pos + k]:
            quirk_of[int(i)] = q
        pos += k
    # unknown gender only on readable kept rows, so it is exact among written rows
    readable = [int(i) for i in kept_order if quirk_of.get(int(i)) not in ("missing", "truncated")]
    unknown_gender = set(readable[-count(len(kept_idx), UNKNOWN_GENDER_FRACTION):])
    extreme_ages = {readable[0]: 1, readable[1]: 100}   # the label range's ends always appear

    ids = 10_000 + rng.choice(100_000_000 - 10_000, n, replace=False)   # (never materialises the range)
    rows = []
    for i, cat in enumerate(labels):
        person = int(rng.integers(n_people))
        dob = int(people_dob[person])
        name = person_name(person) if rng.random() > 0.03 else ""
        gender = float(people_gender[person]) if rng.random() > 0.02 else float("nan")
        face_score = float(rng.uniform(3.0, 7.0))
        second = float("nan")
        age = int(round(rng.normal(36, 15)))
        if not 1 <= age <= 100:        # redraw uniformly rather than pile up at the ends
            age = int(rng.integers(1, 101))
        quirk = "rgb"
        if cat == "invalid_dob":
            dob = int(rng.integers(1, 367)) if i % 2 else int(rng.integers(MAX_DATENUM + 1, MAX_DATENUM + 50_000))
            photo_taken = int(rng.integers(1990, 2016))
        else:
            if cat == "no_face":
                face_score, quirk = float("-inf"), "no_face"
            elif cat == "second_face":
                second = float(rng.uniform(0.5, 4.0))
            elif cat == "low_face_score":
                face_score = float(rng.uniform(-1.0, 2.99))
            elif cat == "age_above_max":
                if i % 2:
                    dob = 4077            # the real file's implausible "year 11"
                else:
                    age = int(rng.integers(101, 131))
            elif cat == "age_below_min":
                age = int(rng.integers(-3, 1))
            elif cat == "kept":
                quirk = quirk_of.get(i, "rgb")
                age = extreme_ages.get(i, age)
                gender = float("nan") if i in unknown_gender else float(people_gender[person])
            birth_year = date.fromordinal(dob - ORDINAL_OFFSET).year
            photo_taken = birth_year + age if dob != 4077 else int(rng.integers(1990, 2016))
        if cat != "kept" and rng.random() < 0.01:
            quirk = "missing"   # missing files among removed rows too: never read
        ident = int(ids[i])
        full_path = f"{ident % 100:02d}/{ident}_{_date_text(dob)}_{photo_taken}.jpg"
        rows.append({"category": cat, "quirk": quirk, "full_path": full_path, "person": person,
                     "dob": dob, "photo_taken": photo_taken, "gender": gender, "name": name,
                     "face_score": face_score, "second_face_score": second,
                     "age": photo_taken - date.fromordinal(dob - ORDINAL_OFFSET).year
                     if cat != "invalid_dob" else None,
                     "seed": int(rng.integers(2**31))})
    return rows


# --- wiki.mat / imdb.mat ----------------------------------------------------

def _cells(values) -> np.ndarray:
    out = np.empty((1, len(values)), dtype=object)
    for j, v in enumerate(values):
        out[0, j] = v
    return out


def celebs(rows: list[dict]) -> tuple[list[str], np.ndarray]:
    """imdb.mat's (celeb_names, celeb_id) for `rows`: the distinct people in
    person order, and per row the 1-based index of its person in that list."""
    people = sorted({r["person"] for r in rows})
    index = {p: i + 1 for i, p in enumerate(people)}
    return [person_name(p) for p in people], np.array([index[r["person"]] for r in rows])


def write_mat(path: str, rows: list[dict], key: str = "wiki") -> None:
    """Save `rows` as the real `wiki.mat` layout: `loadmat(path)[key]` is a 1x1
    struct whose fields are (1, N) arrays in WIKI_FIELDS order.  key "imdb":
    the real imdb.mat layout, IMDB_FIELDS (adds celeb_names (1, C) cells and
    celeb_id (1, N), 1-based into celeb_names)."""
    if key not in DATASETS:
        raise ValueError(f"key must be one of {DATASETS}, got {key!r}")
    fields = IMDB_FIELDS if key == "imdb" else WIKI_FIELDS
    struct = np.empty((1, 1), dtype=[(f, "O") for f in fields])
    cell = struct[0, 0]
    cell["dob"] = np.array([[r["dob"] for r in rows]], dtype=np.int32)
    cell["photo_taken"] = np.array([[r["photo_taken"] for r in rows]], dtype=np.uint16)
    cell["full_path"] = _cells([np.array([r["full_path"]]) for r in rows])
    cell["gender"] = np.array([[r["gender"] for r in rows]], dtype=np.float64)
    cell["name"] = _cells([np.array([r["name"]]) if r["name"] else np.empty((0,), dtype="<U1")
                           for r in rows])
    locations = []
    for r in rows:
        if r["quirk"] == "no_face":
            locations.append(np.array([[1.0, 1.0, 1.0, 1.0]]))
        else:
            locations.append(np.array([[20.0, 20.0, 120.0, 120.0]]) + r["seed"] % 7)
    cell["face_location"] = _cells(locations)
    cell["face_score"] = np.array([[r["face_score"] for r in rows]], dtype=np.float64)
    cell["second_face_score"] = np.array([[r["second_face_score"] for r in rows]], dtype=np.float64)
    if key == "imdb":
        names, ids = celebs(rows)
        cell["celeb_names"] = _cells([np.array([name]) for name in names])
        # unsigned 16 bit holds the real file's 20284 celebrities (its exact integer
        # dtype is not checked here; ingest casts celeb_id to int64 either way)
        cell["celeb_id"] = ids.astype(np.uint16 if len(names) <= np.iinfo(np.uint16).max
                                      else np.uint32)[None, :]
    scipy.io.savemat(path, {key: struct})


# --- images -----------------------------------------------------------------

FACE_PX = (40, 300)   # side range of the sample's face crops: small, so tests stay fast
                      # (the real wiki crops are mostly 150-600 px: --face_px 150 600)


def _image_bytes(row: dict, face_px: tuple[int, int] = FACE_PX) -> bytes | None:
    """The file content for one row (None: the file is missing)."""
    quirk = row["quirk"]
    if quirk == "missing":
        return None
    rng = np.random.default_rng(row["seed"])
    level = age_level(row["age"] if row["age"] is not None else 0)
    if quirk == "no_face":
        w = h = 1
    elif quirk == "tiny":
        w, h = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    else:
        lo, hi = face_px
        w = int(rng.integers(lo, hi + 1))
        h = int(np.clip(w * rng.uniform(0.8, 1.25), lo, hi))
    pixels = face_pixels(level, w, h, rng)
    image = Image.fromarray(pixels, "RGB")
    buf = io.BytesIO()
    if quirk == "grayscale":
        image.convert("L").save(buf, "JPEG", quality=92)
    elif quirk == "cmyk":
        image.convert("CMYK").save(buf, "JPEG", quality=92)
    elif quirk == "palette":
        gray = Image.fromarray(pixels[..., 0], "L").convert("P")  # palette index == gray level
        gray.putpalette([v for g in range(256) for v in (g, g, g)])
        gray.save(buf, "PNG", transparency=255)                   # index 255 is never used
    elif quirk == "rgba":
        image.putalpha(255)
        image.save(buf, "PNG")
    else:
        image.save(buf, "JPEG", quality=int(rng.integers(80, 96)))
    data = buf.getvalue()
    if quirk == "truncated":
        data = data[: len(data) // 2]
    return data


def _write_image(args: tuple[str, dict, tuple[int, int]]) -> None:
    root, row, face_px = args
    data = _image_bytes(row, face_px)
    if data is not None:
        with open(os.path.join(root, row["full_path"]), "wb") as f:
            f.write(data)


def generate(out: str, n: int, seed: int = 0, workers: int | None = None,
             face_px: tuple[int, int] = FACE_PX, *, dataset: str = "wiki") -> list[dict]:
    """Write the sample folder `out` (wiki.mat or imdb.mat + 00/..99/); returns the
    ground-truth rows.  `face_px`: (min, max) side of the face crops in pixels;
    `dataset`: "wiki" or "imdb" (same rows and images, only the .mat differs)."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    rows = build_rows(n, seed)
    os.makedirs(out, exist_ok=True)
    for folder in range(100):
        os.makedirs(os.path.join(out, f"{folder:02d}"), exist_ok=True)
    write_mat(os.path.join(out, f"{dataset}.mat"), rows, key=dataset)
    workers = workers or min(os.cpu_count() or 1, 8)
    jobs = [(out, r, tuple(face_px)) for r in rows]
    if workers == 1 or n < 2000:
        for job in jobs:
            _write_image(job)
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for _ in pool.imap_unordered(_write_image, jobs, chunksize=64):
                pass
    return rows


# --- the source seam's writer interface (ingest.sources.samples) -------------

def write_sample(name: str, out: str, n: int, seed: int = 0, workers: int | None = None,
                 face_px: tuple[int, int] | None = None) -> list[dict]:
    return generate(out, n, seed, workers, face_px=tuple(face_px or FACE_PX), dataset=name)


def sample_counts(name: str, n: int, seed: int = 0) -> dict:
    """`expected_counts(n)` (the same for both datasets and every seed)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")
    return expected_counts(n)


def describe(name: str, out: str, exp: dict) -> str:
    return (f"wrote {out}/{name}.mat with {exp['entries']} entries; default ingest keeps {exp['kept']}, "
            f"skips {sum(exp['skipped'].values())} unreadable files, writes {exp['written']}")


class _Parser(argparse.ArgumentParser):
    """argparse, not absl flags (this entry point must not collide with ingest's), whose
    parse_args also refuses values no sample can be made of (a usage error, status 2)."""

    def parse_args(self, args=None, namespace=None):
        args = super().parse_args(args, namespace)
        if args.n < MIN_N:
            self.error(f"--n must be at least {MIN_N} (got {args.n}) so every quirk appears")
        if not 4 <= args.face_px[0] <= args.face_px[1]:
            self.error(f"--face_px {args.face_px[0]} {args.face_px[1]}: need 4 <= MIN <= MAX")
        return args


def parser() -> argparse.ArgumentParser:
    """Every flag of `python -m ingest.sample`, defined here only."""
    parser = _Parser(prog="python -m ingest.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder to create, e.g. demo/wiki_crop")
    parser.add_argument("--n", type=int, default=2000, help=f"rows in the .mat (>= {MIN_N})")
    parser.add_argument("--dataset", choices=tuple(sources.SAMPLES), default="wiki", help=sources.sample_help())
    parser.add_argument("--seed", type=int, default=0, help="which sample (counts depend on --n only)")
    parser.add_argument("--workers", type=int, default=0, help="image-writing processes (0: all cores)")
    parser.add_argument("--face_px", type=int, nargs=2, default=FACE_PX, metavar=("MIN", "MAX"),
                        help=f"side range of the face crops in pixels (default {FACE_PX[0]} {FACE_PX[1]}; "
                             f"the real wiki crops are mostly 150 600)")
    return parser


def main(args: argparse.Namespace) -> int:
    """Write the sample `args` (from `parser()`) describes; print what ingest will make of it."""
    chosen = sources.SAMPLES[args.dataset]
    chosen.write(args.out, args.n, args.seed, args.workers or None, tuple(args.face_px))
    print(chosen.describe(args.out, chosen.expected(args.n, args.seed)))
    return 0


if __name__ == "__main__":
    entry.run_parsed(main, parser())
