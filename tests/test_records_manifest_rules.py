"""A manifest is checked once, where it is read (`records.manifest.read_manifest`):
its structure, that its numbers agree with each other, and that every name it
holds is a plain name inside its directory, so every command that opens a data
set (reader, `--dry_run`, training, evaluation, the feature cache, tf.data
service, inspect, verify) refuses a crafted or edited one in one line, before
anything is read or removed."""

from __future__ import annotations

import json
import os
import shutil
import threading

import pytest

import records
from errors import DataError
from records import schema, verify
from records.manifest import read_manifest, write_manifest
from records.writer import remove_split_files


@pytest.fixture
def copy(sample_shards, tmp_path):
    d = tmp_path / "shards"
    shutil.copytree(sample_shards, d)
    return d


def manifest_of(d) -> dict:
    with open(d / "manifest.json") as f:
        return json.load(f)


def edited(d, edit) -> dict:
    m = manifest_of(d)
    edit(m)
    write_manifest(str(d), m)
    return m


def refused(d) -> str:
    with pytest.raises(DataError) as e:
        read_manifest(str(d))
    line = str(e.value)
    assert "\n" not in line and line.startswith(f"{d / 'manifest.json'}: ")
    assert line.endswith(f"run `python -m records verify {d}` for the full check, or re-run ingest into {d}")
    return line


def _train(m):
    return m["splits"]["train"]


def test_a_split_total_that_disagrees_with_its_shards_names_both_numbers(copy):
    m = edited(copy, lambda m: _train(m).update(count=_train(m)["count"] + 7))
    held = sum(s["count"] for s in _train(m)["shards"])
    assert f"split 'train' count {held + 7} is not the sum of its shards' counts ({held})" in refused(copy)


@pytest.mark.parametrize("edit, says", [
    (lambda m: m["splits"]["val"]["age_histogram"].__setitem__(40, m["splits"]["val"]["age_histogram"][40] + 1),
     "split 'val' count {val} is not the sum of its age_histogram ({val_plus})"),
    (lambda m: m["gender_counts"].update(male=m["gender_counts"]["male"] + 2),
     "gender_counts sums to {total_plus2} but the splits hold {total} records"),
    (lambda m: m["age_histogram"].__setitem__(30, m["age_histogram"][30] + 2),
     "age_histogram sums to {total_plus2} but the splits hold {total} records"),
], ids=["split_histogram", "gender_counts", "age_histogram"])
def test_histograms_that_disagree_with_the_counts_are_refused(copy, edit, says):
    m = manifest_of(copy)
    total = sum(e["count"] for e in m["splits"].values())
    val = m["splits"]["val"]["count"]
    edited(copy, edit)
    assert says.format(val=val, val_plus=val + 1, total=total, total_plus2=total + 2) in refused(copy)


def test_a_count_of_a_billion_is_checked_against_the_shard_sizes(copy):
    """The split total and its shard's count both lie: the shard's bytes cannot hold them."""
    def edit(m):
        shard = _train(m)["shards"][0]
        _train(m)["count"] += 10**9 - shard["count"]
        shard["count"] = 10**9
    m = edited(copy, edit)
    shard = _train(m)["shards"][0]
    assert (f"shard {shard['file']} count 1000000000 does not fit its {shard['bytes']} bytes "
            f"(a record takes at least 16)") in refused(copy)


@pytest.mark.parametrize("edit, says", [
    (lambda m: _train(m)["shards"][0].pop("bytes"), "bytes None is not a count"),
    (lambda m: _train(m)["shards"][0].update(bytes=str(_train(m)["shards"][0]["bytes"])), "bytes '"),
    (lambda m: m.update(splits=[1, 2]), "manifest has no 'splits'"),
    (lambda m: _train(m).update(shards="train-00000-of-00001.tfrecord"), "split 'train' shards 'train-"),
    (lambda m: _train(m)["shards"][0].update(file=None), "split 'train' shard #0 file None is not a plain"),
    (lambda m: m.update(image_size="32"), "image_size '32' is not a positive integer"),
    (lambda m: m.update(encoding="png"), "encoding 'png' is not one of 'jpeg' or 'raw'"),
    (lambda m: m.update(margin=-1), "margin -1 is not a number >= 0"),
    (lambda m: _train(m).update(shards=[], count=0), "split 'train' shards [] is not a non-empty list"),
    (lambda m: m["splits"].update(train=[]), "split 'train' is a JSON list, not an object"),
    (lambda m: _train(m)["shards"][0].update(count=_train(m)["shards"][0]["count"] + 1),
     "is not the sum of its shards' counts"),
    (lambda m: m.update(source="x"), "source 'x' is not an object"),
    (lambda m: m.update(skipped={"a": "b"}), "skipped {'a': 'b'} is not an object of counts"),
    (lambda m: _train(m).update(skipped={"a": "b"}), "split 'train' skipped {'a': 'b'} is not"),
    (lambda m: m.update(cleaning=[{}]), "cleaning step #0 {} is not {step, rule, removed, remaining}"),
    (lambda m: m.update(kept=-3), "kept -3 is not a count"),
    (lambda m: m.update(group_counts={"race": [1]}), "group_counts {'race': [1]} is not"),
    (lambda m: _train(m)["shards"][0].update(bytes=10**400), "bytes 1000000000000000000000000000000000000"),
], ids=["no_bytes", "bytes_string", "splits_list", "shards_string", "file_null", "image_size",
        "encoding", "margin", "no_shards", "split_list", "shard_count_lies", "source_string",
        "skipped_strings", "split_skipped_strings", "cleaning_empty_step", "kept_negative",
        "group_counts_list", "bytes_10_400"])
