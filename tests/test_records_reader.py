"""records.reader: order, coverage, label attachment, shapes, sharding, distribution, errors.

The shards are built here with the project's own writer: 16x16 images whose every
channel is at level 20 + 2*age, so a label can be checked against its own pixels.
Within a split, (age, gender) identifies a record uniquely, so order and coverage
checks compare exact record identities.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import model
import records
from errors import DataError
from records import schema
from records.augment import DEFAULT_OPS, apply
from records.manifest import write_manifest
from records.writer import ShardedWriter

SIZE = 16
N_TRAIN, N_VAL, N_TEST = 300, 75, 40


def record_identity(i: int) -> tuple[int, int]:
    """(age, gender) of record i: unique for i < 303."""
    return i % 101, (i // 101) - 1


def age_pixels(age: int) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), 20 + 2 * age, np.uint8)


def pixels_to_age(images: np.ndarray) -> np.ndarray:
    return np.round((images.reshape(len(images), -1).mean(axis=1) - 20) / 2).astype(int)


def encode(pixels: np.ndarray, encoding: str) -> bytes:
    if encoding == "raw":
        return pixels.tobytes()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_dataset(directory, encoding="jpeg", splits=None, pixels_fn=None, shard_records=50):
    """Shards + manifest in the ingest layout. splits: {name: (n_records, n_per_shard)}."""
    splits = splits or {"train": (N_TRAIN, shard_records), "val": (N_VAL, shard_records),
                        "test": (N_TEST, 20)}
    pixels_fn = pixels_fn or (lambda i: age_pixels(record_identity(i)[0]))
    entries = {}
    for split, (n, per_shard) in splits.items():
        recs = []
        for i in range(n):
            age, gender = record_identity(i)
            recs.append(schema.encode_example(
                image=encode(pixels_fn(i), encoding), image_format=encoding.encode(),
                height=SIZE, width=SIZE, age=age, gender=gender, face_score=4.0,
                key=f"{i % 100:02d}/{split}_{i:05d}.jpg"))
        # shard_bytes so that every shard holds ~per_shard records
        writer = ShardedWriter(str(directory), split,
                               shard_bytes=max(len(r) + 16 for r in recs) * per_shard - 1)
        for r in recs:
            writer.write(r)
        entries[split] = writer.finish()
    write_manifest(str(directory), {"schema_version": schema.SCHEMA_VERSION, "kind": "images",
                                    "image_size": SIZE, "encoding": encoding, "splits": entries})
    return entries


@pytest.fixture(scope="module")
def jpeg_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("jpeg")
    entries = write_dataset(d, "jpeg")
    assert len(entries["train"]["shards"]) >= 5 and len(entries["val"]["shards"]) == 2
    return str(d)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    write_dataset(d, "raw")
    return str(d)


def collect(ds):
    """All (images, ages, genders) of a finite dataset as numpy arrays."""
    images, ages, genders = [], [], []
    for x, y in ds:
        images.append(x.numpy()); ages.append(y["age"].numpy()); genders.append(y["gender"].numpy())
    return np.concatenate(images), np.concatenate(ages), np.concatenate(genders)


def identities(ages, genders):
    return list(zip(ages.tolist(), genders.tolist()))


def first_batches(ds, n):
    return [identities(y["age"].numpy(), y["gender"].numpy()) for _, y in ds.take(n)]


# ----------------------------------------------------------------------------- order

def test_same_seed_same_order_different_seed_different_order(jpeg_dir):
    make = lambda seed: records.make_dataset(jpeg_dir, "train", 32, training=True, seed=seed)
    a, b, c = first_batches(make(7), 4), first_batches(make(7), 4), first_batches(make(8), 4)
    assert a == b
    assert a != c
    # and it is really shuffled, not file order
    assert a[0] != [record_identity(i) for i in range(32)]


def test_training_epochs_are_permutations_and_repeat_forever(jpeg_dir):
    # batch 30 divides 300: the first 10 batches are exactly epoch 1, the next 10 epoch 2
    ds = records.make_dataset(jpeg_dir, "train", 30, training=True, seed=1)
    assert ds.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    batches = first_batches(ds, 20)
    epoch1 = [r for b in batches[:10] for r in b]
    epoch2 = [r for b in batches[10:] for r in b]
    expected = sorted(record_identity(i) for i in range(N_TRAIN))
    assert sorted(epoch1) == expected and sorted(epoch2) == expected
    assert epoch1 != epoch2          # reshuffled each epoch


def test_training_repeat_n_is_finite_and_drops_remainder(jpeg_dir):
    ds = records.make_dataset(jpeg_dir, "train", 64, training=True, seed=3, repeat=2)
    sizes = [x.shape[0] for x, _ in ds]
    assert sizes == [64] * (2 * N_TRAIN // 64)      # 600 records -> 9 full batches


# ----------------------------------------------------------------------------- evaluation

@pytest.mark.parametrize("fixture", ["jpeg_dir", "raw_dir"])
def test_eval_yields_every_record_once_in_order_with_partial_batch(fixture, request):
    directory = request.getfixturevalue(fixture)
    ds = records.make_dataset(directory, "val", 16, training=False)
    assert ds.cardinality().numpy() == 5               # ceil(75 / 16), known from the manifest
    sizes = [x.shape[0] for x, _ in ds]
    assert sizes == [16, 16, 16, 16, 11]               # final partial batch kept
    images, ages, genders = collect(ds)
    ids = identities(ages, genders)
    assert sorted(ids) == sorted(record_identity(i) for i in range(N_VAL))
    assert len(set(ids)) == N_VAL
    assert ids == identities(*collect(ds)[1:])          # deterministic: same order twice


@pytest.mark.parametrize("fixture", ["jpeg_dir", "raw_dir"])
def test_labels_stay_attached_to_their_image(fixture, request):
    directory = request.getfixturevalue(fixture)
    ds = records.make_dataset(directory, "train", 50, training=True, seed=0, repeat=1)
    images, ages, _ = collect(ds)
    assert len(ages) == N_TRAIN
    np.testing.assert_array_equal(pixels_to_age(images), ages)


def test_dtypes_and_static_shapes(jpeg_dir):
    train = records.make_dataset(jpeg_dir, "train", 32, training=True, seed=0)
    x_spec, y_spec = train.element_spec
    assert x_spec == tf.TensorSpec([32, SIZE, SIZE, 3], tf.uint8)
    assert y_spec == {"age": tf.TensorSpec([32], tf.int32), "gender": tf.TensorSpec([32], tf.int32),
                      "age_mean": tf.TensorSpec([32], tf.float32),
                      "age_std": tf.TensorSpec([32], tf.float32),
                      "real_age": tf.TensorSpec([32], tf.int32)}
    val = records.make_dataset(jpeg_dir, "val", 32, training=False)
    assert val.element_spec[0] == tf.TensorSpec([None, SIZE, SIZE, 3], tf.uint8)
    x, y = next(iter(val))
    assert x.dtype == tf.uint8 and y["age"].dtype == tf.int32 and y["gender"].dtype == tf.int32
    assert set(np.unique(y["gender"].numpy())) <= {-1, 0, 1}


def test_cache_in_memory_gives_same_records(jpeg_dir):
    ds = records.make_dataset(jpeg_dir, "val", 32, training=False, cache=True)
    first, second = identities(*collect(ds)[1:]), identities(*collect(ds)[1:])
    assert first == second and len(first) == N_VAL


# ----------------------------------------------------------------------------- sharding

def test_two_input_pipelines_cover_all_shards_disjointly(jpeg_dir):
    seen = []
    for pid in range(2):
        ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                         num_replicas_in_sync=2)
        # training with seed=None: each pipeline shuffles its own way, still disjoint
        ds = records.make_dataset(jpeg_dir, "train", 10, training=True, repeat=1,
                                  drop_remainder=False, input_context=ctx)
        seen.append(identities(*collect(ds)[1:]))
    assert len(seen[0]) > 0 and len(seen[1]) > 0
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(record_identity(i) for i in range(N_TRAIN))


def test_fewer_files_than_pipelines_falls_back_to_records_with_warning(jpeg_dir, caplog):
    # val has 2 shard files; 3 pipelines must fall back to record-level sharding, and
    # stay disjoint even in a non-deterministic (seed=None) training run.
    seen = []
    with caplog.at_level(logging.WARNING, logger="records.reader"):
        for pid in range(3):
            ctx = tf.distribute.InputContext(num_input_pipelines=3, input_pipeline_id=pid)
            ds = records.make_dataset(jpeg_dir, "val", 8, training=True, repeat=1,
                                      drop_remainder=False, input_context=ctx)
            assert ds.cardinality().numpy() == 4          # ceil(25 / 8)
            seen.append(identities(*collect(ds)[1:]))
    assert "2 shard files for 3 input pipelines: falling back to record-level sharding" in caplog.text
    assert [len(s) for s in seen] == [N_VAL // 3] * 3
    assert sorted(sum(seen, [])) == sorted(record_identity(i) for i in range(N_VAL))


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_consumes_distributed_dataset(jpeg_dir):
    # Logical devices must be configured before TF initializes: a fresh process.
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import records
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dist = records.distribute(strategy, {jpeg_dir!r}, "val", 20, training=False)

        @tf.function
        def step(x, y):
            def replica(x, y):
                ok = tf.reduce_all(tf.round((tf.reduce_mean(tf.cast(x, tf.float32), [1, 2, 3]) - 20) / 2)
                                   == tf.cast(y["age"], tf.float32))
                return tf.shape(x)[0], tf.cast(ok, tf.int32), tf.reduce_sum(y["age"])
            n, ok, s = strategy.run(replica, (x, y))
            return [strategy.reduce("SUM", v, axis=None) for v in (n, ok, s)] + [
                strategy.experimental_local_results(n)]

        total = age_sum = steps = 0
        all_ok = True
        per_replica = []
        for x, y in dist:
            n, ok, s, local = step(x, y)
            total += int(n); age_sum += int(s); steps += 1
            all_ok &= int(ok) == 2
            per_replica.append([int(v) for v in local])
        print(json.dumps({{"replicas": strategy.num_replicas_in_sync, "total": total,
                          "age_sum": age_sum, "steps": steps, "all_ok": all_ok,
                          "per_replica": per_replica}}))
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=240, env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["total"] == N_VAL                     # every val record, once
    assert result["age_sum"] == sum(record_identity(i)[0] for i in range(N_VAL))
    assert result["all_ok"]
    assert result["per_replica"][0] == [10, 10]         # per-replica batch = 20 / 2


# ----------------------------------------------------------------------------- resize, augment

@pytest.mark.parametrize("size", [8, 24])
def test_image_size_resizes_on_the_fly_and_logs_once(jpeg_dir, size, caplog):
    from records import reader
    reader._resize_logged.clear()
    with caplog.at_level(logging.WARNING, logger="records.reader"):
        ds = records.make_dataset(jpeg_dir, "val", 25, training=False, resize_to=size)
        records.make_dataset(jpeg_dir, "val", 25, training=False, resize_to=size)
    assert caplog.text.count("resizing on the fly") == 1
    assert f"to {size}x{size}" in caplog.text
    assert ds.element_spec[0] == tf.TensorSpec([None, size, size, 3], tf.uint8)
    images, ages, _ = collect(ds)
    assert images.shape == (N_VAL, size, size, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(pixels_to_age(images), ages)
    # the served model's resize, pixel for pixel
    stored = collect(records.make_dataset(jpeg_dir, "val", 25, training=False))[0]
    np.testing.assert_array_equal(images, np.asarray(model.resize_pixels(stored, size)))


def half_and_half(i):
    """Left half dark, right half bright: a horizontal flip is visible."""
    px = np.zeros((SIZE, SIZE, 3), np.uint8)
    px[:, SIZE // 2:] = 200
    return px


@pytest.fixture(scope="module")
def halves_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("halves")
    write_dataset(d, "raw", splits={"train": (128, 64)}, pixels_fn=half_and_half)
    return str(d)


def flipped_fraction(images):
    left = images[:, :, : SIZE // 4].astype(float).mean(axis=(1, 2, 3))
    right = images[:, :, -SIZE // 4:].astype(float).mean(axis=(1, 2, 3))
    return float(np.mean(left > right))


def test_augment_flips_and_crops_keeping_shape_dtype_and_seed(halves_dir):
    make = lambda seed, augment: records.make_dataset(
        halves_dir, "train", 32, training=True, seed=seed, repeat=1, augment=augment)
    plain = collect(make(0, False))[0]
    aug, ages, _ = collect(make(0, True))
    assert aug.shape == plain.shape == (128, SIZE, SIZE, 3) and aug.dtype == np.uint8
    assert flipped_fraction(plain) == 0.0
    assert 0.25 < flipped_fraction(aug) < 0.75            # about half are mirrored
    # the crop/scale really changes pixels: some boundary columns are no longer pure 0/200
    assert np.mean(~np.isin(aug, [0, 200])) > 0.0
    np.testing.assert_array_equal(collect(make(0, True))[0], aug)       # seeded: reproducible
    assert not np.array_equal(collect(make(1, True))[0], aug)


def test_augment_same_eagerly_and_inside_map():
    images = tf.constant(np.random.RandomState(0).randint(0, 255, (4, SIZE, SIZE, 3)), tf.uint8)
    seed = tf.constant([3, 4], tf.int64)
    def augment_batch(images, seed):
        return apply(DEFAULT_OPS, images, {}, seed)[0]

    eager = augment_batch(images, seed)
    mapped = next(iter(tf.data.Dataset.from_tensors((images, seed)).map(augment_batch)))
    np.testing.assert_array_equal(eager.numpy(), mapped.numpy())
    # the identity box (scale 1, no flip) is exact: crop_and_resize does not blur
    box = tf.image.crop_and_resize(tf.cast(images, tf.float32), [[0.0, 0.0, 1.0, 1.0]] * 4,
                                   tf.range(4), [SIZE, SIZE])
    np.testing.assert_array_equal(tf.cast(box, tf.uint8).numpy(), images.numpy())


def test_bad_options_fail_loudly(jpeg_dir):
    with pytest.raises(ValueError, match="training only"):
        records.make_dataset(jpeg_dir, "val", 8, training=False, augment=True)
    with pytest.raises(ValueError, match="batch_size"):
        records.make_dataset(jpeg_dir, "val", 0, training=False)
    with pytest.raises(ValueError, match="deterministic"):
        records.make_dataset(jpeg_dir, "val", 8, training=False, deterministic=False)


# ----------------------------------------------------------------------------- errors

@pytest.fixture
def copy_of(jpeg_dir, tmp_path):
    d = tmp_path / "shards"
    shutil.copytree(jpeg_dir, d)
    return d


def manifest_of(d):
    with open(d / "manifest.json") as f:
        return json.load(f)


def test_error_no_manifest(copy_of):
    os.remove(copy_of / "manifest.json")
    with pytest.raises(DataError, match=r"manifest\.json: no manifest.*python -m ingest"):
        records.make_dataset(str(copy_of), "train", 8, training=True)


def test_error_missing_directory(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist; create the data set with `python -m ingest"):
        records.make_dataset(str(tmp_path / "nowhere"), "train", 8, training=True)


def test_error_missing_shard(copy_of):
    name = manifest_of(copy_of)["splits"]["train"]["shards"][2]["file"]
    os.remove(copy_of / name)
    with pytest.raises(DataError, match=rf"{name}: shard listed in the manifest is missing.*re-run ingest"):
        records.make_dataset(str(copy_of), "train", 8, training=True)


def test_error_truncated_shard(copy_of):
    shard = manifest_of(copy_of)["splits"]["val"]["shards"][0]
    with open(copy_of / shard["file"], "r+b") as f:
        f.truncate(shard["bytes"] - 100)
    with pytest.raises(DataError, match=rf"{shard['file']}: {shard['bytes'] - 100} bytes but the "
                                        rf"manifest lists {shard['bytes']}.*re-run ingest"):
        records.make_dataset(str(copy_of), "val", 8, training=False)


def test_error_unknown_split(copy_of):
    with pytest.raises(DataError, match=r"manifest\.json: unknown split 'validation'.*\['test', 'train', 'val'\]"):
        records.make_dataset(str(copy_of), "validation", 8, training=False)


def test_error_schema_mismatch(copy_of):
    m = manifest_of(copy_of)
    m["schema_version"] = 99
    write_manifest(str(copy_of), m)
    with pytest.raises(DataError, match=r"manifest\.json: schema_version 99.*re-run ingest"):
        records.make_dataset(str(copy_of), "train", 8, training=True)


def test_error_unknown_kind_and_missing_image_size(copy_of):
    m = manifest_of(copy_of)
    write_manifest(str(copy_of), dict(m, kind="audio"))
    with pytest.raises(DataError, match=r"manifest\.json: unknown record kind 'audio'"):
        records.make_dataset(str(copy_of), "train", 8, training=True)
    del m["image_size"]
    write_manifest(str(copy_of), m)
    with pytest.raises(DataError, match=r"manifest\.json: manifest has no valid 'image_size'.*ingest"):
        records.make_dataset(str(copy_of), "train", 8, training=True)


def test_error_distribute_checks_manifest_before_building(copy_of):
    os.remove(copy_of / "manifest.json")
    with pytest.raises(DataError, match="no manifest"):
        records.distribute(tf.distribute.get_strategy(), str(copy_of), "train", 8, training=True)


# ----------------------------------------------------------------------------- mixed sources

def test_mixed_stream_samples_sources_by_weight_resized_and_tagged(jpeg_dir, raw_dir):
    ds = records.make_mixed_dataset([jpeg_dir, raw_dir], [0.3, 0.7], "train", 32, seed=0, resize_to=12)
    assert ds.element_spec[0] == tf.TensorSpec([32, 12, 12, 3], tf.uint8)
    sources, ages, images = [], [], []
    for x, y in ds.take(60):               # 1920 records: 3 sigma of a 0.7 share is about 0.03
        sources.append(y["source"].numpy()); ages.append(y["age"].numpy()); images.append(x.numpy())
    sources = np.concatenate(sources)
    assert set(sources.tolist()) == {0, 1}
    assert abs(np.mean(sources == 1) - 0.7) < 0.04
    # labels stay with their images through unbatch/mix/batch (uniform images resize exactly)
    np.testing.assert_array_equal(pixels_to_age(np.concatenate(images)), np.concatenate(ages))
    # seeded: the same mix again
    again = np.concatenate([y["source"].numpy() for _, y in
                            records.make_mixed_dataset([jpeg_dir, raw_dir], [0.3, 0.7], "train", 32,
                                                       seed=0, resize_to=12).take(60)])
    np.testing.assert_array_equal(again, sources)


def test_mixed_stream_refuses_evaluation_and_mismatched_weights(jpeg_dir, raw_dir):
    with pytest.raises(ValueError, match="2 sources but 1 weights"):
        records.make_mixed_dataset([jpeg_dir, raw_dir], [1.0], "train", 8)
    with pytest.raises(ValueError, match="training only"):
        records.make_mixed_dataset([jpeg_dir, raw_dir], [1.0, 1.0], "val", 8, training=False)


# ----------------------------------------------------------------------------- the public reader

def test_load_one_pass_with_the_manifest_element_spec_and_count(jpeg_dir):
    ds = records.load(jpeg_dir, split="train", batch_size=64)
    image_spec, label_spec = ds.element_spec
    assert image_spec == tf.TensorSpec((None, SIZE, SIZE, 3), tf.uint8)
    assert {k: (v.dtype, tuple(v.shape)) for k, v in label_spec.items()} == {
        "age": (tf.int32, (None,)), "gender": (tf.int32, (None,)), "age_mean": (tf.float32, (None,)),
        "age_std": (tf.float32, (None,)), "real_age": (tf.int32, (None,))}
    assert int(ds.cardinality()) == -(-N_TRAIN // 64)          # 5 batches, the last partial
    images, ages, genders = collect(ds)
    assert len(images) == N_TRAIN
    assert sorted(identities(ages, genders)) == sorted(record_identity(i) for i in range(N_TRAIN))
    np.testing.assert_array_equal(pixels_to_age(images), ages)


def test_load_shuffled_is_one_seeded_pass(jpeg_dir):
    a = collect(records.load(jpeg_dir, "val", 16, shuffle=True, seed=3))
    b = collect(records.load(jpeg_dir, "val", 16, shuffle=True, seed=3))
    assert len(a[0]) == N_VAL and identities(*a[1:]) == identities(*b[1:])
    assert identities(*a[1:]) != identities(*collect(records.load(jpeg_dir, "val", 16))[1:])


def test_load_unknown_split_names_the_splits(jpeg_dir):
    with pytest.raises(DataError, match=r"unknown split 'validation'; this data set has \['test', 'train', 'val'\]"):
        records.load(jpeg_dir, split="validation")
