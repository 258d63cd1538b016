"""python -m records inspect DIR   the manifest summary of a shard directory
python -m records inspect DIR --html   also DIR/card.html: the data set card (reports.card)
python -m records verify DIR    re-read every shard against the manifest; exit 1 naming each problem
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import sys

import os

from absl import flags

from errors import DataError, ProjectError
from records.manifest import manifest_path, not_a_data_set, read_manifest, summary


def as_argument(command: str) -> str:
    """How `python -m records COMMAND` takes a data set (records.manifest.not_a_data_set's `pass_as`)."""
    return f"run `python -m records {command} {{}}`"

COMMANDS = ("inspect", "verify")
USAGE = "python -m records inspect DIR [--html] | python -m records verify DIR"
FLAGS = flags.FLAGS


def inspect(directory: str) -> str:
    return summary(read_manifest(directory, pass_as=as_argument("inspect")), directory)


def define_flags() -> None:
    """Every flag of `python -m records`, defined here only."""
    flags.DEFINE_boolean("html", False, "inspect: also write DIR/card.html: sources, cleaning, counts, "
                         "histograms and sample faces per age band, one self-contained page")


def command(argv: list[str]) -> tuple[str, str]:
    """(inspect or verify, DIR) from the arguments after the flags; anything else is one
    line naming the usage."""
    args = argv[1:]
    if len(args) != 2 or args[0] not in COMMANDS:
        raise ProjectError(f"usage: {USAGE} (got: {' '.join(args) or 'no arguments'})")
    return args[0], args[1]


def main(argv: list[str]) -> int:
    """inspect: the summary (a DataError is entry's one line); verify: every problem
    on its own `PROBLEM` line, then the tally, exit status 1 when there is one.  A
    DIRECTORY that is not a data set at all is one `error: ...` line either way."""
    name, directory = command(argv)
    if not os.path.isfile(manifest_path(directory)):
        raise DataError(not_a_data_set(directory, as_argument(name)))
    if name == "inspect":          # the manifest only (TensorFlow loads for --html's faces)
        print(inspect(directory))
        if FLAGS.html:
            from reports.card import write_card

            print(f"Wrote {write_card(directory)}")
        return 0
    if FLAGS.html:
        raise ProjectError("--html is inspect's flag: python -m records inspect DIR --html")
    from records.verify import problems

    found = problems(directory)
    for p in found:
        print(f"PROBLEM {p}", file=sys.stderr)
    if found:
        print(f"records verify: {len(found)} problem(s) in {directory}", file=sys.stderr)
        return 1
    print(f"records verify: {directory} OK")
    return 0


if __name__ == "__main__":
    entry.run(main, define_flags)
