"""manifest.json: the contract between a shard writer and every reader.

A directory of shards is a finished data set exactly when its manifest exists:
writers write it last (atomically), readers read it first and refuse shards it
does not vouch for.
"""

from __future__ import annotations

import json
import os
import re
import stat

from errors import DataError
from errors.paths import missing
from faces import facebox
from records import schema
from storage.atomic import atomic_write_bytes
from storage.json_file import load_json, read_json_object


def manifest_path(directory: str) -> str:
    return os.path.join(directory, schema.MANIFEST_NAME)


def write_manifest(directory: str, manifest: dict) -> str:
    """Atomically write `manifest` (must carry `schema_version` and `splits`)."""
    for required in ("schema_version", "splits"):
        if required not in manifest:
            raise ValueError(f"manifest is missing {required!r}")
    path = manifest_path(directory)
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return path


# How far not_a_data_set looks to tell what a path is: the entries of a folder, and the
# bytes of a run.json (the only file it opens).
_LOOK_AT = 500
_RUN_JSON_BYTES = 1 << 20


def _looks_like_images(directory: str, depth: int = 1) -> bool:
    """Whether `directory` holds a source's metadata (wiki.mat, imdb.mat, APPA-REAL's
    gt_avg_train.csv), or image files itself or in its first subfolders (wiki_crop's 00..99)."""
    from storage.outdir import MARKER_NAME
    from faces.pixels import IMAGE_EXTENSIONS

    if os.path.exists(os.path.join(directory, MARKER_NAME)) or os.path.exists(manifest_path(directory)):
        return False                      # an output of this project (its plots are images too)
    try:
        with os.scandir(directory) as it:
            entries = [e for _, e in zip(range(_LOOK_AT), it)]
    except OSError:
        return False
    names = [e.name.lower() for e in entries]
    if any(n.endswith(IMAGE_EXTENSIONS) for n in names) or (
            depth > 0 and any(n in ("wiki.mat", "imdb.mat", "gt_avg_train.csv") for n in names)):
        return True
    return depth > 0 and any(_looks_like_images(e.path, depth - 1)
                             for e in entries[:5] if e.is_dir(follow_symlinks=False))


def _run_records(directory: str) -> str | None:
    """The data set a training run in `directory` names in its run.json ('' if it names
    none or cannot be read), or None when `directory` is not a run."""
    path = os.path.join(directory, "run.json")
    if not os.path.isfile(path):
        return None
    try:
        records = load_json(path, _RUN_JSON_BYTES).get("records")   # a larger one is not a run.json
    except (OSError, ValueError, AttributeError):
        records = None
    return records if isinstance(records, str) and "\n" not in records else ""


# How most commands take a data set: `pass --records DIR` (the default `pass_as` below).
RECORDS_FLAG = "pass --records {}"


def not_a_data_set(directory: str, pass_as: str = RECORDS_FLAG) -> str:
    """What `directory`, given where a data set of shards belongs, is instead, and the
    command the user meant; `pass_as` says how the command takes a data set's folder
    ("pass --records {}", or "run `python -m records inspect {}`"), so a fix names its
    own syntax."""
    name = os.path.basename(os.path.normpath(directory)) or "NAME"
    ingest = f"`python -m ingest --src FOLDER_OF_IMAGES --out {directory}`"
    if os.path.isfile(directory):
        parent = os.path.dirname(directory) or "."
        if directory.endswith(".tfrecord") and os.path.isfile(manifest_path(parent)):
            return (f"{directory} is a shard file of the data set {parent}; {pass_as.format(parent)} "
                    f"(the data set's folder)")
        if directory.lower().endswith(".csv"):
            stem = os.path.splitext(name)[0]
            return (f"{directory} is a CSV table (a source for ingest), not a data set of shards: run "
                    f"`python -m ingest --src {directory} --out shards/{stem}`, then "
                    f"{pass_as.format(f'shards/{stem}')}")
        return (f"{directory} is a file, not a data set (a folder of shards with manifest.json, "
                f"which {ingest} writes)")
    if not os.path.isdir(directory):
        return missing(directory, f"create the data set with {ingest}")
    trained_on = _run_records(directory)
    if trained_on is not None:
        return (f"{directory} is a training run, not a data set"
                + (f"; it was trained on {'--records ' if pass_as == RECORDS_FLAG else ''}{trained_on}"
                   if trained_on else "")
                + "; pass a data set's folder (a run is what `python -m trainer.evaluate --model_dir` reads)")
    if _looks_like_images(directory):
        stem = os.path.splitext(name)[0]
        return (f"{directory} is a folder of images (a source for ingest), not a data set of shards: "
                f"run `python -m ingest --src {directory} --out shards/{stem}`, then "
                f"{pass_as.format(f'shards/{stem}')}")
    return (f"{manifest_path(directory)}: no manifest, so {directory} is not a finished data set; "
            f"run (or re-run: it starts over or resumes) the ingest that writes it, {ingest}")


