"""records inspect / verify: a finished set passes, damage is named."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import run_module
from errors import DataError
from records import schema, wire
from records.__main__ import inspect
from records.manifest import write_manifest
from records.verify import problems
from records.writer import ShardedWriter


@pytest.fixture
def copy(sample_shards, tmp_path):
    out = tmp_path / "wiki"
    shutil.copytree(sample_shards, out)
    return out


def _train_shard(directory) -> str:
    manifest = json.load(open(directory / "manifest.json"))
    return manifest["splits"]["train"]["shards"][0]["file"]


def _edit_manifest(directory, edit) -> dict:
    """`edit(manifest)` in place on DIR/manifest.json; returns the manifest as it was."""
    path = directory / "manifest.json"
    before = json.loads(path.read_text())
    after = json.loads(path.read_text())
    edit(after)
    path.write_text(json.dumps(after))
    return before


def test_inspect_summarizes_the_manifest(sample_shards, sample_expected):
    text = inspect(sample_shards)
    assert f"kept {sample_expected['kept']}; skipped 6 files (face_too_small: 2, missing: 2, truncated: 2)" in text
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
    _edit_manifest(copy, lambda m: m.update(kept=m["kept"] + 1))
    edited = run_module("records", "verify", str(copy))
    assert edited.returncode == 1 and "2 problem(s)" in edited.stderr, edited.stderr[-2000:]
    assert f"PROBLEM {copy / 'manifest.json'}: kept: manifest " in edited.stderr
    (copy / _train_shard(copy)).write_bytes(b"")
    bad = run_module("records", "verify", str(copy))
    assert bad.returncode == 1
    assert _train_shard(copy) in bad.stderr and "problem(s)" in bad.stderr


@pytest.mark.slow
def test_inspect_without_a_manifest_is_one_error_line(tmp_path):
    result = run_module("records", "inspect", str(tmp_path))
    assert result.returncode == 1
    assert result.stderr.strip() == (f"error: {tmp_path / 'manifest.json'}: no manifest, so {tmp_path} "
                                     f"is not a finished data set; run (or re-run: it starts over or "
                                     f"resumes) the ingest that writes it, `python -m ingest --src "
                                     f"FOLDER_OF_IMAGES --out {tmp_path}`")


def test_untouched_data_sets_verify_clean(sample_shards, appa_real_shards):
    """Every count the manifest carries agrees with the records ingest wrote: real ages
    with genders (the wiki sample), apparent ages with unknown genders (APPA-REAL)."""
    assert problems(sample_shards) == []
    assert problems(appa_real_shards) == []


def _histogram(m, split):
    return m["splits"][split]["age_histogram"] if split else m["age_histogram"]


def _move_one_age(split):
    """An edit: one face of the youngest age of `split` (None: all splits) a year older."""
    def edit(m):
        hist = _histogram(m, split)
        young = next(a for a, n in enumerate(hist) if n)
        hist[young] -= 1
        hist[young + 1] += 1
    return edit


def _moved_age_line(split):
    def line(m, where, fix):
        hist = _histogram(m, split)
        young = next(a for a, n in enumerate(hist) if n)
        what = f"split {split!r} age_histogram does not match its records" if split else \
            "age_histogram (all splits) does not match the records"
        return [f"{where}: {what}: age {young}: manifest {hist[young] - 1}, counted {hist[young]}; "
                f"age {young + 1}: manifest {hist[young + 1] + 1}, counted {hist[young + 1]}; {fix}"]
    return line


@pytest.mark.parametrize("edit, expected", [
    (_move_one_age("train"), _moved_age_line("train")),
    (_move_one_age("test"), _moved_age_line("test")),
    (_move_one_age(None), _moved_age_line(None)),
    (lambda m: m["gender_counts"].update(male=m["gender_counts"]["male"] + 2),
     lambda m, where, fix: [
         f"{where}: gender_counts (all splits) does not match the records: male: manifest "
         f"{m['gender_counts']['male'] + 2}, counted {m['gender_counts']['male']}; {fix}"]),
    (lambda m: m.update(kept=m["kept"] + 1),
     lambda m, where, fix: [
         f"{where}: kept: manifest {m['kept'] + 1}, counted {m['kept']} ({m['kept'] - 6} records "
         f"written + 6 files skipped); {fix}",
         f"{where}: kept {m['kept'] + 1} is not what the last cleaning step 'age_below_min' "
         f"left ({m['kept']}); {fix}"]),
    (lambda m: m["skipped"].update(missing=m["skipped"]["missing"] + 1),
     lambda m, where, fix: [
         f"{where}: kept: manifest {m['kept']}, counted {m['kept'] + 1} ({m['kept'] - 6} records "
         f"written + 7 files skipped); {fix}"]),
    (lambda m: m["cleaning"][1].update(removed=m["cleaning"][1]["removed"] - 1),
     lambda m, where, fix: [
         f"{where}: cleaning step 'no_face' remaining: manifest {m['cleaning'][1]['remaining']}, "
         f"counted {m['cleaning'][1]['remaining'] + 1} ({m['cleaning'][0]['remaining']} before it - "
         f"{m['cleaning'][1]['removed'] - 1} removed); {fix}"]),
], ids=["train_age_histogram", "test_age_histogram", "age_histogram", "gender_counts", "kept", "skipped", "cleaning"])
def test_an_edited_manifest_count_is_named_with_both_values(copy, edit, expected):
    """Each edited number is one line naming the split (where it has one), the field,
    the manifest's value and the counted one; nothing else is reported."""
    before = _edit_manifest(copy, edit)
    where, fix = copy / "manifest.json", f"re-run ingest into {copy}"
    assert before["kept"] - sum(before["skipped"].values()) == sum(
        e["count"] for e in before["splits"].values())        # the sample: 6 files skipped
    assert sum(before["skipped"].values()) == 6
    assert problems(str(copy)) == expected(before, where, fix)


