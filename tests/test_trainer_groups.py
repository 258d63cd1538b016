"""Where it fails and how sure it is: the served uncertainty (model.uncertainty), the
intervals' coverage and the temperature fit (trainer.calibration), and report.json's
group and threshold numbers recomputed from predictions.csv (trainer.groups)."""

from __future__ import annotations

import csv
import json
import os

import keras
import numpy as np
import pandas as pd
import pytest

import model
from ingest import sample_sources
from model import uncertainty
from model.load import load_run_model
from records import schema
from storage.run_dir import RunDir
from trainer import calibration, config, evaluate, groups, loop, report_html
from trainer.config import ConfigError

import browser
from conftest import run_module

UTK_N = 700


def test_spread_and_interval_of_hand_made_distributions():
    p = np.zeros((3, 101), np.float32)
    p[0, 30] = 1.0                      # certain: no spread, the interval is the age itself
    p[1, 10:20] = 0.1                   # uniform on 10..19
    p[2, [20, 40]] = 0.5                # two ages
    np.testing.assert_allclose(uncertainty.age_sd(p), [0.0, np.sqrt(8.25), 10.0], atol=1e-4)
    low, high = (np.asarray(v) for v in uncertainty.age_interval(p, 0.9))
    assert low.tolist() == [30, 10, 20] and high.tolist() == [30, 19, 40]
    low, high = (np.asarray(v) for v in uncertainty.age_interval(p, 0.5))
    assert low.tolist() == [30, 12, 20] and high.tolist() == [30, 17, 40]   # cdf 0.3 >= 0.25, 0.8 >= 0.75


def _normal_rows(centre: np.ndarray, sd: np.ndarray) -> np.ndarray:
    ages = np.arange(101)
    p = np.exp(-0.5 * ((ages[None] - centre[:, None]) / sd[:, None]) ** 2)
    return p / p.sum(-1, keepdims=True)


def _draw(probs: np.ndarray, rng) -> np.ndarray:
    cdf = probs.cumsum(-1)
    return np.minimum((cdf < rng.random((len(probs), 1))).sum(-1), 100)


def test_intervals_cover_their_mass_when_the_distribution_is_right():
    rng = np.random.default_rng(0)
    n = 20000
    probs = _normal_rows(rng.uniform(15, 75, n), rng.uniform(2, 9, n))
    true_age = _draw(probs, rng)                  # each true age drawn from its face's distribution
    measured = calibration.coverages(true_age, probs)
    ages = np.arange(101)
    for mass in (0.5, 0.9):
        low, high = (np.asarray(v)[:, None] for v in uncertainty.age_interval(probs.astype(np.float32), mass))
        held = (probs * ((ages >= low) & (ages <= high))).sum(-1)   # each interval's own mass
        # Whole-age ends round an interval up: it holds at least `mass`, and the faces'
        # true ages fall in it as often as that mass says (3 standard errors).
        assert held.min() >= mass - 1e-5 and held.mean() < mass + 0.08
        entry = measured[calibration.mass_name(mass)]
        assert entry["claimed"] == pytest.approx(held.mean(), abs=1e-9)
        assert entry["coverage"] == pytest.approx(held.mean(), abs=0.011)
    assert not calibration.is_off(measured)


def test_an_overconfident_model_is_off_and_its_fitted_temperature_fixes_it():
    rng = np.random.default_rng(1)
    n = 6000
    centre, sd = rng.uniform(15, 75, n), rng.uniform(4, 8, n)
    true_age = _draw(_normal_rows(centre, sd), rng)
    told = _normal_rows(centre, sd / 2.5)          # says it is 2.5x surer than it is
    assert calibration.is_off(calibration.coverages(true_age, told))
    t = calibration.fit_temperature(true_age, told)
    assert 4.0 < t < 8.5                            # a Gaussian's variance scales with T: ~2.5**2
    after = calibration.coverages(true_age, calibration.rescale(told, t))
    assert not calibration.is_off(after)
    assert abs(after["90%"]["coverage"] - 0.9) < 0.04


