"""Every source through the seam, end to end on its synthetic sample: exact counts
per cleaning step and skip reason, labels per record against the file names or
CSV rows, gender mapping, official splits, the CSV box crop; plus auto-detection,
the split-flag rules, one-line errors, schema version 2 and version-1 shards."""

from __future__ import annotations

import io
import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import records
from conftest import read_records, run_module
from errors import DataError
from faces import facebox
from ingest import pipeline, sample, sample_sources, sources
from ingest.sources import csv_table, utkface
from records import schema, wire
from records.__main__ import inspect
from records.manifest import write_manifest
from records.verify import problems
from records.writer import ShardedWriter

N = 200
SIZE = 32


def _ingest(src: str, out: str, *flags: str) -> dict:
    result = run_module("ingest", "--src", src, "--out", out, "--image_size", str(SIZE),
                        "--workers", "2", *flags)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.load(open(os.path.join(out, "manifest.json")))


def _pixels(rec: dict) -> np.ndarray:
    with Image.open(io.BytesIO(rec[schema.IMAGE_ENCODED])) as image:
        return np.asarray(image)


def _counts(manifest: dict) -> dict:
    return {"entries": manifest["source"]["entries"],
            "cleaning": [{k: c[k] for k in ("step", "removed", "remaining")}
                         for c in manifest["cleaning"]],
            "kept": manifest["kept"], "skipped": manifest["skipped"],
            "written": sum(e["count"] for e in manifest["splits"].values()),
            "gender_counts": manifest["gender_counts"]}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    rows = {d: sample_sources.generate(d, str(root / d), N) for d in sample_sources.DATASETS}
    return root, rows


@pytest.fixture(scope="module")
def utk_shards(samples):
    root, _ = samples
    return _ingest(str(root / "utkface"), str(root / "shards_utk")), str(root / "shards_utk")


@pytest.fixture(scope="module")
def appa_shards(samples):
    root, _ = samples
    return _ingest(str(root / "appa_real"), str(root / "shards_appa")), str(root / "shards_appa")


@pytest.fixture(scope="module")
def csv_tight_shards(samples):
    """faces.csv with --margin 0: the stored image is the face box alone."""
    root, _ = samples
    out = str(root / "shards_csv0")
    return _ingest(str(root / "csv" / "faces.csv"), out, "--margin", "0"), out


# --- UTKFace -----------------------------------------------------------------------

def test_utkface_counts_labels_and_gender_mapping(utk_shards, samples):
    manifest, out = utk_shards
    assert _counts(manifest) == sample_sources.expected_counts("utkface", N)
    assert manifest["source"]["name"] == "utkface" and manifest["flags"]["source"] == "utkface"
    assert manifest["label"] == "real" and manifest["margin"] == 0.0
    assert manifest["flags"]["split_by"] == "random"
    truth = {r["name"]: r for r in samples[1]["utkface"]}
    keys = set()
    for recs in read_records(out).values():
        for rec in recs:
            key = rec[schema.KEY].decode()
            keys.add(key)
            r = truth[key]
            assert r["category"] == "kept"
            assert rec[schema.AGE] == r["age"] == int(key.split("_")[0])
            assert rec[schema.AGE] == sample.age_from_pixels(_pixels(rec))
            assert rec[schema.GENDER] == r["gender"] == 1 - int(key.split("_")[1])  # UTK 0 = male
            assert rec[schema.AGE_MEAN] == r["age"] and rec[schema.AGE_STD] == 0
            assert rec[schema.REAL_AGE] == schema.REAL_AGE_UNKNOWN
    assert keys == {r["name"] for r in samples[1]["utkface"] if r["category"] == "kept"}
    assert any(len(k.split("_")) == 3 for k in keys)          # names without race are kept
    assert problems(out) == []


def test_utkface_names():
    assert utkface.parse_name("39_1_20170116174525125.jpg.chip.jpg") == (39, 1)
    assert utkface.parse_name("sub/116_0_2_20170112213001988.jpg.chip.jpg") == (116, 0)
    for bad in ("39.5_1_0_2017.jpg.chip.jpg", "39_x_0_2017.jpg.chip.jpg", "39_2_0_2017.jpg",
                "39_1.jpg", "_1_0_2017.jpg", "٣_1_0_2017.jpg",
                "1234567890123456789012345_1_0_2017.jpg",             # 25 digits: no age
                b"39_1_0_caf\xe9.jpg".decode("utf-8", "surrogateescape")):   # not UTF-8
        assert utkface.parse_name(bad) is None, bad


