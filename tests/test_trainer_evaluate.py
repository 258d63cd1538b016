"""trainer.evaluate: the apparent-age scores (ε-error, MAE against the apparent and the
real age) against hand-computed values, and flip TTA against a hand-computed mean."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

import model
import records
from storage.run_dir import RunDir
from trainer import evaluate, loop

from conftest import run_module


def test_apparent_age_scores_against_hand_computed_values():
    expected = np.array([30.0, 33.0, 50.0, 24.0])
    mean = np.array([30.0, 30.0, 45.0, 20.0])
    std = np.array([4.0, 3.0, 0.0, 2.0])              # the third face has no spread: left out
    real = np.array([28.0, -1.0, 52.0, 25.0])         # the second has no real age
    scores = evaluate.apparent_age_scores(expected, mean, std, real)
    # ε: 0, 1 - e^(-9/18) = 0.393469, 1 - e^(-16/8) = 0.864665
    assert scores["epsilon_error"] == pytest.approx((0.0 + 0.393469 + 0.864665) / 3, abs=1e-6)
    assert scores["epsilon_faces"] == 3 and scores["epsilon_left_out"] == 1
    assert scores["mae_apparent"] == pytest.approx((0 + 3 + 5 + 4) / 4)   # every face against μ, σ = 0 too
    assert scores["mae_real"] == pytest.approx((2 + 2 + 1) / 3) and scores["real_age_faces"] == 3
    # a split without spreads or real ages: nothing to report
    none = evaluate.apparent_age_scores(expected, mean, np.zeros(4), np.full(4, -1.0))
    assert none["epsilon_error"] is None and none["mae_apparent"] is None and none["mae_real"] is None
    np.testing.assert_allclose(evaluate.per_face_epsilon(expected, mean, std),
                               [0.0, 0.393469, np.nan, 0.864665], atol=1e-6)


@pytest.mark.slow
def test_flip_tta_scores_each_face_as_the_mean_of_both_softmaxes(sample_shards, tmp_path):
    loop.set_seeds(4)
    net = model.build_age_model(None, variant="tiny")
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    net.save(run.best_model)
    run.write_info({"records": sample_shards})
    report = evaluate.evaluate_run(run.path, split="val", batch_size=64, quiet=True, tta="flip")
    assert report["tta"] == "flip"
    images = np.concatenate([x.numpy() for x, _ in records.make_dataset(sample_shards, "val", 64, training=False)])
    probs = (np.asarray(net(images)) + np.asarray(net(images[:, :, ::-1]))) / 2
    by_hand = (probs * np.arange(101)).sum(-1)
    shards = os.path.basename(sample_shards)
    with open(run.file(f"predictions-{shards}-val.csv")) as f:   # not the test split: named for its split
        rows = list(csv.DictReader(f))
    np.testing.assert_allclose([float(r["expected_age"]) for r in rows], by_hand, atol=0.006)
    plain = evaluate.evaluate_run(run.path, split="val", batch_size=64, quiet=True)
    assert plain["tta"] == "none" and plain["mae"] != report["mae"]
    assert json.load(open(run.file(f"report-{shards}-val.json")))["tta"] == "none"
    assert not os.path.exists(run.file("report.json"))


def test_only_the_runs_own_records_and_test_split_write_report_json(tmp_path):
    own = str(tmp_path / "shards" / "wiki")
    plain = {"report": "report.json", "predictions": "predictions.csv",
             "learning_curves": "learning_curves.png", "mae_by_age": "mae_by_age.png",
             "report_html": "report.html"}
    assert evaluate.output_names(own, own + "/", "test") == plain                   # the same directory
    assert evaluate.output_names(own, os.path.relpath(own), "test") == plain
    assert evaluate.output_names(own, str(tmp_path / "appa_real"), "test") == {
        "report": "report-appa_real-test.json", "predictions": "predictions-appa_real-test.csv",
        "mae_by_age": "mae_by_age-appa_real-test.png", "report_html": "report-appa_real-test.html"}
    assert evaluate.output_names(own, own, "val")["report"] == "report-wiki-val.json"


@pytest.mark.slow
def test_an_appa_real_split_reports_the_epsilon_error_of_its_predictions(tmp_path):
    src, shards = str(tmp_path / "appa-real-release"), str(tmp_path / "appa_real")
    made = run_module("ingest.sample", "--dataset", "appa_real", "--out", src, "--n", "300")
    assert made.returncode == 0, made.stderr[-2000:]
    made = run_module("ingest", "--src", src, "--out", shards, "--image_size", "32", "--workers", "1")
    assert made.returncode == 0, made.stderr[-2000:]
    loop.set_seeds(6)
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    model.build_age_model(None, variant="tiny").save(run.best_model)
    run.write_info({"records": shards})
    report = evaluate.evaluate_run(run.path, quiet=True)
    with open(run.file("predictions.csv")) as f:
        rows = list(csv.DictReader(f))
    x, mu, sigma = (np.array([float(r[k]) for r in rows]) for k in ("expected_age", "age_mean", "age_std"))
    real = np.array([int(r["real_age"]) for r in rows])
    spread = sigma > 0
    assert report["epsilon_faces"] == spread.sum() > 0
    assert report["epsilon_faces"] + report["epsilon_left_out"] == report["count"] == len(rows)
    by_hand = np.mean(1 - np.exp(-(x[spread] - mu[spread]) ** 2 / (2 * sigma[spread] ** 2)))
    assert report["epsilon_error"] == pytest.approx(by_hand, abs=0.01)     # the csv rounds to 0.01
    np.testing.assert_allclose([float(r["epsilon_error"]) for r in rows if r["epsilon_error"]],
                               1 - np.exp(-(x[spread] - mu[spread]) ** 2 / (2 * sigma[spread] ** 2)), atol=0.01)
    assert report["mae_apparent"] == pytest.approx(np.mean(np.abs(x - mu)), abs=0.01)
    assert report["mae_real"] == pytest.approx(np.mean(np.abs(x - real)[real >= 0]), abs=0.01)


def test_learning_curves_show_the_metric_that_picked_best_keras(tmp_path):
    from PIL import Image

    from reports import plots

    history = [{"epoch": e, "loss": 3.0 - e / 10, "val_loss": 3.1 - e / 20, "mae": 9.0 - e, "val_mae": 9.5 - e / 2,
                "epsilon_error": 0.8 - e / 20, "val_epsilon_error": 0.7 - e / 30} for e in range(1, 6)]
    two = plots.learning_curves(history, str(tmp_path / "a.png"), {"epoch": 3, "metric": "val_mae", "value": 8.0})
    three = plots.learning_curves(history, str(tmp_path / "b.png"),
                                  {"epoch": 5, "metric": "val_epsilon_error", "value": 0.53})
    # A third panel for the picking metric when it is neither the loss nor the MAE.
    assert Image.open(three).width > 1.3 * Image.open(two).width


def test_learned_little_is_one_warning_line_within_15_percent_of_the_mean_predictor():
    report = {"split": "test", "mae": 9.0, "baseline_mae_predicting_train_mean": 10.0}
    line = evaluate.learned_little(report)
    assert line.startswith("WARNING: the model learned little: MAE 9.00 on the test split against 10.00 "
                           "for always answering the training mean age; usual causes: frozen random layers")
    assert "too few epochs" in line and "framed" in line and "\n" not in line
    assert evaluate.learned_little({**report, "mae": 8.4}) is None        # 16% better: learned
    assert evaluate.learned_little({**report, "mae": 8.5}) is not None    # exactly 15%


@pytest.mark.slow
def test_an_untrained_model_gets_the_warning_and_the_baseline_is_in_the_report(sample_shards, tmp_path, capsys):
    loop.set_seeds(5)
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    model.build_age_model(None, variant="tiny").save(run.best_model)    # random: about uniform, age ~50
    run.write_info({"records": sample_shards})
    report = evaluate.evaluate_run(run.path, quiet=True)
    saved = json.load(open(run.file("report.json")))
    assert saved["baseline_mae_predicting_train_mean"] == report["baseline_mae_predicting_train_mean"] > 0
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("WARNING")]
    assert warnings == [evaluate.learned_little(report)] and f"MAE {report['mae']:.2f}" in warnings[0]


@pytest.mark.parametrize("info, says", [
    ({"margin": "abc"}, "margin 'abc' is not a number >= 0"),
    ({"margin": float("nan")}, "margin nan is not a number >= 0"),
    ({"records": None}, "records None is not the path of the data set"),
    ({"records": 5}, "records 5 is not the path of the data set"),
])
def test_a_run_json_of_the_wrong_types_is_one_line_in_evaluate(sample_shards, tmp_path, info, says):
    from storage.run_dir import RunDirError

    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    model.build_age_model(None, variant="tiny").save(run.best_model)
    info = {"records": sample_shards, **info}
    if info["records"] is None:
        info.pop("records")
    with open(run.file("run.json"), "w") as f:
        json.dump(info, f)                      # NaN as JSON's NaN, as a hand or a bug writes it
    with pytest.raises(RunDirError) as e:
        evaluate.evaluate_run(run.path, quiet=True)
    assert str(e.value).startswith(f"{run.file('run.json')}: {says}") and "\n" not in str(e.value)


def test_a_flipped_byte_mid_read_is_one_line_naming_the_shard_and_verify(sample_shards, tmp_path):
    import shutil
    from errors import DataError

    copy = tmp_path / "shards"
    shutil.copytree(sample_shards, copy)
    manifest = json.load(open(copy / "manifest.json"))
    shard = copy / manifest["splits"]["test"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF                          # a record's payload: its CRC fails
    shard.write_bytes(bytes(data))
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.path)
    model.build_age_model(None, variant="tiny").save(run.best_model)
    run.write_info({"records": str(copy)})
    with pytest.raises(DataError) as e:
        evaluate.evaluate_run(run.path, quiet=True)
    line = str(e.value)
    assert line.startswith(f"{shard}: damaged (a record fails its checksum") and "\n" not in line
    assert line.endswith(f"`python -m records verify {copy}` names the record; re-run ingest (or restore the shard)")
