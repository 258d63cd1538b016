"""manifest.json: the contract between a shard writer and every reader.

A directory of shards is a finished data set exactly when its manifest exists:
writers write it last (atomically), readers read it first and refuse shards it
does not vouch for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

from entry.errors import ProjectError
from records import facebox, schema


class DataError(ProjectError):
    """A shard directory is missing, incomplete or does not match its manifest.
    The message names the file and the fix."""


def manifest_path(directory: str) -> str:
    return os.path.join(directory, schema.MANIFEST_NAME)


@contextlib.contextmanager
def atomic_write(path: str):
    """The project's one temp-then-rename writer: yields a temporary path next to
    `path` for the caller to write; on success it is fsynced and renamed over `path`
    (a reader sees the old file or the whole new one, never a torn write), on an
    exception it is removed and `path` is untouched."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """`data` to `path` through `atomic_write`."""
    with atomic_write(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_manifest(directory: str, manifest: dict) -> str:
    """Atomically write `manifest` (must carry `schema_version` and `splits`)."""
    for required in ("schema_version", "splits"):
        if required not in manifest:
            raise ValueError(f"manifest is missing {required!r}")
    path = manifest_path(directory)
    atomic_write_bytes(path, (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode())
    return path


def read_json_object(path: str, what: str, fix: str, error: type = DataError) -> dict:
    """A JSON file that must hold an object; anything else is one `error` line ending in `fix`."""
    try:
        with open(path) as f:
            value = json.load(f)
    except (OSError, ValueError) as e:
        raise error(f"{path}: unreadable ({e}); {fix}") from e
    if not isinstance(value, dict):
        raise error(f"{path}: a JSON {type(value).__name__}, not {what}; {fix}")
    return value


def read_manifest(directory: str) -> dict:
    """Load and sanity-check `DIR/manifest.json` (exists, parses, schema version)."""
    path = manifest_path(directory)
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: no such shard directory; create it with "
                        f"`python -m ingest --src wiki_crop --out {directory}`")
    if not os.path.exists(path):
        raise DataError(f"{path}: no manifest, so {directory} is not a finished data set; "
                        f"run (or re-run, it starts over) `python -m ingest --src wiki_crop --out {directory}`")
    manifest = read_json_object(path, "a manifest object", f"re-run ingest into {directory}")
    version = manifest.get("schema_version")
    if version not in schema.READ_VERSIONS:
        raise DataError(f"{path}: schema_version {version!r}, this code reads versions "
                        f"{', '.join(map(str, schema.READ_VERSIONS))}; re-run ingest with this "
                        f"version of the project")
    if not isinstance(manifest.get("splits"), dict):
        raise DataError(f"{path}: manifest has no 'splits'; re-run ingest into {directory}")
    return manifest


def split_shards(directory: str, manifest: dict, split: str) -> list[dict]:
    """The shard entries of `split`, each checked present with its listed size.
    (Cheap: a stat per file. `python -m records verify` does the full sha256 check.)"""
    splits = manifest["splits"]
    if split not in splits:
        raise DataError(f"{manifest_path(directory)}: unknown split {split!r}; "
                        f"this data set has {sorted(splits)}")
    shards = splits[split]["shards"]
    for shard in shards:
        path = os.path.join(directory, shard["file"])
        if not os.path.exists(path):
            raise DataError(f"{path}: shard listed in the manifest is missing; "
                            f"re-run ingest into {directory} (or restore the file)")
        size = os.path.getsize(path)
        if size != shard["bytes"]:
            raise DataError(f"{path}: {size} bytes but the manifest lists {shard['bytes']} "
                            f"(truncated or replaced); re-run ingest into {directory}")
    return shards


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
                     f"age, face margin {m.get('margin')}")
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
