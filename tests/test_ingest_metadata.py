"""wiki.mat loading (vectorized datenums), the cleaning steps and the split."""

from __future__ import annotations

import os
import re
from datetime import date

import numpy as np
import pytest

from errors import DataError
from ingest import pipeline, sample, split
from ingest.sources import imdb_wiki as matfile


@pytest.fixture(scope="module")
def frame(sample_dir):
    return matfile.load(os.path.join(sample_dir, "wiki.mat"))


def _clean(src: str, **flags):
    """(kept, report) of the .mat in `src` through the source seam with `flags`."""
    _, _, kept, report = pipeline.load_and_clean(pipeline.Config(src=src, **flags))
    return kept, report


def test_birth_year_agrees_with_the_file_name(frame):
    valid = frame[frame["dob_valid"]]
    assert len(valid) == len(frame) - sample.expected_counts(len(frame))["cleaning"][0]["removed"]
    for path, dob, year, photo_taken in zip(valid["full_path"], valid["dob"], valid["birth_year"],
                                           valid["photo_taken"]):
        born, taken = re.search(r"_(\d{4}-\d\d-\d\d)_(\d{4})\.jpg$", path).groups()
        assert date.fromordinal(int(dob) - 366).isoformat() == born
        assert int(born[:4]) == year and int(taken) == photo_taken


def test_birth_years_match_fromordinal_and_flag_invalid_datenums():
    dob = np.array([367, 368, 4077, 693962, 730486, 730545, 739000, matfile.MAX_DATENUM])
    years, valid = matfile.birth_years(dob)
    assert valid.all()
    assert years.tolist() == [date.fromordinal(int(d) - 366).year for d in dob]
    bad = np.array([-5, 0, 1, 366, matfile.MAX_DATENUM + 1, 2**31 - 1])
    years, valid = matfile.birth_years(bad)
    assert not valid.any() and (years == 0).all()


def test_loaded_columns(frame, sample_rows):
    assert len(frame) == len(sample_rows)
    assert frame["full_path"].tolist() == [r["full_path"] for r in sample_rows]
    assert frame["name"].tolist() == [r["name"] for r in sample_rows]   # empty cells -> ""
    kept = [(i, r) for i, r in enumerate(sample_rows) if r["category"] == "kept"]
    assert all(frame["age"][i] == r["age"] for i, r in kept)


def test_find_mat_errors_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"--src .*nope: no such directory.*ingest.sample"):
        matfile.find_mat(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="holds neither wiki.mat nor imdb.mat"):
        matfile.find_mat(str(tmp_path))
    sample.write_mat(str(tmp_path / "imdb.mat"), sample.build_rows(100)[:10], key="imdb")
    path, key = matfile.find_mat(str(tmp_path))
    assert key == "imdb" and len(matfile.load(path, key)) == 10


def test_default_cleaning_counts(sample_dir, sample_expected, sample_rows):
    kept, report = _clean(sample_dir)
    assert [{k: c[k] for k in ("step", "removed", "remaining")} for c in report] == \
        sample_expected["cleaning"]
    assert len(kept) == sample_expected["kept"]
    assert kept["full_path"].tolist() == [r["full_path"] for r in sample_rows if r["category"] == "kept"]


def test_require_gender_and_thresholds_are_applied(sample_dir, sample_expected):
    kept, report = _clean(sample_dir, require_gender=True)
    assert report[-1]["step"] == "unknown_gender"
    assert report[-1]["removed"] == sample_expected["unknown_gender"]
    assert len(kept) == sample_expected["kept"] - sample_expected["unknown_gender"]
    low = dict((c["step"], c["removed"]) for c in sample_expected["cleaning"])["low_face_score"]
    kept, report = _clean(sample_dir, min_face_score=-5)
    assert report[3] == {"step": "low_face_score", "rule": "face_score < -5", "removed": 0,
                         "remaining": report[2]["remaining"]}
    assert len(kept) == sample_expected["kept"] + low
    kept, _ = _clean(sample_dir, min_age=30, max_age=40)
    assert kept["age"].between(30, 40).all() and len(kept) > 0


def test_random_split_sizes_and_determinism(sample_dir):
    kept, _ = _clean(sample_dir)
    a = split.assign(kept, seed=7)
    n = len(kept)
    n_test = round(0.3 * n)
    assert (a == "test").sum() == n_test and (a == "val").sum() == round(0.1 * (n - n_test))
    assert (a == "train").sum() == n - n_test - round(0.1 * (n - n_test))
    assert (split.assign(kept, seed=7) == a).all()
    assert not (split.assign(kept, seed=8) == a).all()


def test_identity_split_is_disjoint_by_person(sample_dir):
    kept, _ = _clean(sample_dir)
    a = split.assign(kept, by="identity", seed=1)
    assert (split.assign(kept, by="identity", seed=1) == a).all()
    names = kept["name"].to_numpy()
    for person in set(names) - {""}:
        assert len(set(a[names == person])) == 1, person
    assert (names == "").sum() > 0            # nameless rows: each its own group
    n_test = round(0.3 * len(kept))
    assert n_test <= (a == "test").sum() < n_test + 15
    assert (a == "val").sum() > 0 and (a == "train").sum() > 0