def test_a_split_whose_records_cannot_all_be_read_is_not_counted(copy):
    """A missing shard is the problem named; its split's labels are not compared."""
    name = _train_shard(copy)
    (copy / name).unlink()
    assert problems(str(copy)) == [f"{copy / name}: listed in the manifest but missing"]


def _feature_cache(directory, labels: dict[str, list[tuple[int, int]]]) -> None:
    """A feature cache by hand: feature_shape [1, 1, 2] float16, (age, gender) per record."""
    os.makedirs(directory)
    splits = {}
    for split, rows in labels.items():
        writer = ShardedWriter(str(directory), split, shard_bytes=1 << 20)
        for i, (age, gender) in enumerate(rows):
            writer.write(schema.encode_feature_example(features=bytes(4), age=age, gender=gender,
                                                       key=f"{split}/{i}.jpg".encode()))
        splits[split] = writer.finish()
    write_manifest(str(directory), {"schema_version": schema.SCHEMA_VERSION,
                                    "kind": schema.KIND_FEATURES, "feature_shape": [1, 1, 2],
                                    "feature_dtype": "float16", "image_size": 32, "splits": splits})


def test_a_feature_cache_is_checked_for_what_its_manifest_carries(tmp_path):
    """A cache's manifest has no label counts: a good cache verifies clean (no count is
    asked for), and a label out of range is named by record."""
    good = {"train": [(30, 1), (41, 0), (5, -1)], "val": [(60, 1)], "test": [(0, 0), (100, 1)]}
    _feature_cache(tmp_path / "good", good)
    assert problems(str(tmp_path / "good")) == []
    _feature_cache(tmp_path / "bad", {**good, "val": [(60, 1), (101, 2)]})
    shard = tmp_path / "bad" / schema.shard_name("val", 0, 1)
    assert problems(str(tmp_path / "bad")) == [
        f"{shard} record #1 (val/1.jpg): label out of range (age 101, gender 2)"]
