"""Group attributes in the records (schema version 3): UTKFace's race field, APPA-REAL's
allcategories race column and a CSV's race column become each record's `race`
(unknown kept as ""), counted per split in the manifest, checked by verify, and shown
by the data set card (python -m records inspect DIR --html) in a real browser."""

from __future__ import annotations

import collections
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import browser
from conftest import read_records, run_module
from ingest.sources import utkface
from records import schema
from records.verify import problems
from reports import card
from test_ingest_sources import _ingest, appa_shards, samples, utk_shards  # noqa: F401  (fixtures)


def _race_counts(out: str) -> dict:
    return {split: collections.Counter(schema.group_name(r[schema.RACE].decode()) for r in recs)
            for split, recs in read_records(out).items()}


def test_utkface_race_field_is_the_race_word_or_unknown():
    assert utkface.parse_race("25_0_2_20170116174525125.jpg.chip.jpg") == "Asian"
    assert utkface.parse_race("sub/61_1_0_20170116174525125.jpg") == "White"
    assert utkface.parse_race("39_1_20170116174525125.jpg.chip.jpg") == ""     # no race field
    assert utkface.parse_race("39_1_7_20170116174525125.jpg.chip.jpg") == ""   # no such code


def test_utkface_races_reach_the_records_and_the_manifest_counts_them_per_split(utk_shards):
    manifest, out = utk_shards
    assert manifest["schema_version"] == schema.SCHEMA_VERSION == 3
    counted = _race_counts(out)
    for split, entry in manifest["splits"].items():
        assert entry["group_counts"]["race"] == dict(counted[split])
    total = sum(counted.values(), collections.Counter())
    assert manifest["group_counts"]["race"] == dict(sorted(total.items()))
    assert set(total) == {*utkface.RACES.values(), schema.GROUP_UNKNOWN}     # the sample has names without race
    for recs in read_records(out).values():
        for rec in recs:
            assert rec[schema.RACE].decode() == utkface.parse_race(rec[schema.KEY].decode())
    assert problems(out) == []


def test_appa_real_race_comes_from_allcategories(appa_shards):
    manifest, out = appa_shards
    races = {split: entry["group_counts"]["race"] for split, entry in manifest["splits"].items()}
    # the sample writes allcategories for train and valid (race "caucasian"), none for test
    assert set(races["train"]) == set(races["val"]) == {"caucasian"}
    assert races["test"] == {schema.GROUP_UNKNOWN: manifest["splits"]["test"]["count"]}
    assert problems(out) == []


@pytest.mark.parametrize("value, label", [(None, ""), (float("nan"), ""), (np.float64("nan"), ""),
                                          ("  East Asian ", "East Asian"), (3, "3"), (2.5, "2.5"),
                                          ("é" * schema.MAX_GROUP_LABEL, "é" * (schema.MAX_GROUP_LABEL // 2))])
def test_a_group_value_becomes_its_stripped_label_and_a_missing_one_is_empty(value, label):
    assert schema.group_label(value) == label


def test_a_csv_race_column_is_kept_as_free_labels_and_an_empty_one_is_unknown(tmp_path):
    src = tmp_path / "faces"
    src.mkdir()
    labels = ["Sámi", "", "East Asian", " Sámi ", "x" * 100]
    with open(src / "faces.csv", "w", encoding="utf-8") as f:
        f.write("path,age,race\n")
        for i in range(60):
            Image.fromarray(np.full((40, 40, 3), 40 + i, np.uint8)).save(src / f"{i}.png")
            f.write(f"{i}.png,{20 + i % 50},{labels[i % len(labels)]}\n")
    manifest = _ingest(str(src / "faces.csv"), str(tmp_path / "shards"))
    assert manifest["group_counts"]["race"] == {"East Asian": 12, "Sámi": 24, schema.GROUP_UNKNOWN: 12,
                                                "x" * schema.MAX_GROUP_LABEL: 12}
    assert problems(str(tmp_path / "shards")) == []


def test_verify_names_an_edited_group_count(utk_shards, tmp_path):
    manifest, out = utk_shards
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    edited = json.loads(json.dumps(manifest))
    races = edited["splits"]["test"]["group_counts"]["race"]
    races["White"] += 1
    with open(os.path.join(copy, "manifest.json"), "w") as f:
        json.dump(edited, f)
    found = problems(copy)
    assert len(found) == 1 and (f"split 'test' group_counts.race does not match its records: White: "
                                f"manifest {races['White']}, counted {races['White'] - 1}") in found[0]


@pytest.mark.slow
def test_the_data_set_card_reads_in_a_browser(utk_shards, tmp_path):
    manifest, out = utk_shards
    copy = str(tmp_path / "shards")
    shutil.copytree(out, copy)
    result = run_module("records", "inspect", copy, "--html")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Wrote {os.path.join(copy, card.CARD_NAME)}" in result.stdout
    assert "race " in result.stdout and "unknown" in result.stdout
    path = os.path.join(copy, card.CARD_NAME)
    browser.check_page(path, card.SECTIONS, str(tmp_path))
    page = open(path, encoding="utf-8").read()
    hist = manifest["age_histogram"]
    bands = [sum(hist[lo:(hi if hi is not None else schema.NUM_AGES - 1) + 1]) for lo, hi in schema.AGE_BANDS]
    assert page.count("<figure>") == sum(min(n, card.SAMPLES_PER_BAND) for n in bands)
    for step in manifest["cleaning"]:
        assert step["step"] in page


# A cleaning rule as long as a source's own can be: with the counts beside it, it must
# wrap inside the page rather than push them behind a scrollbar.
LONG_RULE = ("the file name does not parse as age_gender_race_date.jpg.chip.jpg (UTKFace's naming: age "
             "0-116, gender 0 or 1, race 0-4, then a 17-digit timestamp), e.g. "
             "crop_part1/61_1_20170109142408075.jpg.chip.jpg, "
             "and_a_long_token_with_no_place_to_break_it_at_all_between_its_words_or_digits_0123456789")


@pytest.mark.slow
def test_the_data_set_card_fits_a_laptop_window_with_a_long_cleaning_rule(utk_shards, tmp_path):
    manifest, out = utk_shards
    copy = str(tmp_path / "shards")
    shutil.copytree(out, copy)
    edited = json.loads(open(os.path.join(copy, "manifest.json")).read())
    edited["cleaning"][0]["rule"] = LONG_RULE
    with open(os.path.join(copy, "manifest.json"), "w") as f:
        json.dump(edited, f)
    path = card.write_card(copy)
    assert LONG_RULE[:40] in open(path, encoding="utf-8").read()
    found = browser.check_fits(path, str(tmp_path))
    assert len(found["captions"]) == open(path, encoding="utf-8").read().count("<figcaption>") > 0
