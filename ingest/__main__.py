"""python -m ingest --src wiki_crop [--out shards/wiki] [flags]

Cleans wiki.mat / imdb.mat, splits it, and writes the face crops as sharded
TFRecords plus manifest.json (see WORKSPACE.md).  The data set is built beside
--out and swapped in when complete; re-running the same command after a crash
resumes from the completed shards.
"""

from __future__ import annotations

import sys


from absl import app, flags  # noqa: E402

from ingest import flags as ingest_flags  # noqa: E402
from ingest import pipeline  # noqa: E402
from records.manifest import DataError  # noqa: E402

ingest_flags.define_flags()
flags.adopt_module_key_flags(ingest_flags)  # so --help lists them all
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        sys.exit(f"ingest: unexpected arguments {argv[1:]}; all options are --flags (see --help)")
    if not FLAGS.src:
        sys.exit("ingest: --src is required: pass the folder holding wiki.mat or imdb.mat, "
                 "e.g. --src wiki_crop")
    try:
        pipeline.run(ingest_flags.to_config(FLAGS))
    except DataError as e:          # bad input: one line naming the file/flag and the fix
        sys.exit(f"ingest: {e}")


if __name__ == "__main__":
    app.run(main)
