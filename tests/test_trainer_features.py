"""The feature cache: cached trunk outputs reproduce the full model, and a cache that
is partial, damaged or built from something else is never used."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import model
import records
from conftest import run_module
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
    assert features.is_complete(cache, records.read_manifest(cache)["cache_key"])

    # Another random trunk (another seed) is another cache, not this one.
    other = features.ensure(tiny_net(seed=1), shards, None, "tiny", 1, log=lambda *_: None)
    assert other != cache
    # New image shards (their manifest changes): another cache too.
    manifest_path = os.path.join(shards, "manifest.json")
    with open(manifest_path, "a") as f:
        f.write("\n")
    assert features.cache_dir(shards, features.cache_key(shards, None, "tiny", 32, 0)) != cache


def test_multi_worker_refuses_to_build_a_missing_cache(shards):
    with pytest.raises(records.DataError, match="python -m trainer.features --records"):
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

