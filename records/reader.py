"""The streaming reader: shards on disk -> a `tf.data.Dataset` of (images, labels).

One function, `make_dataset`, builds the whole pipeline as a single chain, top
to bottom, with the reason for each ordering choice next to it (big_vision's
input_pipeline style). `distribute` wraps it for `tf.distribute`. Its pieces
`open_split`, `decode_batches` and `pipeline_options` are also the steps of the
tf.data service pipeline (`records.service.epoch_dataset`).

What differs between record kinds (face images from ingest; trunk features from
the feature cache) is only the *decode* step: a small function picked by the
manifest's `kind`. File listing, manifest checks, sharding, shuffling, batching
and `tf.data.Options` are shared.

Memory: nothing is cached unless asked, so a process iterating a whole split
holds only the shuffle buffer, a few prefetched batches and the open readers:
resident memory is flat in the number of records.
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Sequence

import tensorflow as tf

from errors import DataError
from faces.resize import resize_pixels
from records import augment as augment_ops
from records import schema
from records.manifest import manifest_path, read_manifest, split_shards
from records.schema import DEFAULT_SHUFFLE_BUFFER

log = logging.getLogger(__name__)

AUTOTUNE = tf.data.AUTOTUNE
MAX_INTERLEAVE = 16             # files read concurrently; each open reader holds a small buffer

# A decoder turns one batch of serialized records into (x, labels). Chosen by the
# manifest's `kind`.
Decoder = Callable[[tf.Tensor], tuple]


# --------------------------------------------------------------------------- decode

# The one JPEG decoder of the project: libjpeg's accurate integer IDCT gives the same
# pixels as PIL (ingest, predict), while TensorFlow's default differs by up to 7 levels.
JPEG_DCT_METHOD = "INTEGER_ACCURATE"


def _labels(ex: dict, with_keys: bool) -> dict:
    """The label dict every record kind yields (plus the record key when asked).
    Records without the version-2 labels (schema version 1, feature caches) parse
    with the spec's defaults; a NaN age_mean then means "the int age"."""
    age = tf.cast(ex[schema.AGE], tf.int32)
    age_mean = ex[schema.AGE_MEAN]
    labels = {"age": age, "gender": tf.cast(ex[schema.GENDER], tf.int32),
              "age_mean": tf.where(tf.math.is_nan(age_mean), tf.cast(age, tf.float32), age_mean),
              "age_std": ex[schema.AGE_STD],
              "real_age": tf.cast(ex[schema.REAL_AGE], tf.int32)}
    if with_keys:   # the per-face descriptors evaluation reports by (not training labels)
        labels["key"] = ex[schema.KEY]
        for name in schema.GROUP_ATTRIBUTES:
            if name in ex:
                labels[name] = ex[name]
    return labels


def _image_decoder(manifest: dict, where: str, resize_to: int | None, with_keys: bool) -> Decoder:
    """kind "images": JPEG or raw uint8, all `manifest["image_size"]` square, RGB.
    `stored` is that side (the manifest's image_size); `target` the side the caller
    asked for (`resize_to`, the model's input side), resized to on the fly when they differ."""
    stored = manifest.get("image_size")
    encoding = manifest.get("encoding")
    if not isinstance(stored, int) or stored <= 0:
        raise DataError(f"{where}: manifest has no valid 'image_size' (got {stored!r}); "
                        f"re-run `python -m ingest` with this version of the project")
    if encoding not in schema.ENCODINGS:
        raise DataError(f"{where}: manifest 'encoding' is {encoding!r}, expected one of "
                        f"{' or '.join(map(repr, schema.ENCODINGS))}; "
                        f"re-run `python -m ingest` with this version of the project")
    fmt = schema.ENCODINGS[encoding]
    target = stored if resize_to is None else int(resize_to)
    if target <= 0:
        raise ValueError(f"resize_to must be positive, got {resize_to}")
    if target != stored:
        _log_resize_once(where, stored, target)

    spec = schema.feature_spec()
    # Parse only what is used: the key (a string per record) only when asked for.
    wanted = (schema.IMAGE_ENCODED, schema.IMAGE_FORMAT, schema.AGE, schema.GENDER,
              *schema.label_spec()) + ((schema.KEY, *schema.GROUP_ATTRIBUTES) if with_keys else ())
    spec = {k: spec[k] for k in wanted}

    def decode_one_jpeg(data):
        # ensure_shape both gives map_fn its static shape and fails loudly on a record
        # whose size differs from the manifest's promise (instead of a ragged batch).
        return tf.ensure_shape(tf.io.decode_jpeg(data, channels=3, dct_method=JPEG_DCT_METHOD), [stored, stored, 3])

    def decode(serialized):
        # Vectorized parse: one parse_example call per batch, not per record.
        ex = tf.io.parse_example(serialized, spec)
        tf.debugging.assert_equal(ex[schema.IMAGE_FORMAT], fmt, message=(
            f"{where}: a record's image/format differs from the manifest's encoding "
            f"{encoding!r}; re-run `python -m ingest`"))
        if encoding == schema.ENCODING_RAW:
            # decode_raw is vectorized: [B, H*W*3] uint8 in one op.
            images = tf.reshape(tf.io.decode_raw(ex[schema.IMAGE_ENCODED], tf.uint8),
                                [-1, stored, stored, 3])
        else:
            # decode_jpeg is a scalar op; map_fn runs it over the batch. Parallelism
            # across batches comes from the surrounding map(num_parallel_calls).
            images = tf.map_fn(decode_one_jpeg, ex[schema.IMAGE_ENCODED],
                               fn_output_signature=tf.TensorSpec([stored, stored, 3], tf.uint8))
        if target != stored:
            images = resize_pixels(images, target)    # the served model's own resize
        return images, _labels(ex, with_keys)

    return decode


