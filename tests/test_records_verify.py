"""records inspect / verify: a finished set passes, damage is named."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import run_module
from records.__main__ import inspect
from records.manifest import DataError
from records.verify import problems


@pytest.fixture
def copy(sample_shards, tmp_path):
    out = tmp_path / "wiki"
    shutil.copytree(sample_shards, out)
    return out


def _train_shard(directory) -> str:
    manifest = json.load(open(directory / "manifest.json"))
    return manifest["splits"]["train"]["shards"][0]["file"]


def test_inspect_summarizes_the_manifest(sample_shards, sample_expected):
    text = inspect(sample_shards)
    assert f"kept {sample_expected['kept']}; skipped 4 (missing: 2, truncated: 2)" in text
    assert "32px jpeg" in text and "ages 1..100" in text
    with pytest.raises(DataError, match="no manifest"):
        inspect(os.path.dirname(sample_shards))


def test_truncated_shard_is_named(copy):
    name = _train_shard(copy)
    path = copy / name
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    found = problems(str(copy))
    assert any(p.startswith(str(path)) and "bytes, manifest lists" in p for p in found)
    assert any(p.startswith(str(path)) and "corrupt after" in p for p in found)
    assert all(str(path) in p for p in found)


def test_sha256_mismatch_is_named(copy):
    name = _train_shard(copy)
    path = copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF                  # same size, different content
    path.write_bytes(bytes(data))
    found = problems(str(copy))
    assert any(p.startswith(str(path)) and "sha256" in p and "does not match" in p for p in found)
    assert not any("bytes, manifest lists" in p for p in found)


def test_missing_and_unlisted_shards_are_named(copy):
    name = _train_shard(copy)
    (copy / name).rename(copy / "train-00000-of-00099.tfrecord")
    found = problems(str(copy))
    assert f"{copy / name}: listed in the manifest but missing" in found
    assert f"{copy / 'train-00000-of-00099.tfrecord'}: shard file not listed in the manifest" in found


@pytest.mark.slow
def test_cli_exit_codes(copy):
    ok = run_module("records", "verify", str(copy))
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr[-2000:]
    (copy / _train_shard(copy)).write_bytes(b"")
    bad = run_module("records", "verify", str(copy))
    assert bad.returncode == 1
    assert _train_shard(copy) in bad.stderr and "problem(s)" in bad.stderr
