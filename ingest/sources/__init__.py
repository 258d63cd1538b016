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
  cleaning steps (each counted), and a fingerprint of what the table was read from;
- `LOOKS_FOR`: what auto-detection looks for, `HELP`: its part of --source's help;
- `SAMPLES`: its synthetic samples (`ingest.sources.samples.Sample`: the writer, the
  counts default ingest reports, its part of `python -m ingest.sample --dataset`'s help).

A new source is one module and its line in `SOURCES` (and `AUTO_ORDER`).

`SOURCES` maps names to modules; `AUTO_ORDER` is the order `--source auto` tries
them in (a .csv file, a folder with wiki.mat/imdb.mat, a folder with
gt_avg_train.csv, a folder of UTKFace-named images).
"""

from __future__ import annotations

import os

from errors import DataError
from errors.paths import missing
from ingest.sources import appa_real, csv_table, imdb_wiki, utkface
from ingest.sources.samples import Sample
from ingest.sources.table import COLUMNS, Options, Table, root_of


__all__ = ["AUTO", "AUTO_ORDER", "CHOICES", "COLUMNS", "SAMPLES", "SOURCES", "Options", "Sample", "Table",
           "resolve", "root_of", "sample_help", "source_help"]

SOURCES = {m.NAME: m for m in (imdb_wiki, utkface, appa_real, csv_table)}
AUTO_ORDER = (csv_table, imdb_wiki, appa_real, utkface)
AUTO = "auto"
CHOICES = (AUTO, *SOURCES)
SAMPLES = {sample.name: sample for m in SOURCES.values() for sample in m.SAMPLES}   # --dataset's choices


def source_help() -> str:
    """ingest's --source help: every source's format, then what auto looks for, in order."""
    return ("The format of --src. " + "; ".join(f"{name}: {m.HELP}" for name, m in SOURCES.items())
            + f". {AUTO} tries, in order: " + "; ".join(m.LOOKS_FOR for m in AUTO_ORDER) + ".")


def sample_help() -> str:
    """`python -m ingest.sample --dataset`'s help: every source's samples, in registry order."""
    return "; ".join(f"{s.name}: {s.help}" for s in SAMPLES.values())


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