def _features_decoder(manifest: dict, where: str, resize_to: int | None, with_keys: bool) -> Decoder:
    """kind "features" (trainer.features): the frozen trunk's feature-layer output (VGG: pool5) per image,
    raw float16 of `manifest["feature_shape"]`. `resize_to` does not apply."""
    shape = manifest.get("feature_shape")
    if manifest.get("feature_dtype") != "float16" or not shape:
        raise DataError(f"{where}: feature cache manifest lacks feature_shape/feature_dtype float16; "
                        f"delete that directory and let the trainer rebuild it")
    spec = {**schema.feature_record_spec(), **schema.label_spec()}

    def decode(serialized):
        ex = tf.io.parse_example(serialized, spec)
        # decode_raw is vectorized over the batch; it needs equal-length records, and the
        # reshape then fails loudly on any record of another feature size.
        flat = tf.io.decode_raw(ex[schema.FEATURES], tf.float16)
        return tf.reshape(flat, [-1, *shape]), _labels(ex, with_keys)

    return decode


_DECODERS = {schema.KIND_IMAGES: _image_decoder, schema.KIND_FEATURES: _features_decoder}

_resize_logged: set = set()


def _log_resize_once(where: str, stored: int, target: int) -> None:
    if (where, stored, target) not in _resize_logged:   # once per process, not per replica
        _resize_logged.add((where, stored, target))
        log.warning("%s: shards hold %dx%d images, resizing on the fly to %dx%d "
                    "(bilinear%s); ingest with --image_size %d to skip this work",
                    where, stored, stored, target, target,
                    ", antialiased" if target < stored else "", target)


# --------------------------------------------------------------------------- pieces

def open_split(directory: str, split: str, *, resize_to: int | None = None,
               with_keys: bool = False) -> tuple[list[str], list[int], Decoder, str]:
    """(shard files, their record counts, the decoder for the manifest's kind, the
    manifest path for messages), after checking the manifest and the split's shards."""
    manifest = read_manifest(directory)                      # exists, parses, schema version
    shards = split_shards(directory, manifest, split)        # split exists, files present, sizes
    where = manifest_path(directory)
    kind = manifest.get("kind", schema.KIND_IMAGES)
    if kind not in _DECODERS:
        raise DataError(f"{where}: unknown record kind {kind!r} (known: {sorted(_DECODERS)}); "
                        f"re-run the writer with this version of the project")
    decode = _DECODERS[kind](manifest, where, resize_to, with_keys)
    files = [os.path.join(directory, s["file"]) for s in shards]
    counts = [int(s["count"]) for s in shards]
    return files, counts, decode, where


