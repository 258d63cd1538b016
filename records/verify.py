"""Full check of a shard directory against its manifest: every listed shard is
present with its size and sha256, holds the listed number of records, and every
record parses with the schema and decodes to the stated image. The labels are
counted while the records are parsed, so every count the manifest carries is
checked against them: per split and overall `age_histogram`, `gender_counts` and
`group_counts` (each group attribute's labels, schema version 3),
`kept` (= records written + files skipped) and the `cleaning` steps' arithmetic
(source entries -> each step's removed and remaining -> kept). A feature cache's
manifest carries none of these (only its shards' and splits' counts, checked like
an image data set's); its records' labels are range-checked.

`problems(directory)` returns one message per problem, each naming the file,
so `python -m records verify` can list them all instead of stopping at the first.
"""

from __future__ import annotations

import collections
import contextlib
import math
import os

import tensorflow as tf

from errors import DataError
from records import schema, wire
from records.manifest import manifest_path, read_manifest, shard_path
from storage.checksum import file_sha256

_BATCH = 256
_SHOWN = 5          # differing histogram bins named per problem line


class Tally:
    """The labels of one split's records as verify reads them; `complete` turns
    False when a record could not be read, so the counts are not compared."""

    def __init__(self):
        self.records = 0
        self.age_histogram = [0] * schema.NUM_AGES
        self.gender_counts = {name: 0 for name in schema.GENDER_NAMES.values()}
        self.group_counts = {name: collections.Counter() for name in schema.GROUP_ATTRIBUTES}
        self.complete = True

    def add(self, age: int, gender: int, groups: dict | None = None) -> None:
        """One record's labels; `groups`: its stored group labels by attribute (image records)."""
        for name, label in (groups or {}).items():
            self.group_counts[name][schema.group_name(label)] += 1
        self.records += 1
        if 0 <= age < schema.NUM_AGES:
            self.age_histogram[age] += 1
        name = schema.GENDER_NAMES.get(gender, schema.GENDER_NAMES[schema.GENDER_UNKNOWN])
        self.gender_counts[name] += 1


def _batches(path: str, out: list[str], fix: str, tally: Tally):
    """The records of `path` in lists of _BATCH, framing checked in Python so a
    corrupt record is named by its index and byte offset (appended to `out`)."""
    batch = []
    try:
        with open(path, "rb") as f:
            for record in wire.read_frames(f):
                batch.append(record)
                if len(batch) == _BATCH:
                    yield batch
                    batch = []
    except wire.CorruptRecord as e:
        out.append(f"{path}: corrupt at {e}; {fix}")
        tally.complete = False
    if batch:
        yield batch


def _parsed_batches(path: str, spec: dict, out: list[str], fix: str, tally: Tally):
    """(index of the first record, parsed batch or None, records in it) for each batch of
    `path`; a batch that does not parse with `spec` is named in `out` and yields None."""
    first = 0
    for records in _batches(path, out, fix, tally):
        try:
            parsed = tf.io.parse_example(tf.constant(records), spec)
        except tf.errors.InvalidArgumentError as e:
            out.append(f"{path}: a record among #{first}..#{first + len(records) - 1} does not "
                       f"parse with the schema ({e.message.splitlines()[0]}); {fix}")
            tally.complete = False
            parsed = None
        yield first, parsed, len(records)
        first += len(records)


def _label_problem(where: str, key: str, age: int, gender: int) -> list[str]:
    if not 0 <= age < schema.NUM_AGES or gender not in schema.GENDER_NAMES:
        return [f"{where} ({key}): label out of range (age {age}, gender {gender})"]
    return []


