"""records inspect / verify: a finished set passes, damage is named."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import run_module
from records.__main__ import inspect
from records.manifest import DataError
from records import wire
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
    assert f"kept {sample_expected['kept']}; skipped 4 files (missing: 2, truncated: 2)" in text
    assert "source imdb_wiki (wiki.mat): 400 entries" in text
    assert "label real age, face margin 0.4" in text
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
    assert any(p.startswith(str(path)) and "corrupt at record #" in p and "truncated" in p
               for p in found)
    assert all(str(path) in p for p in found)


def test_a_flipped_byte_is_named_by_record_index_and_byte_offset(copy):
    """The record after 16 intact ones is named as #16 at its exact offset (not "after 0")."""
    path = copy / _train_shard(copy)
    with open(path, "rb") as f:
        sizes = [16 + len(record) for record in wire.read_frames(f)]
    assert len(sizes) > 17
    offset = sum(sizes[:16])
    data = bytearray(path.read_bytes())
    data[offset + 12 + 5] ^= 0xFF                 # inside record #16's data
    path.write_bytes(bytes(data))
    found = [p for p in problems(str(copy)) if "corrupt" in p]
    assert found == [f"{path}: corrupt at record #16 at byte offset {offset}: data checksum "
                     f"mismatch; re-run ingest"]


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