def _steps_of(table):
    from ingest import clean
    kept, report = clean.clean(table.frame, table.steps + clean.common_steps(clean.Thresholds()))
    return kept, {r["step"]: r["removed"] for r in report}


def test_utkface_names_that_overflow_or_are_not_utf8_are_counted_unparsable(tmp_path):
    import numpy as np
    from ingest.sources.table import Options

    src = tmp_path / "utk"
    src.mkdir()
    names = [b"25_0_0_2017.jpg", b"1234567890123456789012345_1_0_2017.jpg", b"30_1_0_caf\xe9.jpg"]
    for name in names:
        with open(os.path.join(os.fsencode(src), name), "wb") as f:
            f.write(b"x")
    kept, removed = _steps_of(utkface.load_table(str(src), Options(min_face_score=0.0)))
    assert list(kept["path"]) == ["25_0_0_2017.jpg"] and removed["unparsable_name"] == 2


def test_csv_duplicates_compare_normalised_paths_and_huge_ages_are_above_max(tmp_path):
    import warnings
    from ingest.sources.table import Options

    csv_path = tmp_path / "faces.csv"
    csv_path.write_text("path,age\nimgs/g005.jpg,25\n./imgs/g005.jpg,90\nimgs//g006.jpg,30\n"
                        "imgs/g006.jpg,31\nimgs/g007.jpg,1e308\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # no numpy overflow warning either
        kept, removed = _steps_of(csv_table.load_table(str(csv_path), Options(min_face_score=0.0)))
    assert list(kept["path"]) == ["imgs/g005.jpg", "imgs//g006.jpg"]
    assert removed["duplicate_path"] == 2
    assert removed["age_above_max"] == 1 and removed["age_below_min"] == 0


@pytest.mark.parametrize("header, where", [("path,age,path", "columns 1, 3"), ("path, path,age", "columns 1, 2")])
def test_a_csv_header_naming_a_column_twice_is_one_line_naming_it(tmp_path, header, where):
    """Not blamed on the split fractions of the few rows that follow, nor read as `path.1`."""
    from ingest.sources.table import Options

    csv_path = tmp_path / "faces.csv"
    csv_path.write_text(f"{header}\nimgs/a.jpg,30,imgs/b.jpg\nimgs/c.jpg,40,imgs/d.jpg\n")
    with pytest.raises(DataError) as e:
        csv_table.load_table(str(csv_path), Options(min_face_score=0.0))
    assert str(e.value) == (f"{csv_path}: the header names the column 'path' 2 times ({where}); keep one "
                            f"column of each name: rename or delete the others")


# --- APPA-REAL ---------------------------------------------------------------------

def test_appa_real_keeps_official_splits_and_apparent_labels(appa_shards, samples):
    manifest, out = appa_shards
    assert _counts(manifest) == sample_sources.expected_counts("appa_real", N)
    assert manifest["label"] == "apparent" and manifest["margin"] == 0.4
    assert manifest["flags"]["split_by"] is None     # not used: the official splits are
    truth = {f"{r['folder']}/{r['file_name']}_face.jpg": r for r in samples[1]["appa_real"]}
    clipped = 0
    for split, recs in read_records(out).items():
        assert len(recs) == manifest["splits"][split]["count"]
        for rec in recs:
            r = truth[rec[schema.KEY].decode()]
            assert r["split"] == split and r["category"] == "kept" and not r["quirk"]
            assert rec[schema.AGE] == min(math.floor(r["apparent_age_avg"] + 0.5), 100)
            assert rec[schema.AGE] == sample.age_from_pixels(_pixels(rec))   # the _face.jpg crop
            assert rec[schema.AGE_MEAN] == pytest.approx(r["apparent_age_avg"], abs=1e-4)
            assert rec[schema.AGE_STD] == pytest.approx(r["apparent_age_std"], abs=1e-4)
            assert rec[schema.REAL_AGE] == r["real_age"]
            word = r["gender_word"] if r["folder"] in sample_sources.APPA_WITH_CATEGORIES else None
            assert rec[schema.GENDER] == {"male": 1, "female": 0, None: -1}[word]
            clipped += r["apparent_age_avg"] > 100.5
    assert clipped == 1
    assert problems(out) == []


@pytest.mark.slow
def test_appa_real_rows_with_bad_numbers_are_a_counted_cleaning_step(tmp_path):
    src = tmp_path / "appa"
    made = run_module("ingest.sample", "--dataset", "appa_real", "--out", str(src), "--n", "100",
                      "--workers", "1")
    assert made.returncode == 0, made.stderr[-2000:]
    gt = src / "gt_avg_train.csv"
    lines = gt.read_text().splitlines()
    cells = [line.split(",") for line in lines[1:]]
    damaged = [i for i, c in enumerate(cells) if float(c[2]) > 5][:4]   # kept rows, by age
    damaged = [i for i, c in enumerate(cells) if float(c[2]) > 5][:5]   # kept rows, by age
    for i, (column, text) in zip(damaged, ((2, ""), (2, "abc"), (4, ""), (4, "30.5"), (3, "-3.5"))):
        cells[i][column] = text            # apparent_age_avg empty / not a number, real_age too,
                                           # a negative std
    gt.write_text("\n".join([lines[0]] + [",".join(c) for c in cells]) + "\n")
    result = run_module("ingest", "--src", str(src), "--out", str(tmp_path / "o"),
                        "--image_size", "8", "--workers", "1")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    manifest = json.load(open(tmp_path / "o" / "manifest.json"))
    expected = sample_sources.expected_counts("appa_real", 100)
    step = manifest["cleaning"][0]
    assert (step["step"], step["removed"], step["remaining"]) == ("invalid_age", 5, 95)
    assert manifest["kept"] == expected["kept"] - 5
    missing = {f"train/{cells[i][0]}_face.jpg" for i in damaged}
    assert not missing & {r[schema.KEY].decode() for recs in read_records(str(tmp_path / "o"))
                          .values() for r in recs}
    assert "invalid_age" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--split_by=random", "--test_fraction=0.2", "--val_fraction=0.2"])
def test_split_flags_are_refused_where_the_source_has_splits(samples, flag, tmp_path):
    root, _ = samples
    for src in (root / "appa_real", root / "csv" / "faces_split.csv"):
        result = run_module("ingest", "--src", str(src), "--out", str(tmp_path / "o"), flag)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert "brings its own train/val/test splits" in line and flag.split("=")[0] in line
        assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("dataset, given", [
    ("utkface", {"margin": 0.4}), ("appa_real", {"gender_male_code": 1}),
    ("appa_real", {"margin": 0.0, "gender_male_code": 0})])
def test_csv_flags_are_refused_for_the_other_sources_before_anything_is_read(
        samples, tmp_path, dataset, given):
    root, _ = samples
    flags = " ".join(f"--{name}" for name in given)
    expected = f"{flags}: not used by the {dataset} source (only by csv); drop {flags.replace(' ', '/')}"
    with pytest.raises(DataError) as e:
        pipeline.run(pipeline.Config(src=str(root / dataset), out=str(tmp_path / "o"), **given))
    assert str(e.value) == expected
    # named with --source, an empty folder: refused before its metadata is looked for
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=f"^{flags}: not used by the {dataset} source"):
        pipeline.load_and_clean(pipeline.Config(src=str(tmp_path / "empty"), source=dataset,
                                                **given))
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_margin_flag_is_refused_on_the_command_line_and_kept_for_csv(samples, tmp_path):
    root, _ = samples
    result = run_module("ingest", "--src", str(root / "utkface"), "--out", str(tmp_path / "o"),
                        "--margin", "0.4")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0 and lines == [
        "error: --margin: not used by the utkface source (only by csv); drop --margin"]
    assert not (tmp_path / "o").exists()
    manifest = _ingest(str(root / "csv" / "faces.csv"), str(tmp_path / "c"), "--margin", "0.25",
                       "--gender_male_code", "1")
    assert manifest["margin"] == 0.25 and manifest["flags"]["margin"] == 0.25