def _check_records(path: str, shard: dict, manifest: dict, seen: dict, split: str,
                   tally: Tally) -> list[str]:
    if manifest.get("kind") == schema.KIND_FEATURES:
        return _check_feature_records(path, shard, manifest, tally)
    size, encoding = manifest.get("image_size"), manifest.get("encoding")
    if encoding not in schema.ENCODINGS:
        tally.complete = False
        return [f"{path}: the manifest's encoding is {encoding!r}, expected one of "
                f"{' or '.join(map(repr, schema.ENCODINGS))}; re-run ingest"]
    out = []
    expected_format = schema.ENCODINGS[encoding]
    count = 0
    for first, parsed, n in _parsed_batches(path, schema.feature_spec(), out, "re-run ingest", tally):
        count = first + n
        if parsed is None:
            continue
        for j in range(n):
            where = f"{path} record #{first + j}"
            key = parsed[schema.KEY][j].numpy().decode("utf-8", "replace")
            if key in seen:
                out.append(f"{where}: key {key!r} also in {seen[key]}")
            seen[key] = split
            fmt = parsed[schema.IMAGE_FORMAT][j].numpy()
            h, w = int(parsed[schema.IMAGE_HEIGHT][j]), int(parsed[schema.IMAGE_WIDTH][j])
            age, gender = int(parsed[schema.AGE][j]), int(parsed[schema.GENDER][j])
            tally.add(age, gender, {name: parsed[name][j].numpy().decode("utf-8", "replace")
                                    for name in schema.GROUP_ATTRIBUTES})
            if fmt != expected_format:
                out.append(f"{where} ({key}): format {fmt!r}, manifest says {encoding}")
            if size is not None and (h, w) != (size, size):
                out.append(f"{where} ({key}): {h}x{w}, manifest image_size {size}")
            out.extend(_label_problem(where, key, age, gender))
            if manifest.get("schema_version", 1) >= 2:
                out.extend(_check_v2_labels(where, key, age, parsed, j))
            encoded = parsed[schema.IMAGE_ENCODED][j].numpy()
            if fmt == schema.FORMAT_RAW:
                if len(encoded) != h * w * 3:
                    out.append(f"{where} ({key}): {len(encoded)} raw bytes, need {h * w * 3}")
                continue
            try:
                shape = tuple(tf.io.decode_jpeg(encoded, channels=3).shape)
            except tf.errors.InvalidArgumentError as e:
                out.append(f"{where} ({key}): image does not decode ({e.message.splitlines()[0]})")
                continue
            if shape != (h, w, 3):
                out.append(f"{where} ({key}): decodes to {shape}, record says {(h, w, 3)}")
    if count != shard["count"]:
        out.append(f"{path}: {count} records, manifest lists {shard['count']}")
    return out


def _check_v2_labels(where: str, key: str, age: int, parsed: dict, j: int) -> list[str]:
    """age_mean is the label age rounds from, age_std a spread, real_age an age or -1."""
    mean = float(parsed[schema.AGE_MEAN][j])
    std = float(parsed[schema.AGE_STD][j])
    real = int(parsed[schema.REAL_AGE][j])
    if not math.isfinite(mean) or schema.label_age(mean) != age:
        return [f"{where} ({key}): age_mean {mean} does not round to age {age}"]
    if not (math.isfinite(std) and std >= 0) or real < schema.REAL_AGE_UNKNOWN:
        return [f"{where} ({key}): age_std {std} or real_age {real} out of range"]
    return []


def _check_manifest(directory: str, manifest: dict) -> list[str]:
    """Version-2 image manifests name their source, label kind and crop margin."""
    if manifest.get("kind") != schema.KIND_IMAGES or manifest.get("schema_version", 1) < 2:
        return []
    out, where = [], os.path.join(directory, schema.MANIFEST_NAME)
    if not (manifest.get("source") or {}).get("name"):
        out.append(f"{where}: no source name; re-run ingest into {directory}")
    if manifest.get("label") not in schema.LABEL_KINDS:
        out.append(f"{where}: label {manifest.get('label')!r} is not one of {schema.LABEL_KINDS}")
    margin = manifest.get("margin")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0:
        out.append(f"{where}: margin {margin!r} is not a number >= 0")
    return out


