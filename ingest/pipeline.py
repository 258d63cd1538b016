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

Crash safety (ingest.output, storage.outdir, storage.lock): flags, source and
output are checked before anything is touched; one ingest per output
directory; the data set is built in a staging directory beside --out and
swapped in when complete, so a failed or killed run leaves the previous data
set usable; re-running the same command resumes from the completed shards.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import numpy as np

from entry import interrupt
from entry.progress import Progress
from errors import DataError
from faces import facebox, framing
from ingest import clean, images, output, sources, split
from ingest.decode_pool import DecodePool
from records import manifest as manifest_lib
from records import schema
from storage import outdir


_THRESHOLDS = clean.Thresholds()
_IMAGES = images.ImageSettings(src="")
SPLIT_FLAGS = ("split_by", "test_fraction", "val_fraction")
SOURCE_FLAGS = ("margin", "gender_male_code")   # read by the sources listing them in OPTIONS


@dataclasses.dataclass
class Config:
    src: str
    source: str = sources.AUTO         # a name in sources.SOURCES, or auto
    out: str = ""                      # "" -> shards/<the source's dataset name>
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
    # The source flags: None = not given (the source's default), refused for a source
    # whose OPTIONS lack them.
    margin: float | None = None        # CSV: margin around its face boxes, per side
    gender_male_code: int | None = None   # CSV: which numeric gender code is male
    chunk: int = 16                    # images per worker task
    reframe: str = framing.REFRAME_NONE   # or a detector: find and frame every face again
    align: bool | None = None          # --reframe: level the eyes (None: on with eye landmarks)
    min_face: int = _IMAGES.min_face   # smallest stored face side (px of the source photo)

    def split_settings(self) -> tuple[str, float, float]:
        """(split_by, test_fraction, val_fraction) with the defaults filled in."""
        return (self.split_by or split.SPLIT_BY[0],
                split.TEST_FRACTION if self.test_fraction is None else self.test_fraction,
                split.VAL_FRACTION if self.val_fraction is None else self.val_fraction)

    def margin_of(self, source) -> float:
        """The face margin ingest crops `source`'s boxes (or, with --reframe, the detected
        faces) with: --margin, else its MARGIN (with --reframe: facebox.DEFAULT_MARGIN)."""
        if self.margin is not None:
            return self.margin
        return source.MARGIN if self.reframe == framing.REFRAME_NONE else facebox.DEFAULT_MARGIN

    def framing_of(self, source) -> framing.Framing:
        """The framing of the crops this ingest stores (the manifest's)."""
        if self.reframe == framing.REFRAME_NONE:
            return framing.Framing(framing.SOURCE, False, self.margin_of(source))
        align = framing.aligns_by_default(self.reframe) if self.align is None else self.align
        return framing.Framing(self.reframe, align, self.margin_of(source))

    def validate(self) -> None:
        """Cross-flag checks (single-flag bounds are enforced by the flag definitions)."""
        if not 0 <= self.min_age <= self.max_age < schema.NUM_AGES:
            raise DataError(f"--min_age={self.min_age} --max_age={self.max_age}: need "
                            f"0 <= min_age <= max_age <= {schema.NUM_AGES - 1}")
        if self.align and not framing.aligns_by_default(self.reframe):
            eyes = " or ".join(framing.EYE_DETECTORS)
            raise DataError(f"--align with --reframe {self.reframe}: only --reframe {eyes} finds the eyes "
                            f"to level; drop --align or use --reframe {eyes}")
        _, test, val = self.split_settings()
        if test + val * (1 - test) >= 1:
            raise DataError(f"--test_fraction={test} --val_fraction={val}: leaves no train "
                            f"split; lower them")


def refuse_given(cfg: Config, names, why: str) -> None:
    """One line naming the flags of `names` that were given (not None) where they do
    not apply, and `why`."""
    given = [f"--{name}" for name in names if getattr(cfg, name) is not None]
    if given:
        raise DataError(f"{' '.join(given)}: {why}; drop {'/'.join(given)}")


def resolve_source(cfg: Config):
    """The source module for `cfg`, its source flags checked before anything is read."""
    source = sources.resolve(cfg.source, cfg.src)
    # --margin frames the detected faces of any source under --reframe.
    options = source.OPTIONS + (("margin",) if cfg.reframe != framing.REFRAME_NONE else ())
    unused = [name for name in SOURCE_FLAGS if name not in options]
    users = sorted(s.NAME for s in sources.SOURCES.values() if set(unused) & set(s.OPTIONS))
    refuse_given(cfg, unused, f"not used by the {source.NAME} source (only by "
                              f"{', '.join(users)})")
    return source


