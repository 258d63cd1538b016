"""ingest.sample writes the real wiki_crop format, with every quirk, and known counts."""

from __future__ import annotations

import collections
import os
import re

import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import SAMPLE_N, run_module
from ingest import sample

PATH_RE = re.compile(r"^(\d\d)/(\d+)_(\d{4,5}-\d\d-\d\d)_(\d{4})\.jpg$")


def test_mat_has_the_real_structure(sample_dir, sample_rows, sample_expected):
    wiki = scipy.io.loadmat(os.path.join(sample_dir, "wiki.mat"))["wiki"]
    assert wiki.shape == (1, 1)
    assert wiki.dtype.names == sample.WIKI_FIELDS
    s = wiki[0, 0]
    for field in sample.WIKI_FIELDS:
        assert s[field].shape == (1, SAMPLE_N), field
    assert s["dob"].dtype == np.int32 and s["photo_taken"].dtype == np.uint16
    for field in ("gender", "face_score", "second_face_score"):
        assert s[field].dtype == np.float64
    for cell in s["full_path"][0]:
        assert cell.shape == (1,) and cell.dtype.kind == "U"
        m = PATH_RE.match(cell[0])
        assert m and m[2].endswith(m[1]), cell[0]       # folder = last two digits of the id
    shapes = collections.Counter(c.shape for c in s["name"][0])
    assert set(shapes) == {(1,), (0,)} and shapes[(0,)] > 0      # some names are empty
    assert all(c.shape == (1, 4) and c.dtype == np.float64 for c in s["face_location"][0])
    assert np.isnan(s["gender"]).sum() >= sample_expected["unknown_gender"]
    cats = collections.Counter(r["category"] for r in sample_rows)
    assert np.isneginf(s["face_score"]).sum() == cats["no_face"]
    assert np.isfinite(s["second_face_score"]).sum() == cats["second_face"]
    assert (s["dob"] == 4077).sum() > 0                   # the real file's "year 11"
    names = [c[0] for c in s["name"][0] if c.size]
    assert max(collections.Counter(names).values()) >= 3  # several photos per person


def test_expected_counts_agree_with_the_rows(sample_rows, sample_expected):
    cats = collections.Counter(r["category"] for r in sample_rows)
    assert [(c["step"], c["removed"]) for c in sample_expected["cleaning"]] == \
        [(step, cats[step]) for step, _ in sample.REMOVED_FRACTIONS]
    assert sample_expected["kept"] == cats["kept"] == sample_expected["cleaning"][-1]["remaining"]
    kept = [r for r in sample_rows if r["category"] == "kept"]
    quirks = collections.Counter(r["quirk"] for r in kept)
    assert sample_expected["skipped"] == {"missing": quirks["missing"], "truncated": quirks["truncated"],
                                          "face_too_small": quirks["tiny"]}
    assert sum(np.isnan(r["gender"]) for r in kept) == sample_expected["unknown_gender"]
    assert {r["age"] for r in kept} >= {1, 100} and all(1 <= r["age"] <= 100 for r in kept)
    assert sample.expected_counts(400)["written"] == 206   # a fixed number, not a seed effect


def test_files_carry_every_quirk_and_the_age(sample_dir, sample_rows):
    modes = {"rgb": "RGB", "grayscale": "L", "cmyk": "CMYK", "palette": "P", "rgba": "RGBA"}
    seen = collections.Counter()
    for r in sample_rows:
        path = os.path.join(sample_dir, r["full_path"])
        if r["quirk"] == "missing":
            assert not os.path.exists(path)
            continue
        if r["quirk"] == "truncated":
            with pytest.raises(OSError, match="(?i)truncated"), Image.open(path) as image:
                image.load()
            seen["truncated"] += 1
            continue
        with Image.open(path) as image:
            image.load()
            if r["quirk"] == "no_face":
                assert image.size == (1, 1)
            elif r["quirk"] in modes:
                assert image.mode == modes[r["quirk"]]
            if r["category"] == "kept":
                rgb = np.asarray(image.convert("RGB"))
                assert sample.age_from_pixels(rgb) == r["age"], r
                seen[r["quirk"]] += 1
    assert all(seen[q] > 0 for q in ("rgb", "grayscale", "cmyk", "palette", "rgba", "tiny", "truncated"))


def test_age_level_round_trip():
    for age in (0, 1, 37, 100):
        flat = np.full((5, 7, 3), sample.age_level(age), np.uint8)
        assert sample.age_from_pixels(flat) == age
    assert sample.age_level(150) == sample.age_level(100) == 220


@pytest.mark.slow
def test_cli_writes_a_sample_and_refuses_tiny_n(tmp_path):
    ok = run_module("ingest.sample", "--out", str(tmp_path / "s"), "--n", "120", "--seed", "3")
    assert ok.returncode == 0, ok.stderr
    assert f"keeps {sample.expected_counts(120)['kept']}" in ok.stdout
    assert scipy.io.loadmat(tmp_path / "s" / "wiki.mat")["wiki"][0, 0]["dob"].shape == (1, 120)
    bad = run_module("ingest.sample", "--out", str(tmp_path / "t"), "--n", "5")
    assert bad.returncode != 0 and "--n must be at least" in bad.stderr


@pytest.mark.slow
def test_face_px_sets_the_size_of_the_face_crops(tmp_path):
    ok = run_module("ingest.sample", "--out", str(tmp_path / "big"), "--n", "120", "--face_px", "150", "160")
    assert ok.returncode == 0, ok.stderr
    sides = []
    for r in sample.build_rows(120, 0):
        path = tmp_path / "big" / r["full_path"]
        if r["quirk"] == "rgb" and path.exists():
            with Image.open(path) as image:
                sides += list(image.size)
    assert sides and min(sides) >= 150 and max(sides) <= 160
    bad = run_module("ingest.sample", "--out", str(tmp_path / "x"), "--n", "120", "--face_px", "50", "20")
    assert bad.returncode != 0 and "--face_px 50 20" in bad.stderr