def _check_feature_records(path: str, shard: dict, manifest: dict, tally: Tally) -> list[str]:
    """A feature-cache shard: every record parses, holds feature_shape float16 values
    and labels in range."""
    out, count = [], 0
    nbytes = 2 * math.prod(manifest.get("feature_shape") or [0])
    fix = "delete the cache directory and let the trainer rebuild it"
    for first, parsed, n in _parsed_batches(path, schema.feature_record_spec(), out, fix, tally):
        count = first + n
        if parsed is None:
            continue
        lengths = tf.strings.length(parsed[schema.FEATURES]).numpy()
        ages, genders = parsed[schema.AGE].numpy(), parsed[schema.GENDER].numpy()
        keys = parsed[schema.KEY].numpy()
        for j, length in enumerate(lengths):
            age, gender = int(ages[j]), int(genders[j])
            tally.add(age, gender)
            if length != nbytes:
                out.append(f"{path} record #{first + j}: {length} feature bytes, feature_shape needs {nbytes}")
            out.extend(_label_problem(f"{path} record #{first + j}",
                                      keys[j].decode("utf-8", "replace"), age, gender))
    if count != shard["count"]:
        out.append(f"{path}: {count} records, manifest lists {shard['count']}")
    return out


def _as_counts(value) -> dict | None:
    """A histogram list (index -> count) or a {name: count} object as a dict, else None."""
    if isinstance(value, list):
        return dict(enumerate(value))
    return value if isinstance(value, dict) else None


def _differences(field: str, listed, counted: dict) -> str | None:
    """None when `listed` (the manifest's) equals `counted`, a missing key counting as 0;
    else each differing entry as `age 35: manifest 12, counted 11` (the first _SHOWN)."""
    listed_counts = _as_counts(listed)
    if listed_counts is None:
        return f"manifest {listed!r}, counted {list(counted.values())}"
    differ = [k for k in sorted(set(listed_counts) | set(counted), key=str)
              if listed_counts.get(k, 0) != counted.get(k, 0)]
    if not differ:
        return None
    name = (lambda k: f"age {k}") if field == "age_histogram" else str
    text = "; ".join(f"{name(k)}: manifest {listed_counts.get(k, 0)}, counted {counted.get(k, 0)}"
                     for k in differ[:_SHOWN])
    return text + (f"; ... ({len(differ)} differ)" if len(differ) > _SHOWN else "")


def _label_counts(tallies: list[Tally]) -> dict:
    """age_histogram, gender_counts and each group attribute's counts (`group_counts.race`)
    of `tallies` together, as dicts."""
    ages = dict(enumerate(sum(t.age_histogram[a] for t in tallies) for a in range(schema.NUM_AGES)))
    genders = {k: sum(t.gender_counts[k] for t in tallies) for k in schema.GENDER_NAMES.values()}
    groups = {f"group_counts.{name}": dict(sum((t.group_counts[name] for t in tallies), collections.Counter()))
              for name in schema.GROUP_ATTRIBUTES}
    return {"age_histogram": ages, "gender_counts": genders, **groups}


def _listed(entry: dict, field: str):
    """The manifest's value of `field` ("group_counts.race": nested), or None when absent."""
    for part in field.split("."):
        if not isinstance(entry, dict) or part not in entry:
            return None
        entry = entry[part]
    return entry


def _check_counts(directory: str, manifest: dict, tallies: dict[str, Tally]) -> list[str]:
    """Every count the manifest carries against what the records hold: per split and
    overall age_histogram and gender_counts, kept, the cleaning steps. A split whose
    records could not all be read (already a problem) is not compared."""
    where, fix = manifest_path(directory), f"re-run ingest into {directory}"
    out = []
    for split, entry in manifest["splits"].items():
        tally = tallies.get(split)
        if tally is None or not tally.complete:
            continue
        counted = _label_counts([tally])
        for field in counted:
            listed = _listed(entry, field)
            if listed is not None and (diff := _differences(field, listed, counted[field])):
                out.append(f"{where}: split {split!r} {field} does not match its records: {diff}; {fix}")
    if not tallies or not all(t.complete for t in tallies.values()):
        return out
    counted = _label_counts(list(tallies.values()))
    for field in counted:
        listed = _listed(manifest, field)
        if listed is not None and (diff := _differences(field, listed, counted[field])):
            out.append(f"{where}: {field} (all splits) does not match the records: {diff}; {fix}")
    if "kept" in manifest:
        written = sum(t.records for t in tallies.values())
        skipped = manifest.get("skipped") or {}
        files = sum(skipped.values()) if isinstance(skipped, dict) else 0
        if manifest["kept"] != written + files:
            out.append(f"{where}: kept: manifest {manifest['kept']}, counted {written + files} "
                       f"({written} records written + {files} files skipped); {fix}")
    out.extend(_check_cleaning(where, manifest, fix))
    return out


