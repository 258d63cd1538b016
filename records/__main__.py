"""python -m records inspect DIR   the manifest summary of a shard directory
python -m records inspect DIR --html   also DIR/card.html: the data set card (records.card)
python -m records verify DIR    re-read every shard against the manifest; exit 1 naming each problem
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import sys

import os

from records.manifest import DataError, manifest_path, not_a_data_set, read_manifest, summary


def as_argument(command: str) -> str:
    """How `python -m records COMMAND` takes a data set (records.manifest.not_a_data_set's `pass_as`)."""
    return f"run `python -m records {command} {{}}`"


def inspect(directory: str) -> str:
    return summary(read_manifest(directory, pass_as=as_argument("inspect")), directory)


def parser() -> argparse.ArgumentParser:
    """Every argument of `python -m records`, defined here only."""
    p = argparse.ArgumentParser(prog="python -m records", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    commands = {}
    for name, text in (("inspect", "print the manifest summary"),
                       ("verify", "check every shard, record, image and count against the manifest")):
        commands[name] = sub.add_parser(name, help=text)
        commands[name].add_argument("directory", help="shard directory, e.g. shards/wiki")
    commands["inspect"].add_argument("--html", action="store_true",
                                     help="also write DIR/card.html: sources, cleaning, counts, histograms "
                                          "and sample faces per age band, one self-contained page")
    return p


def main(args: argparse.Namespace) -> int:
    """inspect: the summary (a DataError is entry's one line); verify: every problem
    on its own `PROBLEM` line, then the tally, exit status 1 when there is one.  A
    DIRECTORY that is not a data set at all is one `error: ...` line either way."""
    if not os.path.isfile(manifest_path(args.directory)):
        raise DataError(not_a_data_set(args.directory, as_argument(args.command)))
    if args.command == "inspect":          # the manifest only (TensorFlow loads for --html's faces)
        print(inspect(args.directory))
        if args.html:
            from records.card import write_card

            print(f"Wrote {write_card(args.directory)}")
        return 0
    from records.verify import problems

    found = problems(args.directory)
    for p in found:
        print(f"PROBLEM {p}", file=sys.stderr)
    if found:
        print(f"records verify: {len(found)} problem(s) in {args.directory}", file=sys.stderr)
        return 1
    print(f"records verify: {args.directory} OK")
    return 0


if __name__ == "__main__":
    entry.run_parsed(main, parser())