def read_manifest(directory: str, *, consistent: bool = True, pass_as: str = RECORDS_FLAG) -> dict:
    """Load and check `DIR/manifest.json`: exists, parses, schema version, its
    structure (`structure_problem`) and, with `consistent`, that its numbers agree
    with each other (`consistency_problem`); anything else is one DataError line.
    (`python -m records verify` passes consistent=False: it lists every count
    against the records themselves.)  `pass_as`: how the command takes a data set (not_a_data_set)."""
    path = manifest_path(directory)
    if not os.path.isdir(directory) or not os.path.exists(path):
        raise DataError(not_a_data_set(directory, pass_as))
    manifest = read_json_object(path, "a manifest object", f"re-run ingest into {directory}")
    version = manifest.get("schema_version")
    if version not in schema.READ_VERSIONS:
        raise DataError(f"{path}: schema_version {version!r}, this code reads versions "
                        f"{', '.join(map(str, schema.READ_VERSIONS))}; re-run ingest with this "
                        f"version of the project")
    if not isinstance(manifest.get("splits"), dict):
        raise DataError(f"{path}: manifest has no 'splits'; re-run ingest into {directory}")
    problem = structure_problem(manifest) or (consistent and consistency_problem(manifest))
    if problem:
        raise DataError(f"{path}: {problem}; run `python -m records verify {directory}` "
                        f"for the full check, or re-run ingest into {directory}")
    return manifest


