"""The ingest job: source -> table -> cleaning -> splits -> decoded images -> shards -> manifest.

    metadata (main process)         decode (pool of --workers)       write (main process)
    source table, clean, split  ->  chunks of (index, path, box)  ->  encode_example ->
                                    -> encoded bytes or a reason      ShardedWriter per split

The source (ingest.sources: IMDB-WIKI, UTKFace, APPA-REAL, CSV) is the only
format-specific step; from its canonical table on, every data set is the same.

Memory stays flat whatever the data set size: at most `inflight` chunks are
queued or finished-but-unwritten at any time (multiprocessing.Pool.imap would
read the whole task list ahead and buffer every result the writer has not
consumed yet), and the writer streams each record to disk as it arrives.

Crash safety: the old manifest.json is deleted before anything else, shards are
written under temporary names and renamed by ShardedWriter.finish(), and the
manifest is written last.  A killed run leaves no manifest, so readers refuse
the directory; re-running the same command starts the directory over (there is
no resuming: re-decoding is cheap next to keeping partial state consistent).
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import multiprocessing
import os

import numpy as np

from ingest import clean, images, sources, split
from ingest.progress import Progress
from records import manifest as manifest_lib
from records import schema
from records.manifest import DataError


_THRESHOLDS = clean.Thresholds()
_IMAGES = images.ImageSettings(src="")
SPLIT_FLAGS = ("split_by", "test_fraction", "val_fraction")


@dataclasses.dataclass
class Config:
    src: str
    source: str = sources.AUTO         # a name in sources.SOURCES, or auto
    out: str = ""                      # "" -> shards/<the table's dataset name>
    image_size: int = _IMAGES.image_size
    encoding: str = _IMAGES.encoding
    jpeg_quality: int = _IMAGES.jpeg_quality
    shard_mb: float = 128.0
    workers: int = 0                   # 0 -> all cores
    seed: int = 0
    # The split flags: None = not given (split.* defaults), refused for a source with splits.
    split_by: str | None = None
    test_fraction: float | None = None
    val_fraction: float | None = None
    min_face_score: float = _THRESHOLDS.min_face_score
    min_age: int = _THRESHOLDS.min_age
    max_age: int = _THRESHOLDS.max_age
    require_gender: bool = _THRESHOLDS.require_gender
    margin: float = 0.4                # CSV: margin around its face boxes, per side
    gender_male_code: int | None = None   # CSV: which numeric gender code is male
    chunk: int = 16                    # images per worker task

    def split_settings(self) -> tuple[str, float, float]:
        """(split_by, test_fraction, val_fraction) with the defaults filled in."""
        return (self.split_by or split.SPLIT_BY[0],
                split.TEST_FRACTION if self.test_fraction is None else self.test_fraction,
                split.VAL_FRACTION if self.val_fraction is None else self.val_fraction)

    def validate(self) -> None:
        """Cross-flag checks (single-flag bounds are enforced by the flag definitions)."""
        if not 0 <= self.min_age <= self.max_age < schema.NUM_AGES:
            raise DataError(f"--min_age={self.min_age} --max_age={self.max_age}: need "
                            f"0 <= min_age <= max_age <= {schema.NUM_AGES - 1}")
        _, test, val = self.split_settings()
        if test + val * (1 - test) >= 1:
            raise DataError(f"--test_fraction={test} --val_fraction={val}: leaves no train "
                            f"split; lower them")


def load_and_clean(cfg: Config):
    """(source module, its table, the kept rows, the cleaning report) for `cfg`."""
    # 1. The source (named, or recognised) loads its metadata as the canonical table.
    source = sources.resolve(cfg.source, cfg.src)
    table = source.load_table(cfg.src, sources.Options(
        min_face_score=cfg.min_face_score, gender_male_code=cfg.gender_male_code,
        margin=cfg.margin))
    # 2. Cleaning: the source's own steps, then the common age (and gender) steps, each counted.
    thresholds = clean.Thresholds(min_face_score=cfg.min_face_score, min_age=cfg.min_age,
                                  max_age=cfg.max_age, require_gender=cfg.require_gender)
    kept, cleaning = clean.clean(table.frame, table.steps + clean.common_steps(thresholds))
    return source, table, kept, cleaning


def assign_splits(table: sources.Table, kept, cfg: Config) -> np.ndarray:
    """The split of every kept row: the source's own where it has them, else seeded."""
    given = [f"--{name}" for name in SPLIT_FLAGS if getattr(cfg, name) is not None]
    if table.has_splits:
        if given:
            raise DataError(f"{' '.join(given)}: {table.described} brings its own train/val/test "
                            f"splits, which are kept; drop {'/'.join(given)}")
        return kept["split"].to_numpy(dtype=object)
    by, test, val = cfg.split_settings()
    if by == "identity" and not table.has_identity:
        raise DataError(f"--split_by identity: {table.described} has no identities (they come "
                        f"from IMDB-WIKI names or a CSV identity column); use --split_by random")
    return split.assign(kept, by=by, test_fraction=test, val_fraction=val, seed=cfg.seed)


