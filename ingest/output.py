"""The output side of ingest: where shards go, how they get there, how a killed
run resumes.

    out = DataSetOutput("shards/wiki", log)
    out.check()                        # ours, empty or absent; else refused, untouched
    with out.lock():                   # one ingest per directory
        out.repair()                   # finish a swap a crash interrupted
        ...load and split the metadata (nothing is touched yet)...
        writing = out.start(fingerprint, order, split_of)   # staging: fresh or resumed
        for index, encoded, reason in decoded(writing.todo):
            writing.add(...)
        splits = writing.finish_splits()                      # shards renamed to final names
        writing.publish(manifest)                             # manifest in staging, then swap

The data set is built in `parent/.NAME.staging` (storage.outdir) and swapped in
only when complete, so a failed or killed run leaves the previous data set
usable.  Inside staging, every completed shard (closed and fsynced) is recorded
in `.resume.json` together with how far its split had got (rows consumed,
skipped, age histogram, genders); the next run of the same command (same
source sha256, same flags) keeps those shards after re-hashing them, deletes
the partial ones and decodes only the rows after them.  The write order is
fixed by the seed, so the result is byte-identical to an uninterrupted run.
A different source or different flags start over, and say so.

A write error (disk full, read-only file system) ends the run with one line
and deletes the staging directory, so no temporary shards are left filling
the disk.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os

import numpy as np

from errors import DataError
from records import schema
from records.manifest import manifest_path, write_manifest
from records.writer import ResumeMismatch, ShardedWriter
from reports.card import CARD_NAME    # python -m records inspect --html (no TensorFlow at import)
from storage import outdir
from storage.atomic import atomic_write_bytes
from storage.json_file import load_json

KIND = schema.KIND_IMAGES
RESUME_NAME = ".resume.json"
PLOT_NAME = "age_gender.png"
GENDER_NAMES = schema.GENDER_NAMES               # the manifest's gender_counts keys


def owns(name: str) -> bool:
    """True for the top-level names ingest writes into a data set (the rest is the user's)."""
    return (name in (outdir.MARKER_NAME, schema.MANIFEST_NAME, PLOT_NAME, RESUME_NAME, CARD_NAME)
            or schema.parse_shard_name(name) is not None
            or (name.startswith(".") and name.endswith(f"{schema.SHARD_SUFFIX}.tmp"))
            or name.startswith(f"{schema.MANIFEST_NAME}.tmp-"))


def _shard_hashes(directory: str) -> dict | None:
    try:
        splits = load_json(manifest_path(directory))["splits"]
        return {s: [(x["file"], x["sha256"]) for x in e["shards"]] for s, e in splits.items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def same_shards(old: str, new: str) -> bool:
    """Nested outputs (the feature cache) survive a re-ingest only into an identical data set."""
    before = _shard_hashes(old)
    return before is not None and before == _shard_hashes(new)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_counts(value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and _is_count(v) for k, v in value.items())


def resume_state_problem(state) -> str | None:
    """What makes `state` (a .resume.json's value) not one Writing._checkpoint wrote, or
    None: every field a resume reads has the type it is read as."""
    if not isinstance(state, dict) or not isinstance(state.get("fingerprint"), dict) \
            or not isinstance(state.get("splits"), dict) \
            or not isinstance(state["fingerprint"].get("flags", {}), dict):
        return "not an object holding a fingerprint and splits objects"
    for split, saved in state["splits"].items():
        shards = saved.get("shards") if isinstance(saved, dict) else None
        if split not in schema.SPLITS or not isinstance(shards, list):
            return f"split {split!r} is not a split with a list of shards"
        for shard in shards:
            if not (isinstance(shard, dict) and isinstance(shard.get("tmp"), str)
                    and isinstance(shard.get("sha256"), str)
                    and _is_count(shard.get("count")) and _is_count(shard.get("bytes"))):
                return f"split {split!r}: a shard is not {{tmp, sha256, count, bytes}}"
        histogram = saved.get("age_histogram", [0] * schema.NUM_AGES)
        groups = saved.get("group_counts", {})
        if not (_is_count(saved.get("consumed", 0)) and _is_counts(saved.get("skipped", {}))
                and isinstance(histogram, list) and len(histogram) == schema.NUM_AGES
                and all(map(_is_count, histogram))
                and _is_counts(saved.get("gender_counts", no_genders()))
                and set(saved.get("gender_counts", no_genders())) == set(no_genders())
                and isinstance(groups, dict) and all(map(_is_counts, groups.values()))):
            return f"split {split!r}: its counts are not counts"
    return None


class SplitTally:
    """What one split has consumed so far, in write order: rows (written or
    skipped), skip reasons, ages and genders of the written records."""

    def __init__(self, saved: dict | None = None):
        saved = saved or {}
        self.consumed = saved.get("consumed", 0)
        self.skipped = collections.Counter(saved.get("skipped", {}))
        self.age_histogram = list(saved.get("age_histogram", [0] * schema.NUM_AGES))
        self.gender_counts = dict(saved.get("gender_counts", no_genders()))
        self.group_counts = {name: collections.Counter(saved.get("group_counts", {}).get(name, {}))
                             for name in schema.GROUP_ATTRIBUTES}

    def snapshot(self) -> dict:
        return {"consumed": self.consumed, "skipped": dict(sorted(self.skipped.items())),
                "age_histogram": list(self.age_histogram), "gender_counts": dict(self.gender_counts),
                "group_counts": group_counts([self])}


def group_counts(tallies) -> dict:
    """{attribute: {label: count}} of `tallies` together, labels sorted ("unknown" for "")."""
    out = {}
    for name in schema.GROUP_ATTRIBUTES:
        total = collections.Counter()
        for tally in tallies:
            total.update(tally.group_counts[name])
        out[name] = dict(sorted(total.items()))
    return out


def no_genders() -> dict:
    """The manifest's `gender_counts` before any record: every gender name at 0."""
    return {name: 0 for name in GENDER_NAMES.values()}


class DataSetOutput(outdir.Output):
    """An ingest output directory (storage.outdir.Output with ingest's own names)."""

    def __init__(self, path: str, log=print):
        super().__init__(path, kind=KIND, owns=owns, nested={schema.FEATURES_FOLDER: schema.KIND_FEATURES},
                         keep_nested=same_shards, what="--out")
        self.log = log

    def repair(self) -> None:
        did = super().repair()
        if did:
            self.log(f"ingest: {did}")

    @contextlib.contextmanager
    def write_errors(self):
        """Disk full, read-only, no permission while writing: one line, staging removed."""
        try:
            yield
        except OSError as e:
            freed = _tree_bytes(self.staging)
            self.discard_staging()
            where = f" ({e.filename})" if e.filename else ""
            fix = {errno.ENOSPC: "free space on that disk", errno.EDQUOT: "free space on that disk",
                   errno.EROFS: "choose an --out on a writable file system"}.get(
                       e.errno, "check the permissions of --out and its parent")
            raise DataError(f"--out {self.path}: cannot write: {e.strerror or e}{where}; removed "
                            f"the unfinished data set ({freed / 1e6:.1f} MB); {fix}, then rerun") from None

    def start(self, fingerprint: dict, order: np.ndarray, split_of: np.ndarray,
              shard_bytes: int) -> "Writing":
        """Open the staging directory (resumed when its fingerprint matches) and the writers."""
        saved = self._resumable(fingerprint)
        if saved is None:
            self.start_staging(keep=False)
            return Writing(self, fingerprint, order, split_of, shard_bytes, {})
        self.start_staging(keep=True)
        try:
            writing = Writing(self, fingerprint, order, split_of, shard_bytes, saved)
        except ResumeMismatch as e:
            self.log(f"ingest: starting over: {e}")
            self.start_staging(keep=False)
            return Writing(self, fingerprint, order, split_of, shard_bytes, {})
        kept = {s: len(v["shards"]) for s, v in saved.items()}
        self.log(f"ingest: resuming {self.staging}: kept {sum(kept.values())} completed shards "
                 f"({', '.join(f'{s} {n}' for s, n in kept.items())}); decoding the remaining "
                 f"{len(writing.todo)} of {len(order)} images")
        return writing

    def _resumable(self, fingerprint: dict) -> dict | None:
        """The saved split states of an interrupted run of the same command, else None
        (saying why a leftover staging directory is not resumed)."""
        if not os.path.isdir(self.staging):
            return None
        path = os.path.join(self.staging, RESUME_NAME)
        if not os.path.lexists(path):
            self.log(f"ingest: starting over: {self.staging} holds no completed shard")
            return None
        try:
            state = load_json(path)
        except (OSError, ValueError) as e:
            self.log(f"ingest: starting over: {path} is damaged ({e})")
            return None
        problem = resume_state_problem(state)
        if problem:
            self.log(f"ingest: starting over: {path} is damaged ({problem})")
            return None
        before, saved = state["fingerprint"], state["splits"]
        if before != fingerprint:
            changed = sorted(k for k in set(before.get("flags", {})) | set(fingerprint["flags"])
                             if before.get("flags", {}).get(k) != fingerprint["flags"].get(k))
            what = (["the source (.mat sha256)"] if before.get("source_sha256") != fingerprint["source_sha256"] else []) \
                + [f"--{k}" for k in changed] \
                + (["the schema version"] if before.get("schema_version") != fingerprint["schema_version"] else [])
            self.log(f"ingest: starting over: {', '.join(what) or 'the command'} changed since "
                     f"the interrupted run in {self.staging}")
            return None
        return saved


class Writing:
    """One ingest run writing into the staging directory (fresh or resumed)."""

    def __init__(self, out: DataSetOutput, fingerprint: dict, order: np.ndarray,
                 split_of: np.ndarray, shard_bytes: int, saved: dict):
        self.out, self.fingerprint, self.split_of = out, fingerprint, split_of
        self.tallies = {s: SplitTally(saved.get(s)) for s in schema.SPLITS}
        self.checkpoints = {s: saved[s] for s in saved}
        self.writers = {s: ShardedWriter(out.staging, s, shard_bytes=shard_bytes,
                                         resume=saved.get(s, {}).get("shards"),
                                         on_shard_closed=lambda _i, s=s: self._checkpoint(s))
                        for s in schema.SPLITS}
        self.todo = self._remaining(order)

    def _remaining(self, order: np.ndarray) -> np.ndarray:
        """`order` without each split's first `consumed` rows (already in kept shards)."""
        keep = np.ones(len(order), dtype=bool)
        splits = self.split_of[order]
        for name, tally in self.tallies.items():
            mine = splits == name
            keep &= ~(mine & (np.cumsum(mine) <= tally.consumed))
        return order[keep]

    def _checkpoint(self, split: str) -> None:
        """A shard of `split` is complete and on disk: record how far the split got."""
        self.checkpoints[split] = {"shards": self.writers[split].completed(),
                                   **self.tallies[split].snapshot()}
        state = {"fingerprint": self.fingerprint, "splits": self.checkpoints}
        atomic_write_bytes(os.path.join(self.out.staging, RESUME_NAME),
                           (json.dumps(state) + "\n").encode())

    def add(self, index: int, record: bytes | None, reason: str | None, age: int, gender: int,
            groups: dict | None = None) -> None:
        """The row `index` (in write order): its serialized record, or the reason it has none;
        `groups`: its group labels by attribute (missing: unknown)."""
        split = self.split_of[index]
        tally = self.tallies[split]
        if record is None:
            tally.skipped[reason] += 1
        else:
            try:
                self.writers[split].write(record)     # may close a shard: checkpoint before this row
            except OSError:
                self.writers[split].discard_open()
                raise
            tally.age_histogram[age] += 1
            name = GENDER_NAMES.get(gender, GENDER_NAMES[schema.GENDER_UNKNOWN])
            tally.gender_counts[name] += 1
            for attribute in schema.GROUP_ATTRIBUTES:
                tally.group_counts[attribute][schema.group_name((groups or {}).get(attribute, ""))] += 1
        tally.consumed += 1

    def count(self, split: str) -> int:
        return self.writers[split].count

    def totals(self) -> dict:
        skipped = collections.Counter()
        histogram = [0] * schema.NUM_AGES
        genders = no_genders()
        for tally in self.tallies.values():
            skipped.update(tally.skipped)
            histogram = [a + b for a, b in zip(histogram, tally.age_histogram)]
            for k, v in tally.gender_counts.items():
                genders[k] += v
        return {"skipped": dict(sorted(skipped.items())), "age_histogram": histogram,
                "gender_counts": genders, "group_counts": group_counts(self.tallies.values())}

    def finish_splits(self) -> dict:
        """Rename every split's shards to their final names; the manifest's `splits`."""
        with contextlib.suppress(FileNotFoundError):   # from here on nothing is resumable
            os.remove(os.path.join(self.out.staging, RESUME_NAME))
        return {name: {**writer.finish(), "age_histogram": self.tallies[name].age_histogram,
                       "group_counts": group_counts([self.tallies[name]])}
                for name, writer in self.writers.items()}

    def publish(self, manifest: dict) -> None:
        """Manifest last into staging, then swap staging in as the data set."""
        write_manifest(self.out.staging, manifest)
        self.out.swap_in()


def _tree_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(root, name))
    return total