# A split name and a shard file are plain names inside the data set's directory: a
# name read from the manifest never leads outside it (nor matches other files).
_SPLIT_NAME = re.compile(r"^[a-z]+$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# The smallest TFRecord frame: 8-byte length, 4-byte CRC, the record, 4-byte CRC.
MIN_FRAME_BYTES = 16


def is_split_name(name) -> bool:
    """A split name as the manifest and shard names use it (lowercase letters only)."""
    return isinstance(name, str) and bool(_SPLIT_NAME.match(name))


def is_plain_name(name) -> bool:
    """A file name (str) without a directory part, not hidden, not `.`/`..`."""
    return isinstance(name, str) and bool(_FILE_NAME.match(name)) and name not in (".", "..")


# The largest count or byte size a manifest may hold (int64): 10**400 is not a size.
MAX_COUNT = (1 << 63) - 1


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT


def _counts(value) -> bool:
    """An object of counts ({name: count})."""
    return isinstance(value, dict) and all(isinstance(k, str) and _count(v) for k, v in value.items())


def _description_problem(manifest: dict) -> str | None:
    """What makes the manifest's description (what inspect, verify and the data card
    print: source, cleaning, kept, skipped, group counts) not the types ingest writes."""
    source = manifest.get("source", {})
    if not isinstance(source, dict) or ("entries" in source and not _count(source["entries"])):
        return f"source {source!r} is not an object with a count of entries"[:200]
    cleaning = manifest.get("cleaning", [])
    if not isinstance(cleaning, list):
        return f"cleaning {cleaning!r} is not a list of steps"[:200]
    for i, step in enumerate(cleaning):
        if not (isinstance(step, dict) and isinstance(step.get("step"), str)
                and isinstance(step.get("rule", ""), str)
                and _count(step.get("removed")) and _count(step.get("remaining"))):
            return f"cleaning step #{i} {step!r} is not {{step, rule, removed, remaining}}"[:200]
    if "kept" in manifest and not _count(manifest["kept"]):
        return f"kept {manifest['kept']!r} is not a count"[:200]
    for where, entry in [("", manifest)] + [(f"split {s!r} ", e) for s, e in manifest["splits"].items()]:
        if "skipped" in entry and not _counts(entry["skipped"]):
            return f"{where}skipped {entry['skipped']!r} is not an object of counts"[:200]
        groups = entry.get("group_counts", {})
        if not (isinstance(groups, dict) and all(map(_counts, groups.values()))):
            return f"{where}group_counts {groups!r} is not an object of objects of counts"[:200]
    return None


def _histogram_problem(value, what: str) -> str | None:
    if not isinstance(value, list) or len(value) != schema.NUM_AGES or not all(map(_count, value)):
        return f"{what} is not a list of {schema.NUM_AGES} counts"
    return None


def structure_problem(manifest: dict) -> str | None:
    """What makes the manifest unusable before any shard is opened, or None: splits
    an object of plain names, each a `count` and a non-empty list of shards `{file
    (a plain name), count, bytes, sha256}`; `image_size` a positive integer and
    `encoding` a known one where present; histograms of NUM_AGES counts."""
    kind = manifest.get("kind", schema.KIND_IMAGES)
    if kind not in (schema.KIND_IMAGES, schema.KIND_FEATURES):
        return None             # the reader names an unknown kind itself
    size = manifest.get("image_size")
    if "image_size" in manifest and (not _count(size) or size == 0):
        return f"image_size {size!r} is not a positive integer"
    if "encoding" in manifest and manifest["encoding"] not in schema.ENCODINGS:
        return (f"encoding {manifest['encoding']!r} is not one of "
                f"{' or '.join(map(repr, schema.ENCODINGS))}")
    if "margin" in manifest and manifest["margin"] is not None and not facebox.is_margin(manifest["margin"]):
        return f"margin {manifest['margin']!r} is not a number >= 0"
    splits = manifest["splits"]
    if not splits:
        return "no splits"
    for split, entry in splits.items():
        if not is_split_name(split):
            return f"split name {split!r} is not a plain name (lowercase letters)"
        if not isinstance(entry, dict):
            return f"split {split!r} is a JSON {type(entry).__name__}, not an object"
        if not _count(entry.get("count")):
            return f"split {split!r} count {entry.get('count')!r} is not a count"
        shards = entry.get("shards")
        if not isinstance(shards, list) or not shards:
            return f"split {split!r} shards {shards!r} is not a non-empty list"[:200]
        for i, shard in enumerate(shards):
            if not isinstance(shard, dict):
                return f"split {split!r} shard #{i} is not an object"
            if not is_plain_name(shard.get("file")):
                return (f"split {split!r} shard #{i} file {shard.get('file')!r} is not a plain "
                        f"file name inside the data set's directory")
            for field in ("count", "bytes"):
                if not _count(shard.get(field)):
                    return f"shard {shard['file']} {field} {repr(shard.get(field))[:40]} is not a count"
            if not isinstance(shard.get("sha256"), str):
                return f"shard {shard['file']} sha256 {shard.get('sha256')!r} is not a string"
        if "age_histogram" in entry and (p := _histogram_problem(entry["age_histogram"],
                                                                  f"split {split!r} age_histogram")):
            return p
    if "age_histogram" in manifest and (p := _histogram_problem(manifest["age_histogram"], "age_histogram")):
        return p
    genders = manifest.get("gender_counts")
    if "gender_counts" in manifest and not (isinstance(genders, dict) and all(map(_count, genders.values()))):
        return f"gender_counts {genders!r} is not an object of counts"
    return _description_problem(manifest)


def consistency_problem(manifest: dict) -> str | None:
    """The first pair of the manifest's numbers that disagree, or None: each split's
    count against the sum of its shards' counts and its age_histogram, the overall
    age_histogram and gender_counts against all splits, and each shard's count
    against its size (a record takes at least MIN_FRAME_BYTES). Call after
    `structure_problem`."""
    total = 0
    for split, entry in manifest["splits"].items():
        count, shards = entry["count"], entry["shards"]
        for s in shards:
            if s["count"] * MIN_FRAME_BYTES > s["bytes"] or (s["bytes"] > 0) != (s["count"] > 0):
                return (f"shard {s['file']} count {s['count']} does not fit its {s['bytes']} bytes "
                        f"(a record takes at least {MIN_FRAME_BYTES})")
        held = sum(s["count"] for s in shards)
        if held != count:
            return f"split {split!r} count {count} is not the sum of its shards' counts ({held})"
        if "age_histogram" in entry and sum(entry["age_histogram"]) != count:
            return (f"split {split!r} count {count} is not the sum of its age_histogram "
                    f"({sum(entry['age_histogram'])})")
        total += count
    for field, values in (("age_histogram", manifest.get("age_histogram")),
                          ("gender_counts", (manifest.get("gender_counts") or {}).values())):
        if field in manifest and sum(values) != total:
            return f"{field} sums to {sum(values)} but the splits hold {total} records"
    return None


def shard_path(directory: str, shard: dict) -> str:
    """The regular file of a (structure-checked) shard entry; DataError when it is
    missing or not a regular file (a symlink, FIFO, device or directory is never opened)."""
    path = os.path.join(directory, shard["file"])
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: shard listed in the manifest is missing; "
                        f"re-run ingest into {directory} (or restore the file)") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: shard listed in the manifest is not a regular file (a link, "
                        f"FIFO, device or directory); nothing was read: re-run ingest into {directory}")
    return path