def test_the_temperature_layer_acts_on_logits_and_survives_save_and_load(tmp_path):
    loop.set_seeds(3)
    net = model.build_age_model(None, variant="tiny")
    pixels = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    plain = np.asarray(net(pixels, training=False), np.float64)
    hot = uncertainty.with_temperature(net, 0.5)
    np.testing.assert_allclose(np.asarray(hot(pixels, training=False)), calibration.rescale(plain, 0.5), atol=1e-5)
    path = str(tmp_path / "m.keras")
    hot.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert uncertainty.model_temperature(loaded) == pytest.approx(0.5)
    again = uncertainty.with_temperature(loaded, 3.0)      # composes: one layer, T multiplied
    assert again is loaded and uncertainty.model_temperature(again) == pytest.approx(1.5)
    np.testing.assert_allclose(np.asarray(again(pixels, training=False)), calibration.rescale(plain, 1.5), atol=1e-5)


def test_thresholds_and_challenge_age_are_checked():
    with pytest.raises(ConfigError, match="--age_threshold=0: must be an age in 1..100"):
        config.check_thresholds((0,), None)
    with pytest.raises(ConfigError, match=r"--challenge_age=18: must be above every --age_threshold \(21\)"):
        config.check_thresholds((16, 21), 18)
    with pytest.raises(ConfigError, match="--challenge_age needs an --age_threshold"):
        config.check_thresholds((), 25)
    config.check_thresholds((18, 21), 25)


def test_bands_gap_and_few_flags():
    true_age = np.array([5] * 40 + [15] * 10 + [30] * 40, np.float64)
    estimate = true_age + np.array([1.0] * 40 + [9.0] * 10 + [-3.0] * 40)
    out = groups.group_report(true_age, estimate, {"gender": np.array(["male"] * 90, dtype=object),
                                                   "race": np.array(["unknown"] * 90, dtype=object)})
    assert list(out) == ["gender", "age_band", "gender_x_age_band"]      # race: no face labelled
    bands = out["age_band"]["groups"]
    assert list(bands) == ["0-12", "13-17", "25-39"]
    assert bands["13-17"]["few"] and not bands["0-12"]["few"]
    assert bands["25-39"]["bias"]["value"] == pytest.approx(-3.0) and bands["25-39"]["mae"]["ci"] == [3.0, 3.0]
    assert out["age_band"]["gap"] == {"mae": pytest.approx(2.0), "best": "0-12", "worst": "25-39"}   # 13-17 is few


@pytest.fixture(scope="module")
def utk_run(tmp_path_factory) -> str:
    """An untrained tiny model's run on a synthetic UTKFace sample (race labels, unknowns)."""
    root = tmp_path_factory.mktemp("utk")
    sample_sources.generate("utkface", str(root / "UTKFace"), UTK_N)
    shards = str(root / "shards")
    result = run_module("ingest", "--src", str(root / "UTKFace"), "--out", shards, "--image_size", "32")
    assert result.returncode == 0, result.stderr[-3000:]
    loop.set_seeds(5)
    run = RunDir(str(root / "run"))
    os.makedirs(run.path)
    model.build_age_model(None, variant="tiny").save(run.best_model)
    run.write_info({"records": shards})
    return run.path


@pytest.mark.slow
def test_group_and_threshold_numbers_are_recomputed_from_predictions_csv(utk_run):
    report = evaluate.evaluate_run(utk_run, batch_size=64, quiet=True, thresholds=(18, 21), challenge_age=25)
    assert json.load(open(os.path.join(utk_run, "report.json")))["groups"] == report["groups"]
    rows = pd.read_csv(os.path.join(utk_run, "predictions.csv"), keep_default_na=False)
    assert len(rows) == report["count"]
    true_age, estimate = rows["true_age"].to_numpy(float), rows["expected_age"].to_numpy(float)
    error, signed = np.abs(estimate - true_age), estimate - true_age
    bands = pd.cut(rows["true_age"], [-1, 12, 17, 24, 39, 59, 200],
                   labels=["0-12", "13-17", "18-24", "25-39", "40-59", "60+"]).astype(str)
    columns = {"gender": rows["gender"], "age_band": bands, "race": rows["race"],
               "gender_x_age_band": rows["gender"] + " x " + bands}
    assert set(rows["race"]) == {"White", "Black", "Asian", "Indian", "Others", "unknown"}
    assert list(report["groups"]) == list(columns)
    for attribute, labels in columns.items():
        reported = report["groups"][attribute]["groups"]
        assert set(reported) == set(labels)
        for name, g in reported.items():
            mask = (labels == name).to_numpy()
            assert g["count"] == mask.sum() and g["few"] == (mask.sum() < groups.MIN_FACES)
            assert g["mae"]["value"] == pytest.approx(error[mask].mean(), abs=1e-9)
            assert g["bias"]["value"] == pytest.approx(signed[mask].mean(), abs=1e-9)
            assert g["cs5"]["value"] == pytest.approx((error[mask] <= 5).mean(), abs=1e-9)
            lo, hi = g["mae"]["ci"]
            assert lo <= g["mae"]["value"] <= hi
            # the interval is the seeded bootstrap of exactly these faces
            again = groups.mean_with_interval(error[mask], f"{attribute}/{name}/mae")
            assert again["ci"] == pytest.approx(g["mae"]["ci"], abs=1e-9)
    for entry in report["thresholds"]:
        t = entry["age"]
        minor, adult = true_age < t, true_age >= t
        assert (entry["minors"], entry["adults"]) == (minor.sum(), adult.sum())
        assert entry["false_adult"]["value"] == pytest.approx((estimate[minor] >= t).mean())
        assert entry["false_minor"]["value"] == pytest.approx((estimate[adult] < t).mean())
        assert entry["passed_challenge"]["value"] == pytest.approx((estimate[minor] >= 25).mean())
    # each face's interval and spread are its served distribution's
    assert (rows["age_low"] <= rows["age_high"]).all() and (rows["age_sd"] > 0).all()
    inside = (rows["true_age"] >= rows["age_low"]) & (rows["true_age"] <= rows["age_high"])
    assert report["calibration"]["coverage"]["90%"]["coverage"] == pytest.approx(inside.mean())