def _chunks(order: np.ndarray, paths: list[str], boxes: list, size: int):
    for start in range(0, len(order), size):
        yield [(int(i), paths[i], boxes[i]) for i in order[start:start + size]]


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


def run(cfg: Config, log=print) -> dict:
    """Run the job described by `cfg`; returns the manifest it wrote."""
    cfg.validate()
    # 1-2. The source's canonical table, cleaned (load_and_clean).
    source, table, kept, cleaning = load_and_clean(cfg)
    entries = len(table.frame)
    if kept.empty:
        raise DataError(f"{cfg.src}: no rows survive cleaning ({cleaning}); loosen the thresholds")
    # 3. Splits: the source's own, or seeded random/identity (flags checked before any output).
    split_of = assign_splits(table, kept, cfg)
    # Seeded write order: every shard is a random sample of its split, so
    # file-level sharding across readers stays unbiased.
    order = np.random.default_rng(cfg.seed + 1).permutation(len(kept))

    out = cfg.out or os.path.join("shards", table.dataset)
    workers = cfg.workers or os.cpu_count() or 1
    os.makedirs(out, exist_ok=True)
    stale = manifest_lib.manifest_path(out)
    if os.path.exists(stale):          # an old finished set must not outlive this run
        os.remove(stale)

    # 4. Examples: the labels per kept row, the images decoded by the pool.
    paths = kept["path"].tolist()
    boxes = kept["box"].tolist()
    ages = kept["age"].to_numpy()
    genders = kept["gender"].to_numpy()
    scores = kept["face_score"].to_numpy()
    age_means = kept["age_mean"].to_numpy()
    age_stds = kept["age_std"].to_numpy()
    real_ages = kept["real_age"].to_numpy()
    settings = images.ImageSettings(src=table.root, image_size=cfg.image_size,
                                    encoding=cfg.encoding, jpeg_quality=cfg.jpeg_quality,
                                    margin=cfg.margin)
    image_format = schema.image_format(cfg.encoding)

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
        for index, encoded, reason in pool.map(_chunks(order, paths, boxes, cfg.chunk)):
            progress.update()
            if encoded is None:
                skipped[reason] += 1
                continue
            age, gender = int(ages[index]), int(genders[index])
            writers[split_of[index]].write(schema.encode_example(
                image=encoded, image_format=image_format, height=cfg.image_size,
                width=cfg.image_size, age=age, gender=gender,
                face_score=float(scores[index]), key=paths[index],
                age_mean=float(age_means[index]), age_std=float(age_stds[index]),
                real_age=int(real_ages[index])))
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
                   title=f"{table.dataset} ({sum(histogram)} records)")
    manifest = {
        "schema_version": schema.SCHEMA_VERSION,
        "kind": schema.KIND_IMAGES,
        "image_size": cfg.image_size,
        "encoding": cfg.encoding,
        "source": {"name": source.NAME, "dataset": table.dataset, "read": table.described,
                   "fingerprint": table.fingerprint, "entries": entries},
        "label": table.label,
        "margin": table.margin,
        "flags": {**dataclasses.asdict(cfg), "source": source.NAME, "out": out,
                  "workers": workers,
                  **({} if table.has_splits else dict(zip(SPLIT_FLAGS, cfg.split_settings())))},
        "cleaning": cleaning,
        "kept": len(kept),
        "skipped": dict(sorted(skipped.items())),
        "splits": splits,
        "age_histogram": histogram,
        "gender_counts": gender_counts,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest_lib.write_manifest(out, manifest)    # last: this makes the directory a data set
    log(manifest_lib.summary(manifest, out))
    log(f"{progress.rate:.0f} images/s; wrote {manifest_lib.manifest_path(out)}")
    return manifest