def test_a_malformed_manifest_is_one_line_everywhere(copy, edit, says):
    edited(copy, edit)
    line = refused(copy) if says != "manifest has no 'splits'" else None
    if line is not None:
        assert says in line
    with pytest.raises(DataError, match="manifest"):
        records.make_dataset(str(copy), "train", 8, training=True)
    found = verify.problems(str(copy))       # a lying shard count is also named by its records
    assert says in found[0] and len(found) == (2 if "shards' counts" in says else 1), found
    import entry
    from records.__main__ import main as records_main
    with pytest.raises(SystemExit) as status:           # entry prints it, exit status 1
        entry.one_line(records_main, ["python -m records", "inspect", str(copy)])
    err = status.value.code
    assert "\n" not in err and err.startswith("error: ") and says in err


@pytest.mark.parametrize("name", ["../elsewhere", "/tmp/train", "tr*", "Train", ""])
def test_a_split_name_that_is_a_path_or_pattern_is_refused_and_nothing_removed(copy, tmp_path, name):
    victim = tmp_path / "elsewhere-00000-of-00001.tfrecord"
    victim.write_bytes(b"another data set's shard")
    edited(copy, lambda m: m["splits"].update({name: m["splits"].pop("train")}))
    assert f"split name {name!r} is not a plain name (lowercase letters)" in refused(copy)
    with pytest.raises(ValueError, match="is not a plain split name; nothing was removed"):
        remove_split_files(str(copy), name)
    assert victim.read_bytes() == b"another data set's shard"


@pytest.mark.parametrize("file", ["../outside/train-00000-of-00001.tfrecord", "/dev/zero", ".hidden", ".."])
def test_a_shard_file_outside_the_directory_is_refused_before_reading(copy, file):
    edited(copy, lambda m: _train(m)["shards"][0].update(file=file))
    assert f"split 'train' shard #0 file {file!r} is not a plain file name" in refused(copy)
    found = verify.problems(str(copy))
    assert len(found) == 1 and "is not a plain file name" in found[0]


def test_a_shard_that_is_a_fifo_or_a_link_is_refused_without_opening_it(copy, tmp_path):
    m = manifest_of(copy)
    fifo_name, link_name = (s["file"] for s in _train(m)["shards"][:2])
    os.remove(copy / fifo_name)
    os.mkfifo(copy / fifo_name)
    target = tmp_path / "elsewhere.tfrecord"
    shutil.move(copy / link_name, target)
    os.symlink(target, copy / link_name)
    result = {}
    worker = threading.Thread(target=lambda: result.update(problems=verify.problems(str(copy))), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "verify opened the FIFO"
    not_regular = [p for p in result["problems"] if "is not a regular file" in p]
    assert sorted(not_regular) == sorted(
        f"{copy / n}: shard listed in the manifest is not a regular file (a link, FIFO, device or "
        f"directory); nothing was read: re-run ingest into {copy}" for n in (fifo_name, link_name))
    with pytest.raises(DataError, match=f"{fifo_name}: shard listed in the manifest is not a regular file"):
        records.make_dataset(str(copy), "train", 8, training=True)


def test_an_untouched_manifest_reads(sample_shards, appa_real_shards):
    for d in (sample_shards, appa_real_shards):
        assert set(read_manifest(d)["splits"]) == set(schema.SPLITS)


def test_dry_run_and_training_refuse_a_split_total_edited_to_disagree(copy, tmp_path):
    """`--dry_run` finds what training would: the same one line, before the run directory exists."""
    from test_trainer_train import tiny_config
    from trainer import train

    m = edited(copy, lambda m: m["splits"]["val"].update(count=m["splits"]["val"]["count"] - 1))
    held = m["splits"]["val"]["count"] + 1
    says = f"split 'val' count {held - 1} is not the sum of its shards' counts ({held})"
    config = tiny_config(str(copy), str(tmp_path / "run"))
    for command in (train.dry_run, train.train):
        with pytest.raises(DataError) as e:
            command(config)
        assert says in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "run")