@pytest.mark.slow
def test_calibrate_stores_a_temperature_that_widens_an_overconfident_model(utk_run, tmp_path):
    """The whole path (val split, fit, best.keras rewritten, report before/after); whether
    the fit fixes coverage is test_an_overconfident_model_is_off_and_its_fitted_temperature_fixes_it
    (an untrained model's distributions barely depend on the face)."""
    run = RunDir(utk_run)
    sharp = uncertainty.with_temperature(load_run_model(run), 0.15)   # far surer than it is
    sharp.save(run.best_model)
    off = evaluate.evaluate_run(utk_run, batch_size=64, quiet=True)["calibration"]
    assert off["off"] and "fit" not in off
    report = evaluate.evaluate_run(utk_run, batch_size=64, quiet=True, calibrate=True)
    section = report["calibration"]
    assert section["fit"]["applied"] and section["fit"]["split"] == "val"
    for mass, entry in off["coverage"].items():                                   # T undone = before
        assert section["before"]["coverage"][mass] == pytest.approx(entry, abs=1e-6)
    assert section["fit"]["temperature"] > 1.5                 # widens what was sharpened
    assert section["coverage"]["90%"]["claimed"] != pytest.approx(off["coverage"]["90%"]["claimed"], abs=1e-4)
    stored = uncertainty.model_temperature(load_run_model(run))
    assert stored == pytest.approx(0.15 * section["fit"]["temperature"]) and stored > 0.3


@pytest.mark.slow
def test_report_html_reads_in_a_browser(utk_run, tmp_path):
    evaluate.evaluate_run(utk_run, batch_size=64, quiet=True, thresholds=(18,), challenge_age=25)
    path = os.path.join(utk_run, "report.html")
    browser.check_page(path, report_html.SECTIONS, str(tmp_path))
    page = open(path, encoding="utf-8").read()
    assert page.count("<figure>") == report_html.WORST_FACES
    assert "minors passing challenge 25" in page
    evaluate.evaluate_run(utk_run, batch_size=64, quiet=True, thumbnails=False)
    page = open(path, encoding="utf-8").read()
    assert "<figure>" not in page and "Thumbnails left out" in page


@pytest.mark.slow
def test_report_html_fits_a_laptop_window_and_its_captions_do_not_overlap(utk_run, tmp_path):
    evaluate.evaluate_run(utk_run, batch_size=64, quiet=True)
    browser.check_fits(os.path.join(utk_run, "report.html"), str(tmp_path))
    # The longest captions a report shows: a file name with no place to break it.
    report = json.load(open(os.path.join(utk_run, "report.json")))
    worst = report_html.WorstFaces()
    n = report_html.WORST_FACES
    keys = [f"crop_part1/{100 - i}_1_0_2017010914240807{i:02d}.jpg.chip.jpg".encode() for i in range(n)]
    worst.add(np.full((n, 32, 32, 3), 120, np.uint8), keys, np.arange(n) + 1, np.full(n, 99.5))
    path = report_html.write_report(str(tmp_path / "long.html"), report, np.arange(n) + 1, np.full(n, 99.5), worst)
    found = browser.check_fits(path, str(tmp_path))
    assert len(found["captions"]) == n
