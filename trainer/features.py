"""The feature cache: the frozen trunk run once over every image.

Everything up to the family's feature layer (model.family; VGG: pool5, MobileNet:
avg_pool) is frozen and (without --augment) sees the same pixels every epoch, so its
output is a pure function of (image shards, weights, variant). This module computes it
once per split, streaming, into feature shards (the feature layer's output as float16,
with the image record's labels and key) written like ingest writes image shards
(temporary names, manifest last), under

    <records>/features/<variant>-<cache key>/   manifest.json (kind "features"), train-*, val-*, test-*

The cache key hashes the image shards (the sha256 of every shard, so a
byte-identical re-ingest keeps its cache), the weights file (or the seed of a
random trunk) and the variant/input size: a cache built from anything else is a
different directory. Before every use, every number its manifest vouches for is
checked (each shard's size, sha256 and record count): a cache without a matching
manifest, or with a damaged shard, is rebuilt, never used.

Builds follow the output rules of `storage.outdir`: the cache is written into
`features/.<variant>-<key>.staging` (marker first, manifest last) and swapped in
when complete, so a killed build leaves the previous cache (or none) and never a
half-written one; one build per cache directory (`storage.lock`), a second is
refused at once naming the holder.

    python -m trainer.features --records shards/wiki --weights vgg_face_weights.h5
"""

from __future__ import annotations

import entry  # first: sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads (python -m trainer.features)

if __name__ == "__main__":   # the command line is checked before TensorFlow loads below
    from trainer import flags as _cli
    entry.check_flags(_cli.define_features_flags, _cli, check=_cli.check_features_values)

import hashlib
import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

import model as age_model_lib
import records
from errors import DataError
from records import schema, wire
from records.identity import data_identity
from records.manifest import manifest_path, split_shards, write_manifest
from records.writer import ShardedWriter
from storage import outdir
from storage.checksum import file_sha256
from trainer import flags as trainer_flags
from trainer import loop
from trainer.config import FEATURES_BATCH_SIZE, parse_weights

FEATURE_DTYPE = "float16"
SHARD_BYTES = 128 << 20
BATCH_SIZE = FEATURES_BATCH_SIZE


def cache_key(records_dir: str, weights: str | None, variant: str, input_size: int, seed: int,
              compute_dtype: str = "float32") -> dict:
    """What the cached features are a function of."""
    identity = json.dumps(data_identity(records.read_manifest(records_dir)), sort_keys=True)
    return {
        "images_shards_sha256": hashlib.sha256(identity.encode()).hexdigest(),
        "weights_sha256": file_sha256(weights) if weights else None,
        # A random trunk (--weights=none) is a function of the seed it was drawn with.
        "random_trunk_seed": None if weights else seed,
        "variant": variant,
        "input_size": input_size,
        "feature_dtype": FEATURE_DTYPE,
        "trunk_compute_dtype": compute_dtype,
        # The labels each record carries: a cache written without the version-2 ones
        # (which would read as age_std 0, real_age -1) is another key, so it is rebuilt.
        "record_labels": [schema.AGE, schema.GENDER, schema.AGE_MEAN, schema.AGE_STD, schema.REAL_AGE],
    }


def cache_dir(records_dir: str, key: dict) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return os.path.join(records_dir, "features", f"{key['variant']}-{digest}")


def damage(directory: str, key: dict) -> str | None:
    """Why `directory` is not a finished, intact cache for exactly this key; None when it is.
    Checks every number its manifest vouches for: shard sizes, sha256s, record counts."""
    try:
        manifest = records.read_manifest(directory)
        if manifest.get("kind") != schema.KIND_FEATURES or manifest.get("cache_key") != key:
            return "built from other shards, weights or variant"
        for split, listed in manifest["splits"].items():
            counted = 0
            for shard in split_shards(directory, manifest, split):
                path = os.path.join(directory, shard["file"])
                if file_sha256(path) != shard["sha256"]:
                    return f"{path}: sha256 differs from the manifest's"
                with open(path, "rb") as f:
                    try:
                        found = wire.count_frames(f, os.path.getsize(path))
                    except wire.CorruptRecord as e:
                        return f"{path}: {e}"
                if found != shard["count"]:
                    return f"{path}: {found} records, the manifest lists {shard['count']}"
                counted += found
            if counted != listed["count"]:
                return f"split {split}: {counted} records, the manifest lists {listed['count']}"
    except DataError as e:
        return str(e)
    except (KeyError, TypeError) as e:
        return f"{manifest_path(directory)}: malformed ({e!r})"
    return None


def is_legacy_cache(directory: str) -> bool:
    """A cache written before markers existed: its manifest is a feature manifest."""
    try:
        return records.read_manifest(directory).get("kind") == schema.KIND_FEATURES
    except DataError:
        return False