def decode_batches(ds: tf.data.Dataset, decode: Decoder, batch_size: int, *,
                   drop_remainder: bool, augment: bool | Sequence[str], seed: int | None) -> tf.data.Dataset:
    """Serialized records -> decoded (and optionally augmented) batches. Pure TF ops
    (no py_function), so the same steps also run on tf.data service workers.
    augment: True (records.augment's DEFAULT_OPS), or a sequence of op names."""
    # 9. Batch the serialized strings (cheap), then 10. parse + decode a whole batch per
    #    call: vectorized parse_example, one tf.function call per batch instead of per
    #    record; AUTOTUNE runs several batches in parallel across cores.
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(decode, num_parallel_calls=AUTOTUNE)
    # 11. Optional augmentation on decoded uint8 batches, after decode (it needs pixels)
    #     and after any resize (it crops back to the output size). Per-batch stateless
    #     seeds come from a seeded random stream, so a seed reproduces it exactly.
    ops = augment_ops.resolve(augment)
    return augmented(ds, ops, seed) if ops else ds


def augmented(ds: tf.data.Dataset, ops: Sequence[str], seed: int | None) -> tf.data.Dataset:
    """records.augment's named ops on each decoded batch, with per-batch stateless seeds
    drawn from a seeded random stream (a seed reproduces the augmentation exactly)."""
    seeds = tf.data.Dataset.random(seed=seed).batch(2, drop_remainder=True)
    return tf.data.Dataset.zip((ds, seeds)).map(
        lambda batch, s: augment_ops.apply(ops, batch[0], batch[1], s), num_parallel_calls=AUTOTUNE)


def pipeline_options(deterministic: bool, *, sharded: bool) -> tf.data.Options:
    """The reader's `tf.data.Options`. sharded: the caller already split the data per
    input pipeline (or the tf.data service does), so tf.distribute must not shard again."""
    options = tf.data.Options()
    options.deterministic = bool(deterministic)      # governs interleave/map ordering
    options.autotune.enabled = True                  # tunes num_parallel_calls and buffers
    # Parallelism comes from num_parallel_calls; one thread per op avoids oversubscribing
    # the host (the trainer's own ops share these cores).
    options.threading.max_intra_op_parallelism = 1
    if sharded:
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return options


# --------------------------------------------------------------------------- pipeline

