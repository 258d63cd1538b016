"""Where it fails and how sure it is: the served uncertainty (model.uncertainty), the
intervals' coverage and their conformal calibration (trainer.calibration), report.json's
group and threshold numbers recomputed from predictions.csv (reports.groups), and the
age-assurance rows and the challenge-age chooser (trainer.assurance)."""

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
from reports import groups, report_page
from trainer import assurance, calibration, config, evaluate, loop
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


def _miscalibrated(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(true ages, distributions) of a model wrong in a different way per age: 1.7x too
    sure for children and teenagers, 1.7x too unsure over 40, and pulled towards 35 (the
    young estimated older, the old younger), as real age models are."""
    true_age = rng.integers(1, 96, n)
    centre = np.clip(true_age + 0.08 * (35 - true_age) + rng.normal(0, 1, n) * (1 + 0.12 * true_age), 0, 100)
    honest = 1 + 0.12 * true_age
    sd = np.where(true_age < 18, honest / 1.4, np.where(true_age >= 40, honest * 1.4, honest))
    return true_age, _normal_rows(centre, sd)


def _served(probs: np.ndarray, per_age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The interval a threshold per age gives, written out: the first and last age whose
    |age - estimate| / max(sd, SD_FLOOR) is within its threshold."""
    ages = np.arange(101)
    est = (probs * ages).sum(-1)
    sd = np.maximum(np.sqrt((probs * (ages - est[:, None]) ** 2).sum(-1)), uncertainty.SD_FLOOR)
    inside = np.abs(ages[None] - est[:, None]) / sd[:, None] <= per_age[None] * (1 + 1e-5)
    assert inside.any(-1).all()
    return inside.argmax(-1), 100 - inside[:, ::-1].argmax(-1)


def test_conformal_calibration_holds_in_every_band_of_the_true_age():
    rng = np.random.default_rng(1)
    val_age, val_probs = _miscalibrated(40000, rng)
    test_age, test_probs = _miscalibrated(40000, rng)
    record = calibration.fit(val_age, val_probs)
    assert record["needed_faces"] == {"50%": 1, "80%": 4, "90%": 9}
    assert all(all(b["guaranteed"].values()) for b in record["bands"].values())
    layer = uncertainty.IntervalCalibration(record["masses"], record["band_starts"], record["thresholds"])
    after = calibration.coverages(test_age, test_probs, layer=layer)
    for entry in after.values():
        assert abs(entry["coverage"] - entry["nominal"]) < 0.02            # within 2 points overall
    assert not calibration.is_off(after, calibrated=True)
    columns = calibration.coverage_columns(test_age, test_probs, {"gender": np.full(len(test_age), "male", object)})
    by_band = calibration.group_coverage(test_age, test_probs, columns, layer)["age_band"]
    assert set(by_band) == {"0-12", "13-17", "18-24", "25-39", "40-59", "60+"}
    worst_before = 0.0
    for name, g in by_band.items():      # label-conditional: each band of the true age holds on its own
        assert g["count"] > 1000
        for m in ("50%", "80%", "90%"):
            nominal = int(m[:-1]) / 100
            assert abs(g["coverage"][m] - nominal) < 0.03, (name, m, g["coverage"])
            worst_before = max(worst_before, abs(g["coverage_before"][m] - nominal))
    assert worst_before > 0.1               # the central intervals were far off in some band
    assert by_band["0-12"]["width_90"] < by_band["60+"]["width_90"]    # narrow where it can be


def test_bench_calibration_tells_the_served_method_from_the_ones_that_miss_a_band():
    from bench import calibration as bench_calibration
    rng = np.random.default_rng(7)
    cal_age, cal_probs = _miscalibrated(20000, rng)
    age, probs = _miscalibrated(20000, rng)
    served = bench_calibration.deviations("true-age bands", cal_age, cal_probs, age, probs)
    assert served.shape == (len(calibration.band_names()) + 1, len(calibration.MASSES))
    assert np.abs(served).max() < 0.045        # a span adds a little where a neighbour's threshold is larger
    record = calibration.fit(cal_age, cal_probs)        # the served rows are the layer's intervals
    layer = uncertainty.IntervalCalibration(record["masses"], record["band_starts"], record["thresholds"])
    low, high = calibration.intervals(probs, 0.5, layer)
    assert served[-1, 0] == pytest.approx(np.mean((age >= low) & (age <= high)) - 0.5)
    pooled = bench_calibration.deviations("one threshold", cal_age, cal_probs, age, probs)
    assert abs(pooled[-1, 0]) < 0.02 and np.abs(pooled[:-1]).max() > 0.1   # right overall, wrong per band


def test_a_band_with_too_few_val_faces_takes_the_pooled_threshold_and_says_so():
    rng = np.random.default_rng(4)
    val_age, val_probs = _miscalibrated(3000, rng)
    child = val_age < 13
    keep = ~child | (np.cumsum(child) <= 5)          # 5 faces under 13
    record = calibration.fit(val_age[keep], val_probs[keep])
    band = record["bands"]["0-12"]
    assert band["faces"] == 5 and band["guaranteed"] == {"50%": True, "80%": True, "90%": False}
    face_scores = calibration.scores(val_age[keep], val_probs[keep])
    pooled = calibration.conformal_threshold(face_scores, 0.9)
    own = calibration.conformal_threshold(face_scores[val_age[keep] < 13], 0.8)     # the largest of the 5
    assert record["thresholds"][0][1] == pytest.approx(own) and own > pooled
    assert record["thresholds"][0][2] == pytest.approx(own)       # nested: never narrower than its 80%
    assert band["scatter"]["50%"] == pytest.approx(np.sqrt(3 * 3 / (36 * 7)))   # Beta(3, 3)
    with pytest.raises(calibration.CalibrationError, match="has 8 faces: too few to calibrate the 90%"):
        calibration.fit(val_age[:8], val_probs[:8])


def test_the_calibration_layer_serves_its_thresholds_and_survives_safe_mode_load(tmp_path):
    loop.set_seeds(3)
    net = model.build_age_model(None, variant="tiny")
    pixels = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    plain = np.asarray(net(pixels, training=False), np.float32)
    bands = len(calibration.BAND_STARTS) + 1
    per_band = [[0.5 + 0.3 * b, 1.0 + 0.3 * b, 1.5 + 0.3 * b] for b in range(bands)]
    wide = uncertainty.with_interval_calibration(net, calibration.MASSES, calibration.BAND_STARTS, per_band)
    np.testing.assert_array_equal(np.asarray(wide(pixels, training=False)), plain)   # the distribution unchanged
    path = str(tmp_path / "m.keras")
    wide.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    served = model.age_outputs(loaded, False, False)(pixels)
    age_band = calibration.true_bands(np.arange(101))
    low, high = _served(plain.astype(np.float64), np.array([per_band[b][2] for b in age_band]))
    np.testing.assert_array_equal(served["age_low"], low)
    np.testing.assert_array_equal(served["age_high"], high)
    narrow = [[0.2, 0.2, 0.2]] * bands
    again = uncertainty.with_interval_calibration(loaded, calibration.MASSES, calibration.BAND_STARTS, narrow)
    assert again is loaded                                          # one layer, its thresholds replaced
    layer = uncertainty.interval_calibration(again)
    low, high = (np.asarray(v) for v in layer.interval(plain, 0.5))
    np.testing.assert_array_equal(np.stack([low, high]), _served(plain.astype(np.float64), np.full(101, 0.2)))
    sure = np.zeros((2, 101), np.float32)
    sure[0, 30] = 1.0                    # inside: its own age, 0 spreads away
    sure[1, [30, 31]] = 0.5              # estimate 30.5, spread 0.5: both ages 1 spread away, none inside
    low, high = (np.asarray(v) for v in layer.interval(sure, 0.5))
    assert low.tolist() == [30, 30] and high.tolist() == [30, 30]   # the second: the age nearest its estimate
    other = uncertainty.with_interval_calibration(loaded, (0.9,), (), [[1.0]])   # other masses: rebuilt
    assert other is not loaded and [l.name for l in other.layers].count(uncertainty.CALIBRATION_LAYER) == 1
    assert uncertainty.interval_calibration(other).masses == (0.9,)
    low, high = _served(plain.astype(np.float64), np.full(101, 1.0))
    np.testing.assert_array_equal(model.age_outputs(other, False, False)(pixels)["age_high"], high)


def test_a_model_calibrated_by_the_earlier_method_asks_to_be_calibrated_again(tmp_path):
    import io
    import zipfile

    import h5py
    net = uncertainty.with_interval_calibration(model.build_age_model(None, variant="tiny"), (0.9,), (), [[1.0]])
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    net.save(str(tmp_path / "m.keras"))
    with zipfile.ZipFile(tmp_path / "m.keras") as src, zipfile.ZipFile(run.best_model, "w") as dst:
        for item in src.infolist():     # the layer as the quantile-level method saved it: config and weight
            data = src.read(item.filename)
            if item.filename == "config.json":
                data = data.replace(b'"thresholds": [[1.0]]', b'"levels": [[[0.05, 0.05]]]')
                assert b'"levels"' in data
            if item.filename.endswith(".weights.h5"):
                buffer = io.BytesIO(data)
                with h5py.File(buffer, "r+") as weights:
                    del weights["layers/interval_calibration/vars/0"]
                    weights["layers/interval_calibration/vars/0"] = np.full((1, 1, 2), 0.05, np.float32)
                data = buffer.getvalue()
            dst.writestr(item, data)
    with pytest.raises(Exception, match="calibrated by an earlier method; calibrate them again with "
                                        rf"`python -m trainer.evaluate --model_dir {run.path} --calibrate`"):
        load_run_model(run)
    stale = load_run_model(run, recalibrating=True)          # --calibrate loads it, to replace it
    fresh = uncertainty.with_interval_calibration(stale, (0.9,), (), [[1.5]])
    layer = uncertainty.interval_calibration(fresh)
    assert fresh is not stale and not layer.stale and layer.thresholds.numpy().tolist() == [[1.5]]


def test_thresholds_and_challenge_age_are_checked():
    with pytest.raises(ConfigError, match="--age_threshold=0: must be an age in 1..100"):
        config.check_thresholds((0,), None)
    with pytest.raises(ConfigError, match=r"--challenge_age=18: must be above every --age_threshold \(21\)"):
        config.check_thresholds((16, 21), 18)
    with pytest.raises(ConfigError, match="--challenge_age needs an --age_threshold"):
        config.check_thresholds((), 25)
    config.check_thresholds((18, 21), 25)
    with pytest.raises(ConfigError, match=r"--max_false_adult=1.5: must be a share in \[0, 1\)"):
        config.check_evaluate(64, (18,), None, 1.5)
    with pytest.raises(ConfigError, match="--calibrate with several --records: calibrate on one data set"):
        config.check_evaluate(64, (18,), None, None, ("a", "b"), calibrate=True)
    with pytest.raises(ConfigError, match="--records names a data set twice"):
        config.check_evaluate(64, (18,), None, None, ("a", "a"))
    config.check_evaluate(64, (18,), 25, 0.05, ("a", "b"))


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


def test_the_challenge_age_chooser_picks_the_smallest_age_every_group_keeps_under_the_rate():
    # 100 minors per gender (all 16); women estimated 10..29 evenly, men 15..34 evenly;
    # 20 unknown-gender minors (under MIN_FACES: not checked) all estimated 50.
    est_f, est_m = np.repeat(np.arange(10, 30), 5), np.repeat(np.arange(15, 35), 5)
    estimate = np.concatenate([est_f, est_m, np.full(20, 50.0), np.full(50, 40.0)])
    true_age = np.concatenate([np.full(220, 16.0), np.full(50, 40.0)])
    gender = np.array(["female"] * 100 + ["male"] * 100 + ["unknown"] * 20 + ["male"] * 50, dtype=object)
    attributes = {"gender": gender, "race": np.full(270, "unknown", dtype=object)}
    # share of minors at or over C: men 5% first at C = 34 (15..34: 34 holds 5 of 100);
    # women reach 0 at 30; all: (5 + 20) / 220 = 11% at 34, so "all" needs C > 50.
    pick = assurance.choose_challenge_age(true_age, estimate, attributes, 18, 0.05)
    assert pick["challenge_age"] == 51 and pick["groups_checked"] == ["all/all", "gender/female", "gender/male"]
    assert pick["val_rates"]["gender/male"] == 0.0 and pick["val_minors"] == 220
    keep = gender != "unknown"
    pick = assurance.choose_challenge_age(true_age[keep], estimate[keep], {"gender": gender[keep]}, 18, 0.05)
    assert pick["challenge_age"] == 34                    # men: 5 of 100 at 34 = 5%, at 33: 10%
    assert pick["val_rates"]["gender/male"] == pytest.approx(0.05)
    assert pick["val_rates"]["all/all"] == pytest.approx(0.025)
    none = assurance.choose_challenge_age(true_age, np.full(270, 100.0), attributes, 18, 0.0)
    assert none["challenge_age"] is None
    rows = assurance.assurance_section(true_age[keep], estimate[keep], {"gender": gender[keep]}, (18,), 25,
                                       {18: pick})
    chosen = rows["chosen"][0]["rows"]
    assert [(r["attribute"], r["group"]) for r in chosen] == [("all", "all"), ("gender", "female"), ("gender", "male")]
    assert chosen[2]["passed_challenge"]["value"] == pytest.approx(0.05)
    gate = rows["gates"][0]["rows"]
    assert gate[1]["false_adult"]["value"] == pytest.approx(0.6)                  # women 18..29: 60 of 100
    assert gate[1]["passed_challenge"]["value"] == pytest.approx(0.25)            # 25..29
    assert gate[1]["teens_challenged"]["value"] == pytest.approx(0.75) and gate[1]["teens_challenged"]["count"] == 100


def test_bootstrap_intervals_are_scipys_bca_seeded_per_group():
    from scipy import stats

    values = np.random.default_rng(3).exponential(2.0, 200)
    got = groups.mean_with_interval(values, "some/group")
    want = stats.bootstrap((values,), np.mean, n_resamples=groups.BOOTSTRAP_SAMPLES, method="BCa",
                           random_state=groups._rng("some/group", groups.SEED)).confidence_interval
    assert got["ci"] == pytest.approx([want.low, want.high], abs=1e-12)
    assert got == groups.mean_with_interval(values, "some/group")                 # seeded: the same again
    assert got["ci"] != groups.mean_with_interval(values, "other/group")["ci"]   # a stream per group
    one = groups.mean_with_interval(np.array([0.0] * 39 + [1.0]), "rare")         # one event in 40
    assert one["ci"][0] == 0.0 and 0.05 < one["ci"][1] < 0.15           # the exact binomial: 0.13
    assert groups.mean_with_interval(np.array([4.0]), "single")["ci"] == [4.0, 4.0]


def test_age_mix_says_when_a_gap_is_the_groups_ages():
    # Group A: all children (error 1); group B: half children (error 1), half adults (error 5).
    true_age = np.array([5.0] * 60 + [5.0] * 30 + [30.0] * 30)
    estimate = true_age + np.array([1.0] * 90 + [5.0] * 30)
    labels = np.array(["A"] * 60 + ["B"] * 60, dtype=object)
    out = groups.group_report(true_age, estimate, {"gender": np.full(120, "male", object), "race": labels})
    mix = out["race"]["age_mix"]
    assert out["race"]["gap"]["mae"] == pytest.approx(2.0)                       # B 3.0 vs A 1.0
    assert mix["differ"] and mix["max_distance"] == pytest.approx(0.25)
    assert mix["band_shares"]["A"]["0-12"] == 1.0 and mix["band_shares"]["B"]["25-39"] == 0.5
    assert mix["mae_at_equal_bands"]["A"] == pytest.approx(1.0)                   # only the band it has
    assert mix["gap_at_equal_bands"]["mae"] == pytest.approx(0.75 * 1 + 0.25 * 5 - 1.0)
    assert out["gender"]["age_mix"] is None                                        # one group


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
    for gate in report["age_assurance"]["gates"]:
        minor, teen = true_age < gate["threshold"], (true_age >= 13) & (true_age <= 17)
        for row in gate["rows"]:
            mask = np.ones(len(rows), bool) if row["attribute"] == "all" else (rows[row["attribute"]] == row["group"]).to_numpy()
            assert row["minors"] == (mask & minor).sum()
            assert row["false_adult"]["value"] == pytest.approx((estimate[mask & minor] >= gate["threshold"]).mean())
            assert row["passed_challenge"]["value"] == pytest.approx((estimate[mask & minor] >= 25).mean())
            assert row["teens_challenged"]["value"] == pytest.approx((estimate[mask & teen] < 25).mean())
    # each face's interval and spread are its served distribution's
    assert (rows["age_low"] <= rows["age_high"]).all() and (rows["age_sd"] > 0).all()
    inside = (rows["true_age"] >= rows["age_low"]) & (rows["true_age"] <= rows["age_high"])
    assert report["calibration"]["coverage"]["90%"]["coverage"] == pytest.approx(inside.mean())


@pytest.mark.slow
def test_calibrate_stores_the_conformal_thresholds_in_best_keras_and_run_json(utk_run):
    """The whole path: val split, fit, best.keras rewritten (safe-mode loadable), run.json,
    the served intervals (predictions.csv) the calibrated ones, the report before/after;
    on the val faces themselves each band of the true age with its own threshold covers
    at least nominal."""
    run = RunDir(utk_run)
    report = evaluate.evaluate_run(utk_run, batch_size=64, quiet=True, calibrate=True, max_false_adult=0.1)
    section = report["calibration"]
    assert section["calibrated"] and section["fit"]["split"] == "val" and "before" in section
    record = run.read_info()[calibration.RUN_KEY]
    assert record == section["fit"] and record["method"] == calibration.METHOD
    net = load_run_model(run)          # safe mode
    layer = uncertainty.interval_calibration(net)
    np.testing.assert_allclose(layer.thresholds.numpy(), record["thresholds"], rtol=1e-6)
    val = calibration.SplitFaces(net, run.read_info()["records"], "val", 64, "none")
    assert record["faces"] == len(val.true_age) > 9
    band = calibration.true_bands(val.true_age)
    names = calibration.band_names()
    for i, name in enumerate(names):
        mine = band == i
        assert record["bands"][name]["faces"] == mine.sum()
        for mass in calibration.MASSES:
            if record["bands"][name]["guaranteed"][calibration.mass_name(mass)]:
                low, high = calibration.intervals(val.probs[mine], mass, layer)
                t = val.true_age[mine]
                assert np.mean((t >= low) & (t <= high)) >= mass
    rows = pd.read_csv(os.path.join(utk_run, "predictions.csv"), keep_default_na=False)
    inside = (rows["true_age"] >= rows["age_low"]) & (rows["true_age"] <= rows["age_high"])
    assert section["coverage"]["90%"]["coverage"] == pytest.approx(inside.mean())
    by_band = section["groups"]["age_band"]
    assert sum(g["count"] for g in by_band.values()) == report["count"]
    assert set(section["groups"]) == {"estimated_age_band", "age_band", "gender", "race"}
    chosen = report["age_assurance"]["chosen"][0]
    assert chosen["threshold"] == 18 and chosen["max_false_adult"] == 0.1
    again = evaluate.evaluate_run(utk_run, batch_size=64, quiet=True)["calibration"]   # carried, not refitted
    assert again["calibrated"] and again["fit"] == record
    assert again["coverage"] == section["coverage"]


@pytest.mark.slow
def test_one_run_scored_on_several_data_sets_is_one_table(utk_run, appa_real_shards, capsys):
    from trainer import cross

    own = RunDir(utk_run).read_info()["records"]
    table = cross.cross_evaluate(utk_run, (own, appa_real_shards), batch_size=64, log=print)
    rows = table["rows"]
    assert [r["data_set"] for r in rows] == ["shards", "appa_real"]
    for r, records_dir in zip(rows, (own, appa_real_shards)):
        manifest = json.load(open(os.path.join(records_dir, "manifest.json")))
        assert r["faces"] == manifest["splits"]["test"]["count"]
        name = evaluate.output_names(own, records_dir, "test")["report"]
        scored = json.load(open(os.path.join(utk_run, name)))
        assert (r["mae"], r["coverage_90"]) == (scored["mae"], scored["calibration"]["coverage"]["90%"]["coverage"])
        assert r["false_adult"] == scored["thresholds"][0]["false_adult"] and r["minors"] == scored["thresholds"][0]["minors"]
    assert (rows[0]["label"], rows[1]["label"]) == ("real", "apparent")
    base = os.path.join(utk_run, "cross-shards+appa_real-test")
    assert json.load(open(base + ".json")) == table
    markdown = open(base + ".md").read()
    assert markdown.count("\n| shards |") == 1 and markdown.count("\n| appa_real |") == 1
    assert markdown in capsys.readouterr().out


@pytest.mark.slow
def test_report_html_reads_in_a_browser(utk_run, tmp_path):
    evaluate.evaluate_run(utk_run, batch_size=64, quiet=True, thresholds=(18,), challenge_age=25)
    path = os.path.join(utk_run, "report.html")
    browser.check_page(path, report_page.SECTIONS, str(tmp_path))
    page = open(path, encoding="utf-8").read()
    assert page.count("<figure>") == report_page.WORST_FACES
    assert "minors passing challenge 25" in page and "MAE per gender and age band" in page
    evaluate.evaluate_run(utk_run, batch_size=64, quiet=True, thumbnails=False)
    page = open(path, encoding="utf-8").read()
    assert "<figure>" not in page and "Thumbnails left out" in page


@pytest.mark.slow
def test_report_html_fits_a_laptop_window_and_its_captions_do_not_overlap(utk_run, tmp_path):
    evaluate.evaluate_run(utk_run, batch_size=64, quiet=True)
    browser.check_fits(os.path.join(utk_run, "report.html"), str(tmp_path))
    # The longest captions a report shows: a file name with no place to break it.
    report = json.load(open(os.path.join(utk_run, "report.json")))
    worst = report_page.WorstFaces()
    n = report_page.WORST_FACES
    keys = [f"crop_part1/{100 - i}_1_0_2017010914240807{i:02d}.jpg.chip.jpg".encode() for i in range(n)]
    worst.add(np.full((n, 32, 32, 3), 120, np.uint8), keys, np.arange(n) + 1, np.full(n, 99.5))
    path = report_page.write_report(str(tmp_path / "long.html"), report, np.arange(n) + 1, np.full(n, 99.5), worst)
    found = browser.check_fits(path, str(tmp_path))
    assert len(found["captions"]) == n