# --- CSV ---------------------------------------------------------------------------

def test_csv_counts_labels_and_genders(csv_tight_shards, samples):
    manifest, out = csv_tight_shards
    assert _counts(manifest) == sample_sources.expected_counts("csv", N)
    assert manifest["source"]["dataset"] == "faces" and manifest["margin"] == 0.0
    truth = {r["path"]: r for r in samples[1]["csv"] if r["category"] == "kept"}
    written = 0
    for recs in read_records(out).values():
        for rec in recs:
            r = truth[rec[schema.KEY].decode()]
            assert rec[schema.AGE] == math.floor(r["age_mean"] + 0.5)
            assert rec[schema.AGE_MEAN] == pytest.approx(r["age_mean"], abs=1e-4)
            assert rec[schema.GENDER] == r["gender"]
            assert rec[schema.AGE] == sample.age_from_pixels(_pixels(rec))   # margin 0: the face
            written += 1
    assert written == sample_sources.expected_counts("csv", N)["written"]
    assert problems(out) == []


@pytest.mark.slow
def test_csv_box_crop_is_the_box_plus_margin_clipped(samples):
    root, rows = samples
    out = str(root / "shards_csv")
    manifest = _ingest(str(root / "csv" / "faces.csv"), out)
    assert manifest["margin"] == 0.4 and manifest["flags"]["margin"] == 0.4
    truth = {r["path"]: r for r in rows["csv"] if r["category"] == "kept"}
    clipped = 0
    for recs in read_records(out).values():
        for rec in recs:
            r = truth[rec[schema.KEY].decode()]
            photo = Image.fromarray(sample_sources.photo_pixels(r))
            region = facebox.crop_region(r["box"], 0.4, *photo.size)
            x0, y0, x1, y1 = r["box"]
            assert region[0] <= x0 and region[1] <= y0 and region[2] >= x1 and region[3] >= y1
            clipped += region[0] == 0
            expected = np.asarray(photo.crop(region).resize((SIZE, SIZE), Image.BILINEAR), float)
            # 8x8 block means: the texture's noise averages out, the face's place does not
            # (a sub-pixel shift at the face's edge moves single blocks, hence the mean)
            blocks = lambda a: a.reshape(8, SIZE // 8, 8, SIZE // 8, 3).mean(axis=(1, 3, 4))
            diff = np.abs(blocks(_pixels(rec).astype(float)) - blocks(expected))
            assert diff.mean() < 2 and diff.max() < 16
            # the face sits in the middle, background around it
            centre = _pixels(rec)[SIZE // 2 - 2:SIZE // 2 + 2, SIZE // 2 - 2:SIZE // 2 + 2]
            assert abs(centre.mean() - sample.age_level(rec[schema.AGE])) < 12 or x0 == 0
    assert clipped > 0


@pytest.mark.slow
def test_csv_box_outside_the_photo_is_skipped_and_a_box_partly_outside_clipped(tmp_path):
    photo = np.zeros((200, 200, 3), np.uint8)
    photo[:, :, 0] = np.arange(200, dtype=np.uint8)[None, :]     # red = x, green = y:
    photo[:, :, 1] = np.arange(200, dtype=np.uint8)[:, None]     # a crop shows where it was
    for name in ("in", "part", "out", "test"):
        Image.fromarray(photo).save(tmp_path / f"{name}.png")
    (tmp_path / "f.csv").write_text(
        "path,age,x_min,y_min,x_max,y_max,split\n"
        "in.png,30,50,50,100,100,train\n"
        "part.png,31,150,150,300,300,val\n"       # partly outside: clipped
        "out.png,32,500,500,600,600,train\n"      # wholly outside: skipped, never stored
        "test.png,33,20,20,60,60,test\n")
    result = run_module("ingest", "--src", str(tmp_path / "f.csv"), "--out", str(tmp_path / "o"),
                        "--image_size", str(SIZE), "--workers", "1", "--encoding", "raw")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.load(open(tmp_path / "o" / "manifest.json"))
    assert manifest["kept"] == 4 and manifest["skipped"] == {"box_outside_photo": 1}
    assert "skipped 1 files (box_outside_photo: 1)" in result.stdout
    recs = read_records(str(tmp_path / "o"))
    assert {s: [r[schema.KEY].decode() for r in v] for s, v in recs.items()} == {
        "train": ["in.png"], "val": ["part.png"], "test": ["test.png"]}
    part = np.frombuffer(recs["val"][0][schema.IMAGE_ENCODED], np.uint8).reshape(SIZE, SIZE, 3)
    # the box plus margin (90..360) clipped to the photo: 90..200 on both axes
    assert facebox.crop_region((150, 150, 300, 300), 0.4, 200, 200) == (90, 90, 200, 200)
    expected = np.asarray(Image.fromarray(photo).crop((90, 90, 200, 200))
                          .resize((SIZE, SIZE), Image.BILINEAR), float)
    assert np.abs(part.astype(float) - expected).max() <= 2


@pytest.mark.slow
def test_csv_split_column_kept_and_identity_split(samples, tmp_path):
    root, rows = samples
    manifest = _ingest(str(root / "csv" / "faces_split.csv"), str(tmp_path / "s"))
    split_of = {r["path"]: r["split"] for r in rows["csv"] if r["category"] == "kept"}
    for split, recs in read_records(str(tmp_path / "s")).items():
        assert recs and all(split_of[rec[schema.KEY].decode()] == split for rec in recs)
    assert manifest["kept"] == sample_sources.expected_counts("csv", N)["kept"]
    _ingest(str(root / "csv" / "faces.csv"), str(tmp_path / "i"), "--split_by", "identity")
    identity = {r["path"]: r["identity"] for r in rows["csv"] if r["category"] == "kept"}
    people = {s: {identity[rec[schema.KEY].decode()] for rec in recs} - {""}
              for s, recs in read_records(str(tmp_path / "i")).items()}
    assert not (people["train"] & people["test"]) and not (people["train"] & people["val"])
    assert not (people["val"] & people["test"])


def _csv(tmp_path, text: str) -> str:
    Image.new("RGB", (40, 40), (100, 100, 100)).save(tmp_path / "a.jpg")
    Image.new("RGB", (40, 40), (100, 100, 100)).save(tmp_path / "b.jpg")
    (tmp_path / "t.csv").write_text(text)
    return str(tmp_path / "t.csv")


def test_numeric_genders_need_the_male_code(tmp_path):
    src = _csv(tmp_path, "path,age,gender\na.jpg,30,0\nb.jpg,40,1\n")
    with pytest.raises(DataError, match="numeric codes .* --gender_male_code 0 or 1"):
        csv_table.load_table(src, sources.Options(min_face_score=3.0))
    for code, expected in ((0, [1, 0]), (1, [0, 1])):
        table = csv_table.load_table(src, sources.Options(min_face_score=3.0, gender_male_code=code))
        assert table.frame["gender"].tolist() == expected
    words = _csv(tmp_path, "path,age,gender\na.jpg,30,Male\nb.jpg,40, f \n")
    assert csv_table.load_table(words, sources.Options(3.0)).frame["gender"].tolist() == [1, 0]


@pytest.mark.slow
@pytest.mark.parametrize("text, message", [
    ("path,age,gender\na.jpg,30,0\n", "--gender_male_code 0 or 1"),
    ("path,age,gender\na.jpg,30,x\n", "are not M/F/male/female"),
    ("path,age,split\na.jpg,30,train\nb.jpg,31,\n", "split column is empty on 1 of 2 rows"),
    ("path,age,split\na.jpg,30,train\nb.jpg,31,dev\n", "split values ['dev']"),
    ("path,gender\na.jpg,m\n", "lacks the column(s) ['age']"),
    ("path,age,x_min,y_min\na.jpg,30,1,1\n", "give all four or none"),
])
def test_bad_csv_is_one_clear_line(text, message, tmp_path):
    src = _csv(tmp_path, text)
    result = run_module("ingest", "--src", src, "--out", str(tmp_path / "o"))
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "o").exists()


def _error_line(result) -> str:
    """The one error line (after the progress lines, when images were decoded)."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], lines
    return lines[-1]


@pytest.mark.slow
def test_an_empty_split_names_the_source_or_the_fractions_that_made_it(tmp_path):
    # own splits: a split column whose val rows are all removed by cleaning
    src = _csv(tmp_path, "path,age,split\na.jpg,30,train\nb.jpg,abc,val\nc.jpg,31,test\n"
                         "d.jpg,32,train\n")
    result = run_module("ingest", "--src", src, "--out", str(tmp_path / "o"))
    assert len(result.stderr.strip().splitlines()) == 1     # refused before any decode
    line = _error_line(result)
    assert line == ("error: t.csv: the val split gets none of the 3 kept rows from its split "
                    "column; every split needs kept rows there")
    # own splits: the val rows are kept but none of their images can be read
    (tmp_path / "t.csv").write_text("path,age,split\na.jpg,30,train\nnone.jpg,40,val\n"
                                    "b.jpg,31,test\n")
    line = _error_line(run_module("ingest", "--src", src, "--out", str(tmp_path / "o"),
                                  "--workers", "1"))
    assert line.startswith("error: t.csv: the val split has no readable images (its 1 rows from "
                           "its split column; of 3 entries, 3 kept, skipped {'missing': 1})")
    assert "fraction" not in line and line.endswith("check their image files")
    # split by fraction: the flags that made the split empty lead, as before
    (tmp_path / "t.csv").write_text("path,age\na.jpg,30\nb.jpg,31\nc.jpg,32\n")
    line = _error_line(run_module("ingest", "--src", src, "--out", str(tmp_path / "o"),
                                  "--test_fraction", "0.4"))
    assert line == ("error: --test_fraction=0.4 --val_fraction=0.1: the val split gets none of "
                    "the 3 kept rows of t.csv; raise the fraction (every split needs rows)")
    (tmp_path / "t.csv").write_text("path,age\nx.jpg,30\ny.jpg,31\nz.jpg,32\nw.jpg,33\n")
    line = _error_line(run_module("ingest", "--src", src, "--out", str(tmp_path / "o"),
                                  "--val_fraction", "0.5", "--workers", "1"))
    assert line.startswith(f"error: {tmp_path / 'o'}: split 'train' has no readable images")
    assert line.endswith("check --src or change --test_fraction/--val_fraction")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_identity_split_needs_identities(samples, tmp_path):
    root, _ = samples
    result = run_module("ingest", "--src", str(root / "utkface"), "--out", str(tmp_path / "o"),
                        "--split_by", "identity")
    assert result.returncode != 0
    assert "--split_by identity:" in result.stderr and "has no identities" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
# --- the seam ----------------------------------------------------------------------

@pytest.mark.slow
def test_auto_detection_order_and_default_out(samples, sample_dir, tmp_path):
    root, _ = samples
    assert sources.resolve("auto", str(root / "csv" / "faces.csv")).NAME == "csv"
    assert sources.resolve("auto", sample_dir).NAME == "imdb_wiki"
    assert sources.resolve("auto", str(root / "appa_real")).NAME == "appa_real"
    assert sources.resolve("auto", str(root / "utkface")).NAME == "utkface"
    # a wiki folder that also holds gt_avg_train.csv is still imdb_wiki: the order decides
    (tmp_path / "both").mkdir()
    for name in ("wiki.mat", "gt_avg_train.csv"):
        (tmp_path / "both" / name).write_bytes(b"")
    assert sources.resolve("auto", str(tmp_path / "both")).NAME == "imdb_wiki"
    result = run_module("ingest", "--src", str(root / "utkface"), "--image_size", "8",
                        "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "shards" / "utkface" / "manifest.json").exists()


def test_facebox_region():
    assert facebox.crop_region((10, 20, 30, 60), 0.4, 100, 100) == (2, 4, 38, 76)
    assert facebox.crop_region((0, 0, 10, 10), 0.4, 12, 12) == (0, 0, 12, 12)   # clipped
    assert facebox.crop_region((5, 5, 6, 6), 0.0, 100, 100) == (5, 5, 6, 6)
    assert facebox.crop_region((150, 150, 300, 300), 0.4, 200, 100) == (90, 90, 200, 100)
    # a box wholly outside: still a region inside the photo, and overlaps() says it misses
    assert facebox.crop_region((500, 500, 600, 600), 0.4, 200, 200) == (199, 199, 200, 200)
    assert not facebox.overlaps((500, 500, 600, 600), 200, 200)
    assert not facebox.overlaps((200, 0, 210, 10), 200, 200)                   # at the edge
    assert facebox.overlaps((199.5, 0, 210, 10), 200, 200)


# --- schema version 2 and version-1 shards ----------------------------------------------

def test_inspect_shows_source_label_and_margin(appa_shards):
    _, out = appa_shards
    text = inspect(out)
    assert "source appa_real (gt_avg_{train,valid,test}.csv): 200 entries" in text
    assert "label apparent age, face margin 0.4" in text


def test_reader_yields_the_new_labels(appa_shards, samples):
    _, out = appa_shards
    truth = {f"{r['folder']}/{r['file_name']}_face.jpg": r for r in samples[1]["appa_real"]}
    for _, labels in records.make_dataset(out, "val", 16, training=False, with_keys=True):
        for i, key in enumerate(labels["key"].numpy()):
            r = truth[key.decode()]
            assert labels["age_mean"][i].numpy() == pytest.approx(r["apparent_age_avg"], abs=1e-4)
            assert labels["age_std"][i].numpy() == pytest.approx(r["apparent_age_std"], abs=1e-4)
            assert labels["real_age"][i].numpy() == r["real_age"]
            assert labels["age_mean"].dtype == tf.float32 and labels["real_age"].dtype == tf.int32


def _v1_record(age: int, split: str) -> bytes:
    pixels = np.full((4, 4, 3), age, np.uint8).tobytes()
    return wire.example({
        schema.IMAGE_ENCODED: wire.bytes_feature(pixels), schema.IMAGE_FORMAT: wire.bytes_feature(b"raw"),
        schema.IMAGE_HEIGHT: wire.int64_feature(4), schema.IMAGE_WIDTH: wire.int64_feature(4),
        schema.AGE: wire.int64_feature(age), schema.GENDER: wire.int64_feature(age % 2),
        schema.FACE_SCORE: wire.float_feature(4.0), schema.KEY: wire.bytes_feature(f"{split}/{age}".encode())})


def test_version_1_shards_read_unchanged(tmp_path):
    splits = {}
    for split in schema.SPLITS:
        writer = ShardedWriter(str(tmp_path), split, shard_bytes=10**6)
        for age in range(1, 6):
            writer.write(_v1_record(age, split))
        splits[split] = writer.finish()
    write_manifest(str(tmp_path), {"schema_version": 1, "kind": "images", "image_size": 4,
                                   "encoding": "raw", "splits": splits})
    _, labels = next(iter(records.make_dataset(str(tmp_path), "train", 5, training=False)))
    assert labels["age"].numpy().tolist() == [1, 2, 3, 4, 5]
    assert labels["age_mean"].numpy().tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert labels["age_std"].numpy().tolist() == [0.0] * 5
    assert labels["real_age"].numpy().tolist() == [-1] * 5
    assert problems(str(tmp_path)) == []
    _, labels = next(iter(records.make_dataset(str(tmp_path), "train", 5, training=False, with_keys=True)))
    assert labels[schema.RACE].numpy().tolist() == [b""] * 5     # no group attributes: unknown
    write_manifest(str(tmp_path), {"schema_version": 4, "kind": "images", "image_size": 4,
                                   "encoding": "raw", "splits": splits})
    with pytest.raises(DataError, match="schema_version 4, this code reads versions 1, 2, 3"):
        records.make_dataset(str(tmp_path), "train", 5, training=False)


def test_sample_cli_writes_each_format(tmp_path, capsys):
    for dataset in sample_sources.DATASETS:
        assert sample.main(sample.parser().parse_args(["--dataset", dataset, "--out", str(tmp_path / dataset),
                                                    "--n", "100"])) == 0
        exp = sample_sources.expected_counts(dataset, 100)
        assert f"keeps {exp['kept']}" in capsys.readouterr().out
    assert sources.resolve("auto", str(tmp_path / "utkface")).NAME == "utkface"
    assert sources.resolve("auto", str(tmp_path / "appa_real")).NAME == "appa_real"
    names = os.listdir(tmp_path / "utkface")
    assert set(sample_sources.NON_IMAGES) <= set(names)
    assert all(n.endswith(".jpg.chip.jpg") for n in names if n not in sample_sources.NON_IMAGES)
    assert not os.path.exists(tmp_path / "appa_real" / "allcategories_test.csv")
    with pytest.raises(ValueError, match="dataset must be one of"):
        sample_sources.expected_counts("lfw", 100)


def cleaning_refusal(src, names: tuple[str, ...], **config) -> str:
    """The one line ingest's cleaning gives a folder of 8x8 images named `names`."""
    from PIL import Image

    src.mkdir()
    for name in names:
        Image.new("RGB", (8, 8)).save(src / name)
    with pytest.raises(DataError) as e:
        pipeline.load_and_clean(pipeline.Config(src=str(src), source="utkface", **config))
    return str(e.value)


def test_a_folder_no_row_of_which_survives_names_the_step_its_rule_and_a_file(tmp_path):
    src = tmp_path / "photos"
    message = cleaning_refusal(src, ("holiday.jpg", "beach_2019.jpg"))
    assert message.startswith(f"{src}: no row survives cleaning: step unparsable_name removed all 2 "
                              f"remaining rows (rule: the name is not age_gender[_race]_date")
    assert "e.g. beach_2019.jpg" in message and "holds the utkface format" in message
    assert "\n" not in message and "[{" not in message and "loosen" not in message   # no threshold to loosen


def test_a_threshold_that_removes_every_row_names_its_flag(tmp_path):
    message = cleaning_refusal(tmp_path / "kids", ("3_0_0_20170116174525125.jpg.chip.jpg",
                                                   "7_1_2_20170116174525126.jpg.chip.jpg"), min_age=18)
    assert "step age_below_min removed all 2 remaining rows (rule: age < 18)" in message
    assert message.endswith("; lower --min_age if that rule is too strict for this data"), message


# --- the samples' forecasts ----------------------------------------------------------

@pytest.mark.parametrize("dataset", sources.SAMPLES)
@pytest.mark.parametrize("n", [sample_sources.MIN_N, 500, 1000])
def test_the_forecast_cleaning_is_what_ingest_reports_at_every_size(tmp_path, dataset, n):
    """expected_counts states what ingest's cleaning reports for every registered sample,
    format and size (at 1000, unsafe CSV paths once repeated each other and were also
    counted as duplicates); auto-detection finds the sample's source."""
    chosen = sources.SAMPLES[dataset]
    chosen.write(str(tmp_path / dataset), n, workers=1)
    src = chosen.src_of(str(tmp_path / dataset))
    if dataset in sample_sources.DATASETS:
        assert src == (str(tmp_path / dataset / "faces.csv") if dataset == "csv" else str(tmp_path / dataset))
    module, table, kept, cleaning = pipeline.load_and_clean(pipeline.Config(src=src))
    expected = chosen.expected(n)
    assert chosen in module.SAMPLES
    assert [{k: c[k] for k in ("step", "removed", "remaining")} for c in cleaning] == expected["cleaning"]
    assert (table.entries, len(kept)) == (expected["entries"], expected["kept"])


def test_every_registered_source_has_a_sample_and_its_line_in_both_helps():
    """--source's help and `python -m ingest.sample --dataset`'s choices and help come from
    the registry: every source, its format, what auto looks for; every sample."""
    from absl import flags as absl_flags

    from ingest import flags as ingest_flags

    assert {name for name, m in sources.SOURCES.items() for _ in m.SAMPLES} == set(sources.SOURCES)
    assert set(sources.SAMPLES) == set(sample.DATASETS) | set(sample_sources.DATASETS)
    if "source" not in absl_flags.FLAGS:
        ingest_flags.define_flags()
    source_help = absl_flags.FLAGS["source"].help
    assert source_help.endswith(sources.source_help())
    for name, module in sources.SOURCES.items():
        assert f"{name}: {module.HELP}" in source_help and module.LOOKS_FOR in source_help
    dataset = next(a for a in sample.parser()._actions if a.dest == "dataset")
    assert tuple(dataset.choices) == tuple(sources.SAMPLES) and dataset.default == "wiki"
    for name, s in sources.SAMPLES.items():
        assert f"{name}: {s.help}" in dataset.help


@pytest.mark.slow
@pytest.mark.parametrize("dataset", sources.SAMPLES)
def test_every_registered_sample_is_ingested_with_its_expected_counts(tmp_path, dataset):
    chosen = sources.SAMPLES[dataset]
    chosen.write(str(tmp_path / dataset), sample_sources.MIN_N, workers=1)
    manifest = _ingest(chosen.src_of(str(tmp_path / dataset)), str(tmp_path / "out"))
    got = _counts(manifest)
    expected = chosen.expected(sample_sources.MIN_N)
    assert {k: got[k] for k in ("entries", "cleaning", "kept", "skipped", "written")} == \
        {k: expected[k] for k in ("entries", "cleaning", "kept", "skipped", "written")}
    assert manifest["source"]["name"] == next(n for n, m in sources.SOURCES.items() if chosen in m.SAMPLES)


@pytest.mark.slow
def test_the_csv_forecast_is_what_ingest_reports_at_the_default_size(tmp_path):
    n = 1000
    sample_sources.generate("csv", str(tmp_path / "csv"), n)
    manifest = _ingest(str(tmp_path / "csv" / "faces.csv"), str(tmp_path / "out"))
    assert _counts(manifest) == sample_sources.expected_counts("csv", n)


def test_a_csv_box_beyond_any_photo_is_an_invalid_box_row_not_an_overflow(tmp_path):
    from faces import pixels
    from ingest.sources.table import Options

    csv_path = tmp_path / "faces.csv"
    csv_path.write_text("path,age,x_min,y_min,x_max,y_max\na.jpg,30,0,0,1.5e308,20\n"
                        f"b.jpg,30,0,0,{pixels.MAX_PIXELS + 1},20\nc.jpg,30,0,0,10,20\n")
    kept, removed = _steps_of(csv_table.load_table(str(csv_path), Options(min_face_score=0.0)))
    assert list(kept["path"]) == ["c.jpg"] and removed["invalid_box"] == 2


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "large"])
def test_a_csv_source_that_is_a_fifo_a_device_or_too_large_is_one_line_unread(tmp_path, kind, monkeypatch):
    from ingest.sources import table
    from ingest.sources.table import Options

    src = tmp_path / "faces.csv"
    if kind == "fifo":
        os.mkfifo(src)
    elif kind == "dev_zero":
        src = "/dev/zero"
    else:
        src.write_text("path,age\n" + "a.jpg,30\n" * 10)
        monkeypatch.setattr(table, "MAX_CSV_BYTES", 98)
    with pytest.raises(DataError) as e:
        csv_table.load_table(str(src), Options(min_face_score=0.0))
    says = "99 bytes, more than the 98" if kind == "large" else "not a regular file"
    assert str(e.value).startswith(f"{src}: {says}") and str(e.value).endswith("pass a metadata CSV, a regular file")