def output(directory: str) -> outdir.Output:
    """The cache directory as a project output (marker, staging, swap, lock)."""
    return outdir.Output(directory, kind=schema.KIND_FEATURES, legacy=is_legacy_cache, what="feature cache")


def build(net, records_dir: str, key: dict, *, batch_size: int = BATCH_SIZE, log=print) -> str:
    """Write the cache of every split of `records_dir` through `net`'s frozen trunk;
    returns its directory. Crash-safe and one writer: built in the staging directory
    (manifest last) under the cache's lock, then swapped in."""
    target = output(cache_dir(records_dir, key))
    target.check()
    with target.lock():
        did = target.repair()
        if did:
            log(f"  feature cache: {did}")
        staging = target.start_staging()
        try:
            _write(net, records_dir, key, staging, batch_size, log)
        except OSError as e:           # disk full, read-only: one line, no half-written cache left
            target.discard_staging()
            raise DataError(f"feature cache {target.path}: cannot write {e.filename or staging} "
                                    f"({e.strerror or e}); free space under {records_dir} or make it "
                                    f"writable") from e
        target.swap_in()
    return target.path


def _write(net, records_dir: str, key: dict, out: str, batch_size: int, log) -> None:
    """Every split's features into `out`, then its manifest."""
    image_manifest = records.read_manifest(records_dir)
    trunk = age_model_lib.feature_extractor(net)
    size = key["input_size"]
    # One trace for every batch size (the last batch of each split is partial).
    features_of = tf.function(lambda images: tf.cast(trunk(images, training=False), tf.float16),
                              input_signature=[tf.TensorSpec([None, size, size, 3], tf.uint8)])
    feature_shape = [int(d) for d in trunk.output.shape[1:]]
    started = time.perf_counter()
    splits = {}
    for split in image_manifest["splits"]:
        data = records.make_dataset(records_dir, split, batch_size, training=False,
                                    resize_to=key["input_size"], with_keys=True)
        writer = ShardedWriter(out, split, shard_bytes=SHARD_BYTES)
        for images, labels in data:
            feats = np.asarray(features_of(images))
            ages, genders, keys, means, stds, real_ages = (labels[k].numpy() for k in (
                "age", "gender", "key", "age_mean", "age_std", "real_age"))
            for i in range(len(feats)):
                writer.write(schema.encode_feature_example(features=feats[i].tobytes(), age=ages[i],
                                                           gender=genders[i], key=keys[i], age_mean=means[i],
                                                           age_std=stds[i], real_age=real_ages[i]))
        splits[split] = writer.finish()
        log(f"  feature cache: {split} {splits[split]['count']} records")
    write_manifest(out, {
        "schema_version": schema.SCHEMA_VERSION, "kind": schema.KIND_FEATURES,
        "feature_shape": feature_shape, "feature_dtype": FEATURE_DTYPE,
        "cache_key": key, "images": os.path.abspath(records_dir),
        "image_size": key["input_size"], "splits": splits,
        "build_seconds": round(time.perf_counter() - started, 2),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })


def ensure(net, records_dir: str, weights: str | None, variant: str, seed: int, *,
           batch_size: int = BATCH_SIZE, allow_build: bool = True, log=print) -> str:
    """The cache directory for this trunk, built first if it is missing, stale or partial."""
    key = cache_key(records_dir, weights, variant, age_model_lib.input_size(net), seed,
                    age_model_lib.feature_layer(net).compute_dtype)
    directory = cache_dir(records_dir, key)
    why = damage(directory, key) if os.path.exists(directory) else "not built yet"
    if why is None:
        log(f"Feature cache: using {directory}")
        return directory
    if os.path.exists(directory):
        log(f"Feature cache: {directory} cannot be used ({why})")
    if not allow_build:
        raise DataError(
            f"{directory}: no finished feature cache for these shards and weights; build it first with "
            f"`python -m trainer.features --records {records_dir} --weights {weights or 'none'} "
            f"--variant {variant} --seed {seed}`")
    log(f"Feature cache: building {directory} (one pass of the frozen trunk over every split)")
    started = time.perf_counter()
    build(net, records_dir, key, batch_size=batch_size, log=log)
    log(f"Feature cache: built in {time.perf_counter() - started:.1f}s")
    return directory


def main(argv):
    f = trainer_flags.FLAGS   # (no positional argument: checked before TensorFlow loaded)
    entry.interrupt.note(f"trainer.features stopped; the cache is built aside in {f.records}/features and "
                         f"never used half-built; rerun the same command to build it")
    weights = parse_weights(f.weights)
    records.read_manifest(f.records)
    loop.set_seeds(f.seed)      # the same draw as the trainer's, for a random trunk
    keras.mixed_precision.set_global_policy("float32")
    net = age_model_lib.build_age_model(weights, variant=f.variant)
    print(ensure(net, f.records, weights, f.variant, f.seed, batch_size=f.batch_size))


if __name__ == "__main__":
    entry.run(main, trainer_flags.define_features_flags, trainer_flags)
