"""The feature cache: cached trunk outputs reproduce the full model, and a cache that
is partial, damaged or built from something else is never used."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil

import numpy as np
import pytest

import model
import records
from errors import DataError
from conftest import run_module
from records.writer import ShardedWriter
from storage import outdir
from storage.lock import OutputLock
from trainer import features, loop


@pytest.fixture
def shards(sample_shards, tmp_path):
    """A private copy: the cache is written inside the shard directory."""
    out = str(tmp_path / "shards")
    shutil.copytree(sample_shards, out)
    return out


def tiny_net(seed=0):
    loop.set_seeds(seed)
    return model.build_age_model(None, variant="tiny", dropout=0.5)


def test_head_on_cached_features_equals_the_full_model(shards):
    net = tiny_net()
    cache = features.ensure(net, shards, None, "tiny", 0, batch_size=16, log=lambda *_: None)
    manifest = records.read_manifest(cache)
    images_manifest = records.read_manifest(shards)
    assert manifest["kind"] == "features" and manifest["feature_shape"] == [1, 1, 12]
    assert {s: v["count"] for s, v in manifest["splits"].items()} == \
        {s: v["count"] for s, v in images_manifest["splits"].items()}

    from records.verify import problems
    assert problems(cache) == []           # `python -m records verify` accepts a cache too

    head = model.head(net)
    cached = records.make_dataset(cache, "test", 32, training=False, with_keys=True)
    images = records.make_dataset(shards, "test", 32, training=False, with_keys=True)
    n = 0
    for (feats, f_labels), (pixels, i_labels) in zip(cached, images):
        assert feats.dtype == "float16"
        np.testing.assert_array_equal(f_labels["key"].numpy(), i_labels["key"].numpy())
        np.testing.assert_array_equal(f_labels["age"].numpy(), i_labels["age"].numpy())
        full = net.predict(pixels, verbose=0)
        from_cache = head.predict(feats, verbose=0)
        np.testing.assert_allclose(from_cache, full, atol=2e-3)   # float16 storage of pool5
        n += len(full)
    assert n == images_manifest["splits"]["test"]["count"]


def test_partial_damaged_or_foreign_caches_are_rebuilt(shards):
    net = tiny_net()
    messages = []
    cache = features.ensure(net, shards, None, "tiny", 0, log=messages.append)
    assert any("building" in m for m in messages)

    messages.clear()
    assert features.ensure(net, shards, None, "tiny", 0, log=messages.append) == cache
    assert any("using" in m for m in messages)

    # A killed build leaves no manifest: rebuilt, not used.
    os.remove(os.path.join(cache, "manifest.json"))
    messages.clear()
    features.ensure(net, shards, None, "tiny", 0, log=messages.append)
    assert any("building" in m for m in messages)

    # A truncated shard: rebuilt.
    shard = os.path.join(cache, records.read_manifest(cache)["splits"]["train"]["shards"][0]["file"])
    with open(shard, "r+b") as f:
        f.truncate(os.path.getsize(shard) // 2)
    messages.clear()
    features.ensure(net, shards, None, "tiny", 0, log=messages.append)
    assert any("building" in m for m in messages)
    assert features.damage(cache, records.read_manifest(cache)["cache_key"]) is None

    # Another random trunk (another seed) is another cache, not this one.
    other = features.ensure(tiny_net(seed=1), shards, None, "tiny", 1, log=lambda *_: None)
    assert other != cache
    # A byte-identical re-ingest (only the manifest's time and layout change): the same cache.
    manifest_path = os.path.join(shards, "manifest.json")
    original = open(manifest_path).read()
    try:
        with open(manifest_path, "a") as f:
            f.write("\n")
        assert features.cache_dir(shards, features.cache_key(shards, None, "tiny", 32, 0)) == cache
        # Other shards (one sha256 differs): another cache.
        changed = json.loads(original)
        changed["splits"]["train"]["shards"][0]["sha256"] = "0" * 64
        open(manifest_path, "w").write(json.dumps(changed))
        assert features.cache_dir(shards, features.cache_key(shards, None, "tiny", 32, 0)) != cache
    finally:
        open(manifest_path, "w").write(original)


def flip_a_byte(path: str) -> None:
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))


def test_a_flipped_byte_in_a_finished_cache_shard_is_caught_and_rebuilt(shards):
    net = tiny_net()
    cache = features.ensure(net, shards, None, "tiny", 0, log=lambda *_: None)
    key = records.read_manifest(cache)["cache_key"]
    shard = os.path.join(cache, records.read_manifest(cache)["splits"]["val"]["shards"][0]["file"])
    size = os.path.getsize(shard)
    flip_a_byte(shard)
    assert os.path.getsize(shard) == size            # the same size: only the sha256 can tell
    assert features.damage(cache, key) == f"{shard}: sha256 differs from the manifest's"
    messages = []
    assert features.ensure(net, shards, None, "tiny", 0, log=messages.append) == cache
    assert messages[0] == f"Feature cache: {cache} cannot be used ({shard}: sha256 differs from the manifest's)"
    assert any("building" in m for m in messages) and not any("using" in m for m in messages)
    assert features.damage(cache, key) is None
    # A manifest whose counts agree with each other but not with the records is caught as
    # well (one that disagrees with itself is refused where it is read: a DataError line).
    manifest = records.read_manifest(cache)
    manifest["splits"]["val"]["shards"][0]["count"] += 1
    manifest["splits"]["val"]["count"] += 1
    open(os.path.join(cache, "manifest.json"), "w").write(json.dumps(manifest))
    assert features.damage(cache, key).endswith(f"records, the manifest lists "
                                                f"{manifest['splits']['val']['shards'][0]['count']}")


def test_a_cache_build_is_staged_locked_and_keeps_the_previous_cache_on_failure(shards, monkeypatch):
    net = tiny_net()
    cache = features.ensure(net, shards, None, "tiny", 0, log=lambda *_: None)
    key = records.read_manifest(cache)["cache_key"]
    assert outdir.marker_kind(cache) == "features"
    target = features.output(cache)
    assert not os.path.exists(target.staging)
    # A second builder is refused at once, naming the holder.
    with OutputLock(cache):
        with pytest.raises(DataError, match=rf"{re.escape(cache)}: already being written by pid {os.getpid()}"):
            features.build(net, shards, key, log=lambda *_: None)
    # A build that fails midway (disk full) leaves the finished cache as it was, and no staging.
    before = {n: open(os.path.join(cache, n), "rb").read() for n in os.listdir(cache)}
    calls = []

    def full_disk(self, record):
        calls.append(1)
        if len(calls) > 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.directory)
        return original_write(self, record)
    original_write = ShardedWriter.write
    monkeypatch.setattr(ShardedWriter, "write", full_disk)
    with pytest.raises(DataError, match=r"cannot write .*No space left on device"):
        features.build(net, shards, key, log=lambda *_: None)
    monkeypatch.undo()
    assert {n: open(os.path.join(cache, n), "rb").read() for n in os.listdir(cache)} == before
    assert not os.path.exists(target.staging) and features.damage(cache, key) is None


def test_multi_worker_refuses_to_build_a_missing_cache(shards):
    with pytest.raises(DataError, match="python -m trainer.features --records"):
        features.ensure(tiny_net(), shards, None, "tiny", 0, allow_build=False, log=lambda *_: None)


@pytest.mark.slow
def test_features_command_builds_then_reuses_the_cache(shards):
    args = ("trainer.features", f"--records={shards}", "--weights=none", "--variant=tiny", "--seed=0")
    first = run_module(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "building" in first.stdout
    cache = first.stdout.strip().splitlines()[-1]
    assert os.path.exists(os.path.join(cache, "manifest.json"))
    second = run_module(*args)
    assert second.returncode == 0 and "using" in second.stdout
    assert second.stdout.strip().splitlines()[-1] == cache


@pytest.mark.slow
def test_features_command_reports_missing_weights(shards):
    result = run_module("trainer.features", f"--records={shards}", "--weights=/nowhere/vgg.h5")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "/nowhere/vgg.h5" in last



@pytest.mark.slow
def test_a_cache_carries_the_version_2_labels_of_its_image_records(tmp_path):
    """APPA-REAL: apparent-age means, vote spreads and real ages; the cache built from
    its shards gives each key the labels its image record has."""
    src, out = str(tmp_path / "appa-real-release"), str(tmp_path / "shards")
    made = run_module("ingest.sample", "--dataset", "appa_real", "--out", src, "--n", "200", "--workers", "2")
    assert made.returncode == 0, made.stderr[-3000:]
    ingested = run_module("ingest", "--src", src, "--out", out, "--image_size", "32", "--workers", "2")
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    cache = features.ensure(tiny_net(), out, None, "tiny", 0, batch_size=16, log=lambda *_: None)

    def labels_by_key(directory, split):
        by_key = {}
        for _, labels in records.make_dataset(directory, split, 64, training=False, with_keys=True):
            rows = zip(*(labels[k].numpy().tolist() for k in ("key", "age", "age_mean", "age_std", "real_age")))
            by_key.update((row[0], row[1:]) for row in rows)
        return by_key

    compared = []
    for split in records.read_manifest(out)["splits"]:
        images, cached = labels_by_key(out, split), labels_by_key(cache, split)
        assert cached == images
        compared += images.values()
    # The sample has the spread the defaults would lose: could fail against age_std 0, real_age -1.
    assert len(compared) > 50
    assert sum(std > 0 for _, _, std, _ in compared) > len(compared) / 2
    assert sum(real != -1 for _, _, _, real in compared) > len(compared) / 2
    assert any(mean != age for age, mean, _, _ in compared)