def load_and_clean(cfg: Config, source=None):
    """(source module, its table, the kept rows, the cleaning report) for `cfg`."""
    # 1. The source (named, or recognised) loads its metadata as the canonical table.
    source = source or resolve_source(cfg)
    table = source.load_table(cfg.src, sources.Options(
        min_face_score=cfg.min_face_score, gender_male_code=cfg.gender_male_code,
        margin=cfg.margin_of(source)))
    # 2. Cleaning: the source's own steps, then the common age (and gender) steps, each counted.
    thresholds = clean.Thresholds(min_face_score=cfg.min_face_score, min_age=cfg.min_age,
                                  max_age=cfg.max_age, require_gender=cfg.require_gender)
    steps = table.steps + clean.common_steps(thresholds)
    kept, cleaning = clean.clean(table.frame, steps)
    if kept.empty:
        why, loosen = clean.why_nothing_is_left(table.frame, steps)
        fix = (f"{loosen} if that rule is too strict for this data" if loosen else
               f"check that --src holds the {source.NAME} format (see docs/data-sets.md)")
        raise DataError(f"{cfg.src}: no row survives cleaning: {why}; {fix}")
    return source, table, kept, cleaning


def assign_splits(table: sources.Table, kept, cfg: Config) -> np.ndarray:
    """The split of every kept row: the source's own where it has them, else seeded."""
    if table.has_splits:
        refuse_given(cfg, SPLIT_FLAGS, f"{table.described} brings its own train/val/test "
                                       f"splits, which are kept")
        return kept["split"].to_numpy(dtype=object)
    by, test, val = cfg.split_settings()
    if by == "identity" and not table.has_identity:
        raise DataError(f"--split_by identity: {table.described} has no identities (they come "
                        f"from IMDB-WIKI names or a CSV identity column); use --split_by random")
    return split.assign(kept, by=by, test_fraction=test, val_fraction=val, seed=cfg.seed)


def _chunks(order: np.ndarray, paths: list[str], boxes: list, size: int):
    for start in range(0, len(order), size):
        yield [(int(i), paths[i], boxes[i]) for i in order[start:start + size]]


def _require_every_split(split_of: np.ndarray, cfg: Config, table: sources.Table) -> None:
    """Before any image is decoded: each split gets rows (--test_fraction 0 cannot work)."""
    for name in schema.SPLITS:
        if np.any(split_of == name):
            continue
        if table.has_splits:      # the fraction flags are refused for it: name the source
            raise DataError(f"{table.described}: the {name} split gets none of the "
                            f"{len(split_of)} kept rows from {table.splits_from}; every split needs "
                            f"kept rows there")
        _, test, val = cfg.split_settings()
        raise DataError(f"--test_fraction={test} --val_fraction={val}: the {name} split gets "
                        f"none of the {len(split_of)} kept rows of {table.described}; raise the "
                        f"fraction (every split needs rows)")


def fingerprint(cfg: Config, source_fingerprint: str) -> dict:
    """What makes two runs "the same command": a resume needs equal fingerprints.
    (--workers and the chunk size change the speed, not one byte of the output; the
    source is named by its fingerprint, so a moved --src folder still resumes.)"""
    flags = {k: v for k, v in dataclasses.asdict(cfg).items()
             if k not in ("src", "out", "workers", "chunk")}
    return {"schema_version": schema.SCHEMA_VERSION, "source_sha256": source_fingerprint,
            "flags": flags}


def run(cfg: Config, log=print) -> dict:
    """Run the job described by `cfg`; returns the manifest it wrote.  Flags, the
    source and the output are checked before anything is written (see ingest.output)."""
    cfg.validate()
    source = resolve_source(cfg)                    # refused here: nothing read
    out = cfg.out or os.path.join("shards", source.dataset(cfg.src))
    workers = cfg.workers or os.cpu_count() or 1
    target = output.DataSetOutput(out, log)
    if problem := outdir.where_you_stand(out, "--out"):
        raise DataError(problem)
    target.check()                                  # refused here: nothing touched
    staging = os.path.relpath(target.staging)
    interrupt.note(f"ingest stopped; the finished shards are kept in "
                   f"{staging if not staging.startswith('..') else target.staging} and the same command resumes")
    framed = cfg.framing_of(source)
    settings = images.ImageSettings(src=sources.root_of(cfg.src), image_size=cfg.image_size,
                                    encoding=cfg.encoding, jpeg_quality=cfg.jpeg_quality,
                                    margin=framed.margin, reframe=cfg.reframe, align=framed.aligned,
                                    min_face=cfg.min_face)
    pool = DecodePool(settings, workers)            # forked before the table exists and the lock
    try:
        with target.lock():
            target.repair()
            manifest, rate = _ingest(cfg, out, target, pool, source, workers)
        pool.close()
    except KeyboardInterrupt:
        pool.kill()          # entry ends the process next (interrupt.stop): nothing waits on the executor
        raise
    except BaseException:
        pool.terminate()
        raise
    log(manifest_lib.summary(manifest, out))
    log(f"{rate:.0f} images/s; wrote {manifest_lib.manifest_path(out)}")
    return manifest


