"""python -m ingest --src wiki_crop [--source auto] [--out shards/wiki] [flags]

Reads a data set (IMDB-WIKI, UTKFace, APPA-REAL or a CSV: ingest.sources),
cleans and splits it, and writes the face crops as sharded TFRecords plus
manifest.json (see WORKSPACE.md).  The data set is built beside --out and
swapped in when complete; re-running the same command after a crash resumes
from the completed shards.
"""

from __future__ import annotations

import entry  # first: the one way every command starts (never imports TensorFlow)

from absl import flags

from ingest import flags as ingest_flags
from ingest import pipeline

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise entry.ProjectError(f"ingest: unexpected arguments {argv[1:]}; all options are --flags (see --help)")
    if not FLAGS.src:
        raise entry.ProjectError("ingest: --src is required: pass the data set's folder or CSV, "
                                 "e.g. --src wiki_crop")
    pipeline.run(ingest_flags.to_config(FLAGS))


if __name__ == "__main__":
    entry.run(main, ingest_flags.define_flags, ingest_flags)
