"""The ingest job: .mat -> cleaned rows -> splits -> decoded images -> shards -> manifest.

    metadata (main process)      decode (pool of --workers)       write (main process)
    load .mat, clean, split  ->  chunks of (index, full_path)  ->  encode_example ->
                                 -> encoded bytes or a reason      ShardedWriter per split

Memory stays flat whatever the data set size: at most `inflight` chunks are
queued or finished-but-unwritten at any time (multiprocessing.Pool.imap would
read the whole task list ahead and buffer every result the writer has not
consumed yet), and the writer streams each record to disk as it arrives.

Crash safety (ingest.output, records.outdir, records.lock): flags, source and
output are checked before anything is touched; one ingest per output
directory; the data set is built in a staging directory beside --out and
swapped in when complete, so a failed or killed run leaves the previous data
set usable; re-running the same command resumes from the completed shards.
"""

from __future__ import annotations

import dataclasses
import datetime
import multiprocessing
import os

import numpy as np

from ingest import clean, images, matfile, output, split
from ingest.decode_pool import DecodePool
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


def _gender_code(value: float) -> int:
    return schema.GENDER_UNKNOWN if np.isnan(value) else int(value)


def _require_every_split(split_of: np.ndarray, cfg: Config, mat_path: str) -> None:
    """Before any image is decoded: each split gets rows (--test_fraction 0 cannot work)."""
    for name in schema.SPLITS:
        if not np.any(split_of == name):
            raise DataError(f"--test_fraction={cfg.test_fraction} --val_fraction={cfg.val_fraction}: "
                            f"the {name} split gets none of the {len(split_of)} kept rows of "
                            f"{mat_path}; raise the fraction (every split needs rows)")


def fingerprint(cfg: Config, source_sha256: str) -> dict:
    """What makes two runs "the same command": a resume needs equal fingerprints.
    (--workers and --chunk change the speed, not one byte of the output; the
    source is named by its .mat's sha256, so a moved --src folder still resumes.)"""
    flags = {k: v for k, v in dataclasses.asdict(cfg).items()
             if k not in ("src", "out", "workers", "chunk")}
    return {"schema_version": schema.SCHEMA_VERSION, "source_sha256": source_sha256, "flags": flags}


def run(cfg: Config, log=print) -> dict:
    """Run the job described by `cfg`; returns the manifest it wrote.  Flags, the
    source and the output are checked before anything is written (see ingest.output)."""
    cfg.validate()
    mat_path, mat_key = matfile.find_mat(cfg.src)
    out = cfg.out or default_out(mat_key)
    workers = cfg.workers or os.cpu_count() or 1
    target = output.DataSetOutput(out, log)
    target.check()                                  # refused here: nothing touched
    settings = images.ImageSettings(src=cfg.src, image_size=cfg.image_size,
                                    encoding=cfg.encoding, jpeg_quality=cfg.jpeg_quality)
    pool = DecodePool(settings, workers)            # forked before the table exists and the lock
    try:
        with target.lock():
            target.repair()
            manifest, rate = _ingest(cfg, out, target, pool, mat_path, mat_key, workers)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    log(summary(manifest, out, rate))
    return manifest


def _ingest(cfg: Config, out: str, target: output.DataSetOutput, pool: DecodePool,
            mat_path: str, mat_key: str, workers: int) -> tuple[dict, float]:
    frame = matfile.load(mat_path, mat_key)
    entries = len(frame)
    kept, cleaning = clean.clean(frame, clean.Thresholds(
        min_face_score=cfg.min_face_score, min_age=cfg.min_age, max_age=cfg.max_age,
        require_gender=cfg.require_gender))
    if kept.empty:
        raise DataError(f"{mat_path}: no rows survive cleaning ({cleaning}); loosen the thresholds")
    split_of = split.assign(kept, by=cfg.split_by, test_fraction=cfg.test_fraction,
                            val_fraction=cfg.val_fraction, seed=cfg.seed)
    _require_every_split(split_of, cfg, mat_path)
    # Seeded write order: every shard is a random sample of its split, so
    # file-level sharding across readers stays unbiased.
    order = np.random.default_rng(cfg.seed + 1).permutation(len(kept))

    paths = kept["full_path"].tolist()
    ages = kept["age"].to_numpy()
    genders = kept["gender"].to_numpy()
    scores = kept["face_score"].to_numpy()
    del frame, kept                              # the decode loop needs only these columns
    image_format = schema.FORMAT_RAW if cfg.encoding == "raw" else schema.FORMAT_JPEG
    source_sha256 = manifest_lib.file_sha256(mat_path)

    with target.write_errors():                  # disk full / read-only: one line, staging removed
        writing = target.start(fingerprint(cfg, source_sha256), order, split_of,
                               shard_bytes=max(1, int(cfg.shard_mb * 1e6)))
        progress = Progress(len(writing.todo))
        for index, encoded, reason in pool.map(_chunks(writing.todo, paths, cfg.chunk)):
            progress.update()
            age, gender = int(ages[index]), _gender_code(genders[index])
            record = None if encoded is None else schema.encode_example(
                image=encoded, image_format=image_format, height=cfg.image_size,
                width=cfg.image_size, age=age, gender=gender,
                face_score=float(scores[index]), key=paths[index])
            writing.add(index, record, reason, age, gender)
        progress.close()

        totals = writing.totals()
        for name in schema.SPLITS:
            if writing.count(name) == 0:
                raise DataError(f"{out}: split {name!r} has no readable images (of {entries} entries, "
                                f"{len(paths)} kept, skipped {totals['skipped']}); check --src or "
                                f"change --test_fraction/--val_fraction")
        # Per-split ages: the trainer's baseline (always answer the training mean) needs them.
        splits = writing.finish_splits()

        from ingest.plot import age_gender_png

        age_gender_png(os.path.join(target.staging, output.PLOT_NAME), totals["age_histogram"],
                       totals["gender_counts"],
                       title=f"{os.path.basename(mat_path)} ({sum(totals['age_histogram'])} records)")
        manifest = {
            "schema_version": schema.SCHEMA_VERSION,
            "kind": "images",
            "image_size": cfg.image_size,
            "encoding": cfg.encoding,
            "source": {"mat": os.path.basename(mat_path), "sha256": source_sha256,
                       "entries": entries},
            "flags": {**dataclasses.asdict(cfg), "out": out, "workers": workers},
            "cleaning": cleaning,
            "kept": len(paths),
            "skipped": totals["skipped"],
            "splits": splits,
            "age_histogram": totals["age_histogram"],
            "gender_counts": totals["gender_counts"],
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        writing.publish(manifest)               # manifest last, then staging becomes `out`
    return manifest, progress.rate


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

