"""python -m records inspect DIR   the manifest summary of a shard directory
python -m records verify DIR    re-read every shard against the manifest; exit 1 naming each problem
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import sys

from records.manifest import DataError, read_manifest, summary
from records.verify import problems


def inspect(directory: str) -> str:
    return summary(read_manifest(directory), directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m records", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("inspect", "print the manifest summary"),
                       ("verify", "check every shard, record and image against the manifest")):
        sub.add_parser(name, help=text).add_argument("directory", help="shard directory, e.g. shards/wiki")
    args = parser.parse_args(argv)
    if args.command == "inspect":
        try:
            print(inspect(args.directory))
        except DataError as e:
            print(f"records: {e}", file=sys.stderr)
            return 1
        return 0
    found = problems(args.directory)
    for p in found:
        print(f"PROBLEM {p}", file=sys.stderr)
    if found:
        print(f"records verify: {len(found)} problem(s) in {args.directory}", file=sys.stderr)
        return 1
    print(f"records verify: {args.directory} OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
