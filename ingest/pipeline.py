"""The ingest job: .mat -> cleaned rows -> splits -> decoded images -> shards -> manifest.

    metadata (main process)      decode (pool of --workers)       write (main process)
    load .mat, clean, split  ->  chunks of (index, full_path)  ->  encode_example ->
                                 -> encoded bytes or a reason      ShardedWriter per split

Memory stays flat whatever the data set size: at most `inflight` chunks are
queued or finished-but-unwritten at any time (multiprocessing.Pool.imap would
read the whole task list ahead and buffer every result the writer has not
consumed yet), and the writer streams each record to disk as it arrives.

Crash safety: the old manifest.json is deleted before anything else, shards are
written under temporary names and renamed by ShardedWriter.finish(), and the
manifest is written last.  A killed run leaves no manifest, so readers refuse
the directory; re-running the same command starts the directory over (it does
not resume: re-decoding is cheap next to keeping partial state consistent).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import multiprocessing
import os

import numpy as np

from ingest import clean, images, matfile, split
from ingest.progress import Progress
from records import manifest as manifest_lib
from records import schema
from records.manifest import DataError


@dataclasses.dataclass
class Config:
    src: str
    out: str = ""                      # "" -> shards/wiki or shards/imdb
    image_size: int = 224
    encoding: str = "jpeg"
    jpeg_quality: int = 95
    shard_mb: float = 128.0
    workers: int = 0                   # 0 -> all cores
    seed: int = 0
    split_by: str = "random"
    test_fraction: float = 0.3
    val_fraction: float = 0.1
    min_face_score: float = 3.0
    min_age: int = 1
    max_age: int = 100
    require_gender: bool = False
    chunk: int = 16                    # images per worker task

    def validate(self) -> None:
        """Cross-flag checks (single-flag bounds are enforced by the flag definitions)."""
        if not 0 <= self.min_age <= self.max_age < schema.NUM_AGES:
            raise DataError(f"--min_age={self.min_age} --max_age={self.max_age}: need "
                            f"0 <= min_age <= max_age <= {schema.NUM_AGES - 1}")
        if self.test_fraction + self.val_fraction * (1 - self.test_fraction) >= 1:
            raise DataError(f"--test_fraction={self.test_fraction} --val_fraction="
                            f"{self.val_fraction}: leaves no train split; lower them")


def default_out(mat_key: str) -> str:
    return os.path.join("shards", mat_key)


def _chunks(order: np.ndarray, paths: list[str], size: int):
    for start in range(0, len(order), size):
        yield [(int(i), paths[i]) for i in order[start:start + size]]


class DecodePool:
    """Ordered, bounded fan-out of image chunks to worker processes (or inline
    for workers=1, which is also the benchmark's single-process baseline)."""

    def __init__(self, settings: images.ImageSettings, workers: int, inflight_per_worker: int = 4):
        self.settings, self.workers = settings, workers
        self.inflight = max(2, workers * inflight_per_worker)
        self._pool = None
        if workers > 1:
            # ingest never imports TensorFlow (records.wire frames the records), so
            # the forked workers are small PIL-only processes with no TF threads.
            self._pool = multiprocessing.get_context("fork").Pool(
                workers, initializer=images.init_worker, initargs=(settings,))
        else:
            images.init_worker(settings)

    def map(self, chunks):
        if self._pool is None:
            for chunk in chunks:
                yield from images.process_chunk(chunk)
            return
        pending = collections.deque()
        for chunk in chunks:
            pending.append(self._pool.apply_async(images.process_chunk, (chunk,)))
            if len(pending) >= self.inflight:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()

    def terminate(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()


def _gender_code(value: float) -> int:
    return schema.GENDER_UNKNOWN if np.isnan(value) else int(value)


def run(cfg: Config, log=print) -> dict:
    """Run the job described by `cfg`; returns the manifest it wrote."""
    cfg.validate()
    mat_path, mat_key = matfile.find_mat(cfg.src)
    out = cfg.out or default_out(mat_key)
    workers = cfg.workers or os.cpu_count() or 1
    os.makedirs(out, exist_ok=True)
    stale = manifest_lib.manifest_path(out)
    if os.path.exists(stale):          # first: an old finished set must not outlive this run
        os.remove(stale)

    frame = matfile.load(mat_path, mat_key)
    entries = len(frame)
    kept, cleaning = clean.clean(frame, clean.Thresholds(
        min_face_score=cfg.min_face_score, min_age=cfg.min_age, max_age=cfg.max_age,
        require_gender=cfg.require_gender))
    if kept.empty:
        raise DataError(f"{mat_path}: no rows survive cleaning ({cleaning}); loosen the thresholds")
    split_of = split.assign(kept, by=cfg.split_by, test_fraction=cfg.test_fraction,
                            val_fraction=cfg.val_fraction, seed=cfg.seed)
    # Seeded write order: every shard is a random sample of its split, so
    # file-level sharding across readers stays unbiased.
    order = np.random.default_rng(cfg.seed + 1).permutation(len(kept))

    paths = kept["full_path"].tolist()
    ages = kept["age"].to_numpy()
    genders = kept["gender"].to_numpy()
    scores = kept["face_score"].to_numpy()
    settings = images.ImageSettings(src=cfg.src, image_size=cfg.image_size,
                                    encoding=cfg.encoding, jpeg_quality=cfg.jpeg_quality)
    image_format = schema.FORMAT_RAW if cfg.encoding == "raw" else schema.FORMAT_JPEG

    pool = DecodePool(settings, workers)
    try:
        from records.writer import ShardedWriter

        shard_bytes = max(1, int(cfg.shard_mb * 1e6))
        writers = {s: ShardedWriter(out, s, shard_bytes=shard_bytes) for s in schema.SPLITS}
        skipped: collections.Counter = collections.Counter()
        histogram = [0] * schema.NUM_AGES
        split_histograms = {s: [0] * schema.NUM_AGES for s in schema.SPLITS}
        gender_counts = {"male": 0, "female": 0, "unknown": 0}
        progress = Progress(len(kept))
        for index, encoded, reason in pool.map(_chunks(order, paths, cfg.chunk)):
            progress.update()
            if encoded is None:
                skipped[reason] += 1
                continue
            age, gender = int(ages[index]), _gender_code(genders[index])
            writers[split_of[index]].write(schema.encode_example(
                image=encoded, image_format=image_format, height=cfg.image_size,
                width=cfg.image_size, age=age, gender=gender,
                face_score=float(scores[index]), key=paths[index]))
            histogram[age] += 1
            split_histograms[split_of[index]][age] += 1
            gender_counts[{1: "male", 0: "female"}.get(gender, "unknown")] += 1
        progress.close()
        pool.close()
    except BaseException:
        pool.terminate()
        raise

    splits = {}
    for name, writer in writers.items():
        if writer.count == 0:
            raise DataError(f"{out}: split {name!r} has no readable images (of {entries} entries, "
                            f"{len(kept)} kept, skipped {dict(skipped)}); check --src or "
                            f"change --test_fraction/--val_fraction")
        # Per-split ages: the trainer's baseline (always answer the training mean) needs them.
        splits[name] = {**writer.finish(), "age_histogram": split_histograms[name]}

    from ingest.plot import age_gender_png

    age_gender_png(os.path.join(out, "age_gender.png"), histogram, gender_counts,
                   title=f"{os.path.basename(mat_path)} ({sum(histogram)} records)")
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": "images",
        "image_size": cfg.image_size,
        "encoding": cfg.encoding,
        "source": {"mat": os.path.basename(mat_path), "sha256": manifest_lib.file_sha256(mat_path),
                   "entries": entries},
        "flags": {**dataclasses.asdict(cfg), "out": out, "workers": workers},
        "cleaning": cleaning,
        "kept": len(kept),
        "skipped": dict(sorted(skipped.items())),
        "splits": splits,
        "age_histogram": histogram,
        "gender_counts": gender_counts,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest_lib.write_manifest(out, manifest)    # last: this makes the directory a data set
    log(summary(manifest, out, progress.rate))
    return manifest


def summary(manifest: dict, out: str, rate: float | None = None) -> str:
    lines = [f"source {manifest['source']['mat']}: {manifest['source']['entries']} entries"]
    for c in manifest["cleaning"]:
        lines.append(f"  {c['step']:<15} {c.get('rule', ''):<36} removed {c['removed']:>7}  "
                     f"remaining {c['remaining']:>7}")
    skipped = manifest["skipped"]
    lines.append(f"kept {manifest['kept']}; skipped {sum(skipped.values())} files"
                 + (f" ({', '.join(f'{k}: {v}' for k, v in skipped.items())})" if skipped else ""))
    for name, entry in manifest["splits"].items():
        size = sum(s["bytes"] for s in entry["shards"]) / 1e6
        lines.append(f"  {name:<5} {entry['count']:>7} records in {len(entry['shards'])} shards "
                     f"({size:.1f} MB)")
    lines.append(f"gender {manifest['gender_counts']}")
    if rate is not None:
        lines.append(f"{rate:.0f} images/s; wrote {out}/manifest.json")
    return "\n".join(lines)

