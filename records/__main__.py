"""python -m records inspect DIR   the manifest summary of a shard directory
python -m records verify DIR    re-read every shard against the manifest; exit 1 naming each problem
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads

import argparse
import sys

from records.manifest import DataError, read_manifest
from records.verify import problems


def inspect(directory: str) -> str:
    m = read_manifest(directory)
    src = m.get("source", {})
    lines = [f"{directory}: schema v{m['schema_version']}, {m.get('kind', '?')}, "
             f"{m.get('image_size')}px {m.get('encoding')}, created {m.get('created')}",
             f"source {src.get('mat')} ({src.get('entries')} entries, sha256 {str(src.get('sha256'))[:12]}...)"]
    for c in m.get("cleaning", []):
        lines.append(f"  {c['step']:<15} removed {c['removed']:>7}  remaining {c['remaining']:>7}")
    skipped = m.get("skipped", {})
    lines.append(f"kept {m.get('kept')}; skipped {sum(skipped.values())}"
                 + (f" ({', '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else ""))
    total = 0
    for name, entry in m["splits"].items():
        size = sum(s["bytes"] for s in entry["shards"]) / 1e6
        total += entry["count"]
        lines.append(f"  {name:<5} {entry['count']:>7} records  {len(entry['shards']):>3} shards  {size:8.1f} MB")
    hist = m.get("age_histogram")
    if hist and sum(hist):
        n = sum(hist)
        mean = sum(a * c for a, c in enumerate(hist)) / n
        ages = [a for a, c in enumerate(hist) if c]
        lines.append(f"ages {ages[0]}..{ages[-1]}, mean {mean:.1f} over {n} records")
    if "gender_counts" in m:
        lines.append("gender " + ", ".join(f"{k} {v}" for k, v in m["gender_counts"].items()))
    return "\n".join(lines)


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