def make_dataset(directory: str, split: str, batch_size: int, *, training: bool,
                 seed: int | None = None, repeat: int | None = None,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, deterministic: bool | None = None,
                 cache: bool | str = False, augment: bool | Sequence[str] = False,
                 input_context: tf.distribute.InputContext | None = None,
                 drop_remainder: bool | None = None,
                 resize_to: int | None = None, with_keys: bool = False) -> tf.data.Dataset:
    """A `tf.data.Dataset` of `(images, labels)` batches read from `directory`.

    images: uint8 [batch, H, W, 3] exactly as stored (the manifest's image_size), or
      resized to `resize_to` (the model's input side) when given and different;
    labels: {"age": int32, "gender": int32 (-1 unknown), "age_mean": float32 (the data
      set's own label; = age where it has no other), "age_std": float32 (0 where there
      are no votes), "real_age": int32 (-1 unknown)}, each [batch], plus "key" (string
      [batch], the source path) when `with_keys`. Normalization is the model's job.
    A feature cache directory (manifest kind "features") yields float16 trunk features (VGG: pool5)
    [batch, h, w, c] in place of images, through the same pipeline.

    training=True: seeded file shuffle, record shuffle (`shuffle_buffer`), repeats
      forever unless `repeat=n` (n epochs), `drop_remainder` defaults to True (a static
      batch dimension for XLA; it only drops anything when `repeat` is finite, since
      batches run across epoch boundaries), `augment` allowed (True: records.augment's
      DEFAULT_OPS; or a sequence of op names from records.augment_ops.OP_NAMES), `deterministic` defaults
      to `seed is not None` (same seed -> same order; no seed -> fastest order).
    training=False (evaluation): no shuffle, deterministic, every record exactly once
      (`repeat` None = one pass), `drop_remainder` defaults to False (final partial
      batch kept). Cardinality is known (from the manifest's counts) when finite.
    cache: False (stream, flat memory); True keeps the split's *serialized* records in
      RAM after the first pass (costs about the shard bytes of the split);
      a path string caches them to that file instead.
    input_context: from `tf.distribute`; shards files per input pipeline (records,
      with a warning, when there are fewer files than pipelines).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if shuffle_buffer <= 0:
        raise ValueError(f"shuffle_buffer must be positive, got {shuffle_buffer}")
    if repeat is not None and repeat <= 0:
        raise ValueError(f"repeat must be a positive number of epochs or None, got {repeat}")
    if augment and not training:
        raise ValueError("augment=True is for training only; evaluation must see the images as stored")
    if not training and deterministic is False:
        raise ValueError("evaluation is always deterministic; drop deterministic=False or set training=True")

    files, counts, decode, where = open_split(directory, split, resize_to=resize_to,
                                              with_keys=with_keys)
    if deterministic is None:
        deterministic = (not training) or seed is not None
    if drop_remainder is None:
        drop_remainder = training
    # Two independent seeds from one: file order and record order must not be correlated.
    file_seed, record_seed = (None, None) if seed is None else (seed, seed + 1)

    pipelines = input_context.num_input_pipelines if input_context else 1
    pipeline_id = input_context.input_pipeline_id if input_context else 0
    shard_by_file = len(files) >= pipelines
    if not shard_by_file:
        log.warning("%s: split %r has %d shard files for %d input pipelines: falling back to "
                    "record-level sharding (every pipeline reads every file and keeps 1/%d of "
                    "the records); write more shards (smaller --shard_mb) to avoid the waste",
                    where, split, len(files), pipelines, pipelines)

    # 1. The shard file list, in manifest order (same everywhere, so sharding agrees).
    ds = tf.data.Dataset.from_tensor_slices(files)
    # 2. Per-pipeline sharding by *file* (Model Garden's input_reader), done BEFORE the
    #    file shuffle: sharding a list every worker holds in the same order is disjoint
    #    even when seed=None would make each worker's shuffle different.
    if pipelines > 1 and shard_by_file:
        ds = ds.shard(pipelines, pipeline_id)
        n_records = sum(counts[pipeline_id::pipelines])
    else:
        n_records = sum(counts)
    # 3. (training) Seeded file shuffle, reshuffled every epoch (repeat comes later, so
    #    each epoch re-iterates this dataset). Skipped under record-level sharding: there
    #    every pipeline must see the records in the same order to keep disjoint slices.
    if training and shard_by_file and len(files) > 1:
        ds = ds.shuffle(len(files), seed=file_seed, reshuffle_each_iteration=True)
    # 4. Parallel interleave: reading several files at once hides per-file latency and
    #    mixes files before the record shuffle. block_length=1 for the best mixing.
    #    Under record-level sharding the interleave order must be deterministic even
    #    in a non-deterministic training run, or the pipelines' slices would overlap.
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), MAX_INTERLEAVE),
                       block_length=1, num_parallel_calls=AUTOTUNE,
                       deterministic=True if not shard_by_file else None)
    if pipelines > 1 and not shard_by_file:
        ds = ds.shard(pipelines, pipeline_id)          # record-level fallback (warned above)
        n_records = len(range(pipeline_id, sum(counts), pipelines))
    # 5. State the record count the manifest vouches for: the trainer gets a known
    #    cardinality (len(ds) in eval) and a shard whose count lies fails loudly.
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_records))
    # 6. Optional cache of *serialized* records (much smaller than decoded pixels), placed
    #    before shuffle/repeat so every epoch is still shuffled differently.
    if cache:
        ds = ds.cache(cache if isinstance(cache, str) else "")
    # 7. (training) Record shuffle before repeat: epoch boundaries stay exact (each epoch
    #    sees each record once) and the buffer holds small serialized records.
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=record_seed, reshuffle_each_iteration=True)
    # 8. Repeat before batch so training batches stay full across epoch boundaries.
    #    Training: forever unless told; evaluation: one pass unless told.
    if training:
        ds = ds.repeat(repeat)          # repeat(None) = forever
    elif repeat is not None:
        ds = ds.repeat(repeat)
    # 9.-11. Batch, parse + decode, (augment): `decode_batches`, shared with the
    #        tf.data service pipeline (records.service).
    ds = decode_batches(ds, decode, batch_size, drop_remainder=drop_remainder,
                        augment=augment, seed=seed)
    # 12. Options, set deliberately (`pipeline_options`). We sharded ourselves above when
    #     there is an input context: tf.distribute must not shard again.
    ds = ds.with_options(pipeline_options(deterministic, sharded=input_context is not None))
    # 13. Host prefetch, last. Device placement of the final buffer: the trainer always
    #     goes through `distribute()` -> strategy.distribute_datasets_from_function (also
    #     for the default strategy), whose distributed iterator prefetches each batch onto
    #     its replica's device (InputOptions.experimental_fetch_to_device, on by default).
    #     So we do not add tf.data.experimental.prefetch_to_device here: it must be the
    #     very last transformation and cannot be fed through a tf.distribute iterator.
    return ds.prefetch(AUTOTUNE)


def load(directory: str, split: str = "train", batch_size: int = 64, *, shuffle: bool = False,
         seed: int | None = None) -> tf.data.Dataset:
    """The public reader: one pass over `split` of a shard directory as `(image, labels)`
    batches, e.g. `records.load("shards/utkface", split="train", batch_size=64)`.

    Images are uint8 [batch, S, S, 3] at the manifest's image_size; labels are
    make_dataset's dict (age, gender, age_mean, age_std, real_age); the cardinality is
    the manifest's count for the split, in batches. Record order is the manifest's
    unless `shuffle` (seeded by `seed`). An unknown split is one DataError line naming
    the data set's splits."""
    return make_dataset(directory, split, batch_size, training=shuffle, seed=seed,
                        repeat=1 if shuffle else None, drop_remainder=False)