def _ingest(cfg: Config, out: str, target: output.DataSetOutput, pool: DecodePool,
            source, workers: int) -> tuple[dict, float]:
    # 1-2. The source's canonical table, cleaned (load_and_clean).
    _, table, kept, cleaning = load_and_clean(cfg, source)
    entries = len(table.frame)
    # 3. Splits: the source's own, or seeded random/identity (checked before any output).
    split_of = assign_splits(table, kept, cfg)
    _require_every_split(split_of, cfg, table)
    # Seeded write order: every shard is a random sample of its split, so
    # file-level sharding across readers stays unbiased.
    order = np.random.default_rng(cfg.seed + 1).permutation(len(kept))

    # 4. Examples: the labels per kept row, the images decoded by the pool.
    paths = kept["path"].tolist()
    boxes = kept["box"].tolist()
    ages = kept["age"].to_numpy()
    genders = kept["gender"].to_numpy()
    scores = kept["face_score"].to_numpy()
    age_means = kept["age_mean"].to_numpy()
    age_stds = kept["age_std"].to_numpy()
    real_ages = kept["real_age"].to_numpy()
    races = (kept[schema.RACE].map(schema.group_label).tolist() if schema.RACE in kept
             else [""] * len(kept))                                # a group attribute: optional
    described, fingerprint_of_source = table.described, table.fingerprint
    dataset, label, margin, splits_from = table.dataset, table.label, table.margin, table.splits_from
    del table, kept                              # the decode loop needs only these columns
    image_format = schema.ENCODINGS[cfg.encoding]

    with target.write_errors():                  # disk full / read-only: one line, staging removed
        writing = target.start(fingerprint(cfg, fingerprint_of_source), order, split_of,
                               shard_bytes=max(1, int(cfg.shard_mb * 1e6)))
        # The rate is the detector's under --reframe (it is most of each image's work).
        progress = Progress(len(writing.todo), "images" if cfg.reframe == framing.REFRAME_NONE
                            else f"images ({cfg.reframe})")
        for index, encoded, reason in pool.map(_chunks(writing.todo, paths, boxes, cfg.chunk)):
            progress.update()
            age, gender = int(ages[index]), int(genders[index])
            record = None if encoded is None else schema.encode_example(
                image=encoded, image_format=image_format, height=cfg.image_size,
                width=cfg.image_size, age=age, gender=gender,
                face_score=float(scores[index]), key=paths[index],
                age_mean=float(age_means[index]), age_std=float(age_stds[index]),
                real_age=int(real_ages[index]), race=races[index])
            writing.add(index, record, reason, age, gender, {schema.RACE: races[index]})
        progress.close()

        totals = writing.totals()
        for name in schema.SPLITS:
            if writing.count(name) > 0:
                continue
            counts = f"{entries} entries, {len(paths)} kept, skipped {totals['skipped']}"
            if splits_from:
                raise DataError(f"{described}: the {name} split has no readable images (its "
                                f"{int(np.sum(split_of == name))} rows from {splits_from}; of "
                                f"{counts}); check their image files")
            raise DataError(f"{out}: split {name!r} has no readable images (of {counts}); check "
                            f"--src or change --test_fraction/--val_fraction")
        # Per-split ages: the trainer's baseline (always answer the training mean) needs them.
        splits = writing.finish_splits()

        from reports.age_gender import age_gender_png

        age_gender_png(os.path.join(target.staging, output.PLOT_NAME), totals["age_histogram"],
                       totals["gender_counts"],
                       title=f"{dataset} ({sum(totals['age_histogram'])} records)")
        manifest = {
            "schema_version": schema.SCHEMA_VERSION,
            "kind": schema.KIND_IMAGES,
            "image_size": cfg.image_size,
            "encoding": cfg.encoding,
            "source": {"name": source.NAME, "dataset": dataset, "read": described,
                       "fingerprint": fingerprint_of_source, "entries": entries},
            "label": label,
            # detector, aligned, margin (faces.framing): the source's own crops keep its margin
            **dataclasses.replace(cfg.framing_of(source), **(
                {"margin": margin} if cfg.reframe == framing.REFRAME_NONE else {})).as_dict(),
            "flags": {**dataclasses.asdict(cfg), "source": source.NAME, "out": out,
                      "workers": workers,
                      **({} if splits_from else dict(zip(SPLIT_FLAGS, cfg.split_settings()))),
                      **({"margin": margin} if "margin" in source.OPTIONS or cfg.reframe != framing.REFRAME_NONE else {})},
            "cleaning": cleaning,
            "kept": len(paths),
            "skipped": totals["skipped"],
            "splits": splits,
            "age_histogram": totals["age_histogram"],
            "gender_counts": totals["gender_counts"],
            "group_counts": totals["group_counts"],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        writing.publish(manifest)               # manifest last, then staging becomes `out`
    return manifest, progress.rate