def _check_cleaning(where: str, manifest: dict, fix: str) -> list[str]:
    """Each cleaning step removes from what the one before left (the first from the
    source's entries), and the last leaves `kept`."""
    steps = manifest.get("cleaning")
    if not isinstance(steps, list) or not steps:
        return []
    out = []
    before = (manifest.get("source") or {}).get("entries")
    for step in steps:
        name, removed, remaining = step.get("step"), step.get("removed"), step.get("remaining")
        if isinstance(before, int) and isinstance(removed, int) and before - removed != remaining:
            out.append(f"{where}: cleaning step {name!r} remaining: manifest {remaining}, counted "
                       f"{before - removed} ({before} before it - {removed} removed); {fix}")
        before = remaining
    if "kept" in manifest and before != manifest["kept"]:
        out.append(f"{where}: kept {manifest['kept']} is not what the last cleaning step "
                   f"{steps[-1].get('step')!r} left ({before}); {fix}")
    return out


def problems(directory: str) -> list[str]:
    try:
        manifest = read_manifest(directory, consistent=False)   # its counts are checked below
    except DataError as e:
        return [str(e)]
    out, seen, listed = _check_manifest(directory, manifest), {}, set()
    tallies = {}
    for split, entry in manifest["splits"].items():
        tally = tallies[split] = Tally()
        shards = entry.get("shards", [])
        if sum(s["count"] for s in shards) != entry.get("count"):
            out.append(f"{manifest_path(directory)}: split {split!r} count {entry.get('count')} is not "
                       f"the sum of its shards' counts ({sum(s['count'] for s in shards)}); "
                       f"re-run ingest into {directory}")
        for shard in shards:
            path = os.path.join(directory, shard["file"])
            listed.add(shard["file"])
            if not os.path.lexists(path):
                out.append(f"{path}: listed in the manifest but missing")
                tally.complete = False
                continue
            try:
                shard_path(directory, shard)       # a regular file: never a link, FIFO or device
            except DataError as e:
                out.append(str(e))
                tally.complete = False
                continue
            size = os.path.getsize(path)
            if size != shard["bytes"]:
                out.append(f"{path}: {size} bytes, manifest lists {shard['bytes']} (truncated or replaced)")
            sha = file_sha256(path)
            if sha != shard["sha256"]:
                out.append(f"{path}: sha256 {sha[:12]}... does not match the manifest's "
                           f"{shard['sha256'][:12]}...")
            out.extend(_check_records(path, shard, manifest, seen, split, tally))
    out.extend(_check_counts(directory, manifest, tallies))
    for name in sorted(os.listdir(directory)):
        if schema.parse_shard_name(name) and name not in listed:
            out.append(f"{os.path.join(directory, name)}: shard file not listed in the manifest")
    return out


# ----------------------------------------------------------------------------- damage met while reading

def damaged_shards(directories) -> list[str]:
    """The shard files of the data sets `directories` that are missing or whose sha256
    is not their manifest's (a flipped byte leaves the size as it was)."""
    out = []
    for directory in dict.fromkeys(directories):
        try:
            manifest = read_manifest(directory, consistent=False)
        except DataError:
            continue
        for entry in manifest["splits"].values():
            for shard in entry["shards"]:
                path = os.path.join(directory, shard["file"])
                if not os.path.isfile(path) or file_sha256(path) != shard["sha256"]:
                    out.append(path)
    return out


@contextlib.contextmanager
def naming_damage(directories):
    """TensorFlow's DataLossError (a record's checksum fails mid-epoch; its message names
    no shard) met in the block is one DataError naming the damaged shard(s), found by
    their sha256, and the command that names the record."""
    directories = list(directories)
    try:
        yield
    except tf.errors.DataLossError as e:
        bad = damaged_shards(directories)
        what = (", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
                if bad else f"a shard of {', '.join(directories)}")
        verify = " and ".join(f"`python -m records verify {d}`" for d in dict.fromkeys(directories))
        raise DataError(f"{what}: damaged (a record fails its checksum: {' '.join(e.message.split())[:80]}); "
                        f"{verify} names the record; re-run ingest (or restore the shard)") from None