def check_split(directory: str, manifest: dict, split: str, flag: str = "--split") -> None:
    """Refuse (DataError) a split name the data set's manifest does not list; no
    TensorFlow, so a command checks it before TensorFlow loads."""
    if split not in manifest["splits"]:
        raise DataError(f"{flag} {split}: the data set {directory} has no split {split!r}; pass one of "
                        f"{', '.join(sorted(manifest['splits']))}")


def split_shards(directory: str, manifest: dict, split: str) -> list[dict]:
    """The shard entries of `split`, each checked a regular file with its listed size.
    (Cheap: a stat per file. `python -m records verify` does the full sha256 check.)"""
    splits = manifest["splits"]
    if split not in splits:
        raise DataError(f"{manifest_path(directory)}: unknown split {split!r}; "
                        f"this data set has {sorted(splits)}")
    shards = splits[split]["shards"]
    for shard in shards:
        path = shard_path(directory, shard)
        size = os.path.getsize(path)
        if size != shard["bytes"]:
            raise DataError(f"{path}: {size} bytes but the manifest lists {shard['bytes']} "
                            f"(truncated or replaced); re-run ingest into {directory}")
    return shards


def crop_margin(m: dict) -> float:
    """The face margin of a data set's crops (schema-1 manifests do not record it:
    theirs are IMDB-WIKI's)."""
    return m.get("margin", facebox.DEFAULT_MARGIN)


def summary(m: dict, directory: str) -> str:
    """The human summary of a manifest: what ingest prints at its end and
    `python -m records inspect` prints (the same function, so they agree)."""
    src = m.get("source", {})
    lines = [f"{directory}: schema v{m['schema_version']}, {m.get('kind', '?')}, "
             f"{m.get('image_size')}px {m.get('encoding')}, created {m.get('created')}"]
    if "name" in src:        # schema version 2
        lines.append(f"source {src['name']} ({src.get('read')}): {src.get('entries')} entries, "
                     f"fingerprint {str(src.get('fingerprint'))[:12]}...; label {m.get('label')} "
                     f"age, face margin {m.get('margin')}"
                     + (f", faces found by {m['detector']}{' and aligned' if m.get('aligned') else ''} (--reframe)"
                        if m.get("detector", "source") != "source" else ""))
    elif src:
        lines.append(f"source {src.get('mat')}: {src.get('entries')} entries, sha256 "
                     f"{str(src.get('sha256'))[:12]}...; label real age, face margin {crop_margin(m)}")
    for c in m.get("cleaning", []):
        lines.append(f"  {c['step']:<15} {c.get('rule', ''):<36} removed {c['removed']:>7}  "
                     f"remaining {c['remaining']:>7}")
    skipped = m.get("skipped", {})
    lines.append(f"kept {m.get('kept')}; skipped {sum(skipped.values())} files"
                 + (f" ({', '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else ""))
    for name, entry in m["splits"].items():
        size = sum(s["bytes"] for s in entry["shards"]) / 1e6
        lines.append(f"  {name:<5} {entry['count']:>7} records in {len(entry['shards']):>3} shards "
                     f"({size:.1f} MB)")
    hist = m.get("age_histogram")
    if hist and sum(hist):
        n = sum(hist)
        mean = sum(a * c for a, c in enumerate(hist)) / n
        ages = [a for a, c in enumerate(hist) if c]
        lines.append(f"ages {ages[0]}..{ages[-1]}, mean {mean:.1f} over {n} records")
    if "gender_counts" in m:
        lines.append("gender " + ", ".join(f"{k} {v}" for k, v in m["gender_counts"].items()))
    for attribute, counts in (m.get("group_counts") or {}).items():
        lines.append(f"{attribute} " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return "\n".join(lines)