def test_what_is_given_instead_of_a_data_set_is_named_with_the_command_that_was_meant(tmp_path):
    from errors import DataError
    from records.manifest import not_a_data_set, read_manifest

    wiki = tmp_path / "wiki_crop"                      # IMDB-WIKI's layout: wiki.mat and 00..99 of JPEGs
    (wiki / "00").mkdir(parents=True)
    (wiki / "00" / "1_1990-01-01_2010.jpg").write_bytes(b"jpeg")
    assert not_a_data_set(str(wiki)) == (
        f"{wiki} is a folder of images (a source for ingest), not a data set of shards: run "
        f"`python -m ingest --src {wiki} --out shards/wiki_crop`, then pass --records shards/wiki_crop")
    appa = tmp_path / "appa-real-release"
    appa.mkdir()
    (appa / "gt_avg_train.csv").write_text("file_name,apparent_age_avg\n")
    assert "is a folder of images" in not_a_data_set(str(appa))

    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "manifest.json").write_text("{}")
    shard = shards / "train-00000-of-00001.tfrecord"
    shard.write_bytes(b"")
    assert not_a_data_set(str(shard)) == (
        f"{shard} is a shard file of the data set {shards}; pass --records {shards} (the data set's folder)")
    assert not_a_data_set(str(shard), "run `python -m records inspect {}`") == (
        f"{shard} is a shard file of the data set {shards}; run `python -m records inspect {shards}` "
        f"(the data set's folder)")
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    assert not_a_data_set(str(notes)).startswith(f"{notes} is a file, not a data set")

    empty = tmp_path / "half"                          # an ingest that never finished
    empty.mkdir()
    assert "no manifest, so" in not_a_data_set(str(empty))
    with pytest.raises(DataError) as e:
        read_manifest(str(tmp_path / "nowhere"))
    assert str(e.value) == (f"{tmp_path / 'nowhere'} does not exist; create the data set with "
                            f"`python -m ingest --src FOLDER_OF_IMAGES --out {tmp_path / 'nowhere'}`")


def test_a_training_run_or_a_csv_given_as_a_data_set_is_named_so(tmp_path):
    from records.manifest import not_a_data_set

    run = tmp_path / "runs" / "utk"
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"records": "/data/shards/utk"}))
    assert not_a_data_set(str(run)) == (f"{run} is a training run, not a data set; it was trained on "
                                        f"--records /data/shards/utk; pass a data set's folder (a run is what "
                                        f"`python -m trainer.evaluate --model_dir` reads)")
    (run / "run.json").write_text("[1, 2")                           # damaged: still a run, no data set named
    assert not_a_data_set(str(run)) == (f"{run} is a training run, not a data set; pass a data set's "
                                        f"folder (a run is what `python -m trainer.evaluate --model_dir` reads)")
    table = tmp_path / "faces.csv"
    table.write_text("path,age\n")
    assert not_a_data_set(str(table)) == (
        f"{table} is a CSV table (a source for ingest), not a data set of shards: run `python -m ingest "
        f"--src {table} --out shards/faces`, then pass --records shards/faces")


@pytest.mark.parametrize("content", ["[" * 200000 + "]" * 200000, "huge"])
def test_a_deeply_nested_or_oversized_manifest_is_one_line_before_parsing(copy, content, monkeypatch):
    from storage import json_file
    path = copy / "manifest.json"
    if content == "huge":
        monkeypatch.setattr(json_file, "MAX_JSON_BYTES", path.stat().st_size - 1)
        says = f"{path.stat().st_size} bytes, more than the {path.stat().st_size - 1}"
    else:
        path.write_text(content)
        says = "nested too deeply"
    with pytest.raises(DataError) as e:
        read_manifest(str(copy))
    assert str(e.value).startswith(f"{path}: unreadable ({says}") and "\n" not in str(e.value)


def test_a_json_file_that_is_a_fifo_is_refused_without_blocking(tmp_path):
    from storage.json_file import read_json_object
    os.mkfifo(tmp_path / "run.json")
    with pytest.raises(DataError, match="not a regular file"):
        read_json_object(str(tmp_path / "run.json"), "a run", "fix it")
