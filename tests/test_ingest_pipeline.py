"""`python -m ingest` end to end on the sample: manifest, records, crash safety, errors."""

from __future__ import annotations

import collections
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import SAMPLE_IMAGE_SIZE, read_records, run_module
from ingest import pipeline, sample
from records import schema
from records.verify import problems
from storage.checksum import file_sha256


@pytest.fixture(scope="module")
def manifest(sample_shards):
    return json.load(open(os.path.join(sample_shards, "manifest.json")))


def test_manifest_reports_the_known_counts(manifest, sample_dir, sample_expected):
    assert manifest["schema_version"] == schema.SCHEMA_VERSION and manifest["kind"] == "images"
    assert manifest["image_size"] == SAMPLE_IMAGE_SIZE and manifest["encoding"] == "jpeg"
    assert manifest["source"] == {"name": "imdb_wiki", "dataset": "wiki", "read": "wiki.mat",
                                  "entries": sample_expected["entries"],
                                  "fingerprint": file_sha256(os.path.join(sample_dir, "wiki.mat"))}
    assert manifest["label"] == "real" and manifest["margin"] == 0.4
    assert [{k: c[k] for k in ("step", "removed", "remaining")} for c in manifest["cleaning"]] == \
        sample_expected["cleaning"]
    assert manifest["kept"] == sample_expected["kept"]
    assert manifest["skipped"] == sample_expected["skipped"]
    counts = {s: manifest["splits"][s]["count"] for s in schema.SPLITS}
    assert sum(counts.values()) == sample_expected["written"] == sum(manifest["age_histogram"])
    assert len(manifest["age_histogram"]) == schema.NUM_AGES
    assert len(manifest["splits"]["train"]["shards"]) >= 2
    assert manifest["gender_counts"]["unknown"] == sample_expected["unknown_gender"]
    assert sum(manifest["gender_counts"].values()) == sample_expected["written"]
    assert manifest["flags"]["workers"] == 2 and manifest["flags"]["seed"] == 0
    assert manifest["created"].endswith("+00:00")
    for shard in manifest["splits"]["train"]["shards"]:
        assert schema.parse_shard_name(shard["file"])[0] == "train"


def test_every_kept_image_lands_once_in_its_split_with_its_age(sample_shards, sample_dir,
                                                               sample_rows, manifest):
    cfg = pipeline.Config(src=sample_dir)
    _, table, kept, _ = pipeline.load_and_clean(cfg)
    split_of = dict(zip(kept["path"], pipeline.assign_splits(table, kept, cfg)))
    truth = {r["full_path"]: r for r in sample_rows}
    readable = {r["full_path"] for r in sample_rows if r["category"] == "kept"
                and r["quirk"] not in ("missing", "truncated", "tiny")}
    seen = collections.Counter()
    histogram = [0] * schema.NUM_AGES
    for name, records in read_records(sample_shards).items():
        assert len(records) == manifest["splits"][name]["count"]
        split_ages = np.bincount([rec[schema.AGE] for rec in records], minlength=schema.NUM_AGES)
        assert split_ages.tolist() == manifest["splits"][name]["age_histogram"]
        for rec in records:
            key = rec[schema.KEY].decode()
            seen[key] += 1
            assert split_of[key] == name
            r = truth[key]
            with Image.open(io.BytesIO(rec[schema.IMAGE_ENCODED])) as image:
                rgb = np.asarray(image)
            assert rgb.shape == (SAMPLE_IMAGE_SIZE, SAMPLE_IMAGE_SIZE, 3)
            assert rec[schema.AGE] == r["age"] == sample.age_from_pixels(rgb)
            assert rec[schema.GENDER] == (-1 if np.isnan(r["gender"]) else int(r["gender"]))
            assert rec[schema.IMAGE_FORMAT] == b"jpeg"
            histogram[r["age"]] += 1
    assert set(seen) == readable and set(seen.values()) == {1}
    assert histogram == manifest["age_histogram"]


def test_outputs_verify_and_plot(sample_shards):
    assert problems(sample_shards) == []
    with Image.open(os.path.join(sample_shards, "age_gender.png")) as png:
        assert png.format == "PNG"


@pytest.mark.slow
def test_a_killed_reingest_leaves_the_old_data_set_and_a_rerun_finishes(sample_dir, sample_shards, tmp_path):
    out = tmp_path / "wiki"
    shutil.copytree(sample_shards, out)            # an old finished set in the way
    command = [sys.executable, "-m", "ingest", "--src", sample_dir, "--out", str(out),
               "--image_size", "96", "--shard_mb", "0.05", "--workers", "1"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    staging = tmp_path / ".wiki.staging"
    deadline = time.monotonic() + 60
    while not (staging.is_dir() and any(p.name.endswith(".tmp") for p in staging.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, "ingest ended before the kill"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert problems(str(out)) == []                 # the old data set is untouched and usable
    assert json.load(open(out / "manifest.json"))["image_size"] == SAMPLE_IMAGE_SIZE
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert problems(str(out)) == []
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")] and not staging.exists()
    assert json.load(open(out / "manifest.json"))["image_size"] == 96


def test_paths_escaping_src_are_counted_and_never_written(sample_dir, sample_rows, tmp_path):
    src = tmp_path / "wiki_crop"
    shutil.copytree(sample_dir, src)
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.jpg")
    rows = [dict(r) for r in sample_rows]
    kept = [r for r in rows if r["category"] == "kept" and r["quirk"] == "rgb"]
    kept[0]["full_path"] = "../outside.jpg"
    kept[1]["full_path"] = str(tmp_path / "outside.jpg")
    sample.write_mat(str(src / "wiki.mat"), rows)
    manifest = pipeline.run(pipeline.Config(src=str(src), out=str(tmp_path / "out"), image_size=8,
                                            workers=1, encoding="raw"), log=lambda s: None)
    assert manifest["skipped"] == {**sample.expected_counts(len(rows))["skipped"], "unsafe_path": 2}
    keys = {rec[schema.KEY].decode() for recs in read_records(str(tmp_path / "out")).values()
            for rec in recs}
    assert "../outside.jpg" not in keys and str(tmp_path / "outside.jpg") not in keys


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    ([], "ingest: --src is required"),
    (["--src", "/nonexistent/wiki_crop"], "--src /nonexistent/wiki_crop does not exist; pass a data set folder"),
    (["--src", "EMPTY"], "not a known data set; looked for a .csv file (csv); a folder with "
                         "wiki.mat or imdb.mat (imdb_wiki); a folder with gt_avg_train.csv "
                         "(appa_real); a folder where most image names start with <int>_<int>_ "
                         "(utkface)"),
    (["--src", "EMPTY", "--image_size", "0"], "--image_size=0"),
    (["--src", "EMPTY", "--min_age", "50", "--max_age", "20"], "--min_age=50 --max_age=20"),
    (["--src", "EMPTY", "--encoding", "png"], "--encoding"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path):
    args = [str(tmp_path) if a == "EMPTY" else a for a in args]
    result = run_module("ingest", *args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 2
    assert not (tmp_path / "shards").exists()
