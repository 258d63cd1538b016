"""Full check of a shard directory against its manifest: every listed shard is
present with its size and sha256, holds the listed number of records, and every
record parses with the schema and decodes to the stated image.

`problems(directory)` returns one message per problem, each naming the file,
so `python -m records verify` can list them all instead of stopping at the first.
"""

from __future__ import annotations

import math
import os

import tensorflow as tf

from records import schema, wire
from records.manifest import DataError, file_sha256, read_manifest

_BATCH = 256


def _batches(path: str, out: list[str], fix: str):
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
    if batch:
        yield batch


def _check_records(path: str, shard: dict, manifest: dict, seen: dict, split: str) -> list[str]:
    if manifest.get("kind") == schema.KIND_FEATURES:
        return _check_feature_records(path, shard, manifest)
    size, encoding = manifest.get("image_size"), manifest.get("encoding")
    if encoding not in schema.ENCODINGS:
        return [f"{path}: the manifest's encoding is {encoding!r}, expected one of "
                f"{' or '.join(map(repr, schema.ENCODINGS))}; re-run ingest"]
    out = []
    expected_format = schema.ENCODINGS[encoding]
    spec = schema.feature_spec()
    count = 0
    for records in _batches(path, out, "re-run ingest"):
        batch = tf.constant(records)
        try:
            parsed = tf.io.parse_example(batch, spec)
        except tf.errors.InvalidArgumentError as e:
            out.append(f"{path}: a record among #{count}..#{count + len(records) - 1} does not "
                       f"parse with the schema ({e.message.splitlines()[0]})")
            count += len(records)
            continue
        for j in range(len(records)):
            where = f"{path} record #{count}"
            count += 1
            key = parsed[schema.KEY][j].numpy().decode("utf-8", "replace")
            if key in seen:
                out.append(f"{where}: key {key!r} also in {seen[key]}")
            seen[key] = split
            fmt = parsed[schema.IMAGE_FORMAT][j].numpy()
            h, w = int(parsed[schema.IMAGE_HEIGHT][j]), int(parsed[schema.IMAGE_WIDTH][j])
            age, gender = int(parsed[schema.AGE][j]), int(parsed[schema.GENDER][j])
            if fmt != expected_format:
                out.append(f"{where} ({key}): format {fmt!r}, manifest says {encoding}")
            if size is not None and (h, w) != (size, size):
                out.append(f"{where} ({key}): {h}x{w}, manifest image_size {size}")
            if not 0 <= age < schema.NUM_AGES or gender not in (0, 1, schema.GENDER_UNKNOWN):
                out.append(f"{where} ({key}): label out of range (age {age}, gender {gender})")
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


def _check_feature_records(path: str, shard: dict, manifest: dict) -> list[str]:
    """A feature-cache shard: every record parses and holds feature_shape float16 values."""
    out, count = [], 0
    nbytes = 2 * math.prod(manifest.get("feature_shape") or [0])
    fix = "delete the cache directory and let the trainer rebuild it"
    for records in _batches(path, out, fix):
        try:
            parsed = tf.io.parse_example(tf.constant(records), schema.feature_record_spec())
        except tf.errors.InvalidArgumentError as e:
            out.append(f"{path}: a record among #{count}..#{count + len(records) - 1} does not "
                       f"parse with the schema ({e.message.splitlines()[0]}); {fix}")
            count += len(records)
            continue
        lengths = tf.strings.length(parsed[schema.FEATURES]).numpy()
        for j, n in enumerate(lengths):
            if n != nbytes:
                out.append(f"{path} record #{count + j}: {n} feature bytes, feature_shape needs {nbytes}")
        count += len(lengths)
    if count != shard["count"]:
        out.append(f"{path}: {count} records, manifest lists {shard['count']}")
    return out


def problems(directory: str) -> list[str]:
    try:
        manifest = read_manifest(directory)
    except DataError as e:
        return [str(e)]
    out, seen, listed = _check_manifest(directory, manifest), {}, set()
    for split, entry in manifest["splits"].items():
        shards = entry.get("shards", [])
        if sum(s["count"] for s in shards) != entry.get("count"):
            out.append(f"{directory}: split {split!r} count {entry.get('count')} is not the sum "
                       f"of its shard counts")
        for shard in shards:
            path = os.path.join(directory, shard["file"])
            listed.add(shard["file"])
            if not os.path.exists(path):
                out.append(f"{path}: listed in the manifest but missing")
                continue
            size = os.path.getsize(path)
            if size != shard["bytes"]:
                out.append(f"{path}: {size} bytes, manifest lists {shard['bytes']} (truncated or replaced)")
            sha = file_sha256(path)
            if sha != shard["sha256"]:
                out.append(f"{path}: sha256 {sha[:12]}... does not match the manifest's "
                           f"{shard['sha256'][:12]}...")
            out.extend(_check_records(path, shard, manifest, seen, split))
    for name in sorted(os.listdir(directory)):
        if schema.parse_shard_name(name) and name not in listed:
            out.append(f"{os.path.join(directory, name)}: shard file not listed in the manifest")
    return out