SOURCE = "source"         # the label of a mixed stream's records: index of their source


def make_mixed_dataset(directories: Sequence[str], weights: Sequence[float], split: str,
                       batch_size: int, *, training: bool = True, seed: int | None = None,
                       augment: bool | Sequence[str] = False, resize_to: int | None = None,
                       shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
                       input_context: tf.distribute.InputContext | None = None) -> tf.data.Dataset:
    """A training stream of `(images, labels)` batches sampled from several sources:
    each record comes from source i with probability weights[i] (normalised), and its
    labels carry SOURCE = i. Stored image sizes may differ: each source is resized to
    `resize_to` (the model input) before mixing."""
    if not training:
        raise ValueError("a mixed stream is for training only; evaluate each source on its own")
    if len(directories) != len(weights):
        raise ValueError(f"{len(directories)} sources but {len(weights)} weights")
    ops = augment_ops.resolve(augment)
    base = None if seed is None else seed * 7919
    streams = []
    for i, directory in enumerate(directories):
        # 1. Each source its own seeded, shuffled stream repeating forever (make_dataset's
        #    chain), decoded and resized in batches, then split back into records.
        ds = make_dataset(directory, split, batch_size, training=True,
                          seed=None if base is None else base + 101 * i, shuffle_buffer=shuffle_buffer,
                          resize_to=resize_to, input_context=input_context).unbatch()
        # 2. Tag each record with its source, so the shares can be measured.
        streams.append(ds.map(lambda image, labels, i=i: (image, {**labels, SOURCE: tf.constant(i, tf.int32)})))
    # 3. Sample records by weight (each stream is infinite, so the weights hold throughout).
    ds = tf.data.Dataset.sample_from_datasets(streams, weights=[float(w) for w in weights], seed=base,
                                              stop_on_empty_dataset=True)
    # 4. Full batches (a static batch dimension), then 5. augmentation of the mixed batch.
    ds = ds.batch(batch_size, drop_remainder=True)
    if ops:
        ds = augmented(ds, ops, seed)
    return ds.prefetch(AUTOTUNE)


def distribute(strategy: tf.distribute.Strategy, directory: str | Sequence[str], split: str,
               global_batch_size: int, *, weights: Sequence[float] | None = None,
               **kwargs) -> tf.distribute.DistributedDataset:
    """`make_dataset` per input pipeline via `strategy.distribute_datasets_from_function`
    (several directories: `make_mixed_dataset` with `weights`).

    Each pipeline (one per worker) reads a disjoint set of shard files and batches at
    the per-replica size (`global_batch_size / num_replicas_in_sync`, which must divide).
    kwargs go to `make_dataset` (training=..., seed=..., resize_to=...).
    """
    directories = [directory] if isinstance(directory, str) else list(directory)
    for d in directories:                    # fail here, in the caller, not inside dataset_fn
        split_shards(d, read_manifest(d), split)
    if global_batch_size % strategy.num_replicas_in_sync:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by the "
                         f"{strategy.num_replicas_in_sync} replicas of {type(strategy).__name__}")

    def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = ctx.get_per_replica_batch_size(global_batch_size)
        if len(directories) > 1:
            return make_mixed_dataset(directories, weights, split, per_replica, input_context=ctx, **kwargs)
        return make_dataset(directories[0], split, per_replica, input_context=ctx, **kwargs)

    return strategy.distribute_datasets_from_function(dataset_fn)
