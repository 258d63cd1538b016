"""The source seam: every data set ingest reads is one module here, and nothing
else in ingest knows a format.

A source (in the spirit of a TFDS builder) is a module with
- `NAME`: its --source name;
- `OPTIONS`: the source flags (ingest.pipeline.SOURCE_FLAGS) it reads; the others,
  given on the command line, are refused before anything is read;
- `MARGIN`: the face margin of its crops (the CSV: --margin's default);
- `recognise(src) -> bool`: whether `src` (a path) looks like this source;
- `dataset(src) -> str`: the default --out name (shards/<dataset>);
- `load_table(src, options) -> Table`: its metadata as one canonical table (one row per
  image, COLUMNS below plus whatever its own cleaning steps read), its own
  cleaning steps (each counted), and a fingerprint of what the table was read from.

`SOURCES` maps names to modules; `AUTO_ORDER` is the order `--source auto` tries
them in (a .csv file, a folder with wiki.mat/imdb.mat, a folder with
gt_avg_train.csv, a folder of UTKFace-named images).
"""

from __future__ import annotations

import os

from errors import DataError
from errors.paths import missing
from ingest.sources import appa_real, csv_table, imdb_wiki, utkface
from ingest.sources.table import COLUMNS, Options, Table, root_of


__all__ = ["AUTO", "AUTO_ORDER", "CHOICES", "COLUMNS", "SOURCES", "Options", "Table", "resolve",
           "root_of"]

SOURCES = {m.NAME: m for m in (imdb_wiki, utkface, appa_real, csv_table)}
AUTO_ORDER = (csv_table, imdb_wiki, appa_real, utkface)
AUTO = "auto"
CHOICES = (AUTO, *SOURCES)


def resolve(name: str, src: str):
    """The source module for --source `name` (auto: the first that recognises `src`)."""
    if not os.path.exists(src):
        raise DataError("--src " + missing(src, f"pass a data set folder (or a .csv), or make a sample with "
                                                f"`python -m ingest.sample --out {src}`"))
    if name != AUTO:
        if name not in SOURCES:
            raise DataError(f"--source {name}: unknown; choose one of {', '.join(CHOICES)}")
        return SOURCES[name]
    for module in AUTO_ORDER:
        if module.recognise(src):
            return module
    if os.path.isfile(src):
        raise DataError(f"--src {src}: is a file; pass the folder that holds it (wiki.mat or "
                        f"imdb.mat and the face folders 00/..99/, e.g. --src "
                        f"{os.path.dirname(src) or '.'}), a data set's folder, or a .csv file")
    raise DataError(f"--src {src}: not a known data set; looked for "
                    + "; ".join(m.LOOKS_FOR for m in AUTO_ORDER)
                    + " (or pass --source)")
