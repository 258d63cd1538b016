"""The trainer end to end, as a user runs it: real subprocesses of `python -m trainer`,
`trainer.evaluate` and `serving.predict` on a sample ingested by `python -m ingest`.

One module-scoped run trains the tiny variant with the committed cpu.flags and is
shared by the evaluation and prediction tests; resume, mirrored and multi-worker
runs each get their own run directory.
"""

from __future__ import annotations

import csv
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

from conftest import free_ports, run_module
from ingest import sample

pytestmark = pytest.mark.slow   # every test here runs `python -m ...` subprocesses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CPU_FLAGS = os.path.join(REPO, "cpu.flags")
GPU_FLAGS = os.path.join(REPO, "gpu.flags")
DEX_FLAGS = os.path.join(REPO, "dex.flags")
SMALL_FLAGS = os.path.join(REPO, "small.flags")
TRAIN_N = 2000        # sample rows: ~1000 written records, ~630 for training


def trainer(*args, timeout=300, env=None):
    """`python -m trainer ARGS` from the repository root (where cpu.flags' paths are relative to)."""
    env = {**(os.environ if env is None else env), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "trainer", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def train_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("trainer_data")
    src = str(root / "wiki_crop")
    sample.generate(src, TRAIN_N, seed=3, workers=2)
    out = str(root / "shards")
    result = run_module("ingest", "--src", src, "--out", out, "--image_size", "32",
                        "--shard_mb", "0.05", "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    return {"src": src, "shards": out}


@pytest.fixture(scope="module")
def trained_run(train_shards, tmp_path_factory):
    """The committed cpu.flags, pointed at this sample: train, then evaluate (the default)."""
    run_dir = str(tmp_path_factory.mktemp("runs") / "cpu")
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}",
                     f"--model_dir={run_dir}")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return {"dir": run_dir, "stdout": result.stdout, **train_shards}


def test_training_learns_the_age_far_better_than_the_mean(trained_run):
    run_dir = trained_run["dir"]
    assert os.path.exists(os.path.join(run_dir, "best.keras"))
    with open(os.path.join(run_dir, "report.json")) as f:
        report = json.load(f)
    manifest = json.load(open(os.path.join(trained_run["shards"], "manifest.json")))
    assert report["count"] == manifest["splits"]["test"]["count"]
    for key in ("loss", "accuracy", "mae", "cs5", "count", "mae_by_decade"):
        assert key in report
    # A real learning check: the sample's pixels encode the age, so a model that
    # learned anything beats always answering the training mean by a wide margin.
    assert report["mae"] < 0.7 * report["baseline_mae_predicting_train_mean"], report
    assert sum(d["count"] for d in report["mae_by_decade"].values()) == report["count"]
    # The command ends with the headline and the next commands, the run's paths filled in.
    tail = trained_run["stdout"].strip().splitlines()[-5:]
    assert tail[0] == (f"{run_dir}: test MAE {report['mae']:.2f} years on {report['count']} faces, "
                       f"{report['baseline_mae_predicting_train_mean'] / report['mae']:.1f}x better than always "
                       f"answering the training mean ({report['baseline_mae_predicting_train_mean']:.2f})")
    assert tail[1] == "Next:" and f"python -m serving.predict --model_dir {run_dir} photo.jpg" in tail[3]


def test_cpu_flags_train_every_layer_and_say_so(trained_run):
    # --weights=none without --init_from: --trainable_from defaults to all (flags.txt
    # records the resolved value), and the plan line says what trains.
    assert "training every layer (--trainable_from=all, from random initialisation)" in trained_run["stdout"]
    with open(os.path.join(trained_run["dir"], "flags.txt")) as f:
        assert "--trainable_from=all" in f.read().splitlines()
    assert "learned little" not in trained_run["stdout"]


def test_run_directory_holds_every_artifact(trained_run):
    run_dir = trained_run["dir"]
    rows = history(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 41))   # cpu.flags: 40 epochs
    assert all(float(r["epoch_seconds"]) > 0 and float(r["images_per_second"]) > 0 for r in rows)
    with open(os.path.join(run_dir, "predictions.csv")) as f:
        preds = list(csv.DictReader(f))
    report = json.load(open(os.path.join(run_dir, "report.json")))
    assert len(preds) == report["count"]
    assert report["batch_size"] == 32        # the run's eval batch (cpu.flags: --batch_size=32)
    assert set(preds[0]) == {"key", "true_age", "expected_age", "most_likely_age",
                             "age_mean", "age_std", "epsilon_error", "real_age",
                             "age_sd", "age_low", "age_high", "gender", "race"}
    assert preds[0]["epsilon_error"] == ""               # wiki has no apparent-age spread
    assert report["epsilon_error"] is None and report["tta"] == "none"
    for name in ("learning_curves.png", "mae_by_age.png", "flags.txt", "run.json"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    assert os.listdir(os.path.join(run_dir, "tb"))
    flags_txt = open(os.path.join(run_dir, "flags.txt")).read()
    assert "--variant=tiny" in flags_txt and f"--model_dir={run_dir}" in flags_txt


def test_flags_txt_is_a_reusable_flagfile(trained_run):
    result = trainer(f"--flagfile={os.path.join(trained_run['dir'], 'flags.txt')}", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "plan: 40 epochs" in result.stdout


def test_evaluate_command_rewrites_the_report(trained_run):
    os.remove(os.path.join(trained_run["dir"], "report.json"))
    result = run_module("trainer.evaluate", f"--model_dir={trained_run['dir']}", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MAE (years)" in result.stdout
    assert json.load(open(os.path.join(trained_run["dir"], "report.json")))["count"] > 0


def test_evaluate_scores_a_run_on_another_sources_shards_with_flip_tta(trained_run, tmp_path):
    other = str(tmp_path / "other")          # another data set, stored at another size
    src = str(tmp_path / "other_src")
    sample.generate(src, 300, seed=11, workers=1)
    made = run_module("ingest", "--src", src, "--out", other, "--image_size", "40", "--workers", "1")
    assert made.returncode == 0, made.stderr[-2000:]
    run_dir = trained_run["dir"]
    own = {name: open(os.path.join(run_dir, name), "rb").read()
           for name in ("report.json", "predictions.csv", "mae_by_age.png")}
    result = run_module("trainer.evaluate", f"--model_dir={run_dir}", f"--records={other}",
                        "--tta=flip", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"Evaluation on the test split of {other}, test-time augmentation flip" in result.stdout
    written = [os.path.join(run_dir, name) for name in
               ("report-other-test.json", "predictions-other-test.csv", "mae_by_age-other-test.png")]
    assert f"Wrote {', '.join(written)}" in result.stdout
    # The run's own report is untouched; the other data set's sits beside it.
    assert {name: open(os.path.join(run_dir, name), "rb").read() for name in own} == own
    report = json.load(open(written[0]))
    assert report["records"] == other and report["tta"] == "flip"
    assert report["count"] == json.load(open(os.path.join(other, "manifest.json")))["splits"]["test"]["count"]
    assert report["mae"] < 0.8 * report["baseline_mae_predicting_train_mean"]
    with open(written[1]) as f:
        assert sum(1 for _ in f) == report["count"] + 1


def some_kept_image(src: str) -> tuple[str, int]:
    """A readable sample face of a plausible age and its true age."""
    for row in sample.build_rows(TRAIN_N, 3):
        path = os.path.join(src, row["full_path"])
        if row["category"] == "kept" and row["quirk"] == "rgb" and 25 <= row["age"] <= 60 \
                and os.path.exists(path):
            return path, row["age"]
    raise AssertionError("no plain kept image in the sample")


def test_predict_prints_an_apparent_age_for_a_face_crop(trained_run, tmp_path):
    photo, age = some_kept_image(trained_run["src"])
    out = tmp_path / "out"
    result = run_module("serving.predict", f"--model_dir={trained_run['dir']}", "--no_detect",
                        f"--pictures_dir={out}", "--json", photo, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    [entry] = json.loads(result.stdout)
    assert entry["error"] is None and len(entry["faces"]) == 1
    face = entry["faces"][0]
    assert 0 <= face["apparent_age"] <= 100 and 0 <= face["most_likely_age"] <= 100
    assert abs(face["apparent_age"] - age) < 25          # learned, if roughly
    assert os.path.exists(entry["annotated"]) and all(os.path.exists(p) for p in entry["distributions"])


def portrait() -> str:
    """NASA's public-domain portrait of Eileen Collins, shipped inside scikit-image."""
    import importlib.util
    return os.path.join(importlib.util.find_spec("skimage").submodule_search_locations[0],
                        "data", "astronaut.png")


def test_predict_detects_faces_and_reports_bad_files_per_file(trained_run, tmp_path):
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is not a picture")
    faceless = tmp_path / "gray.png"
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(faceless)
    result = run_module("serving.predict", f"--model_dir={trained_run['dir']}", "--json",
                        portrait(), str(not_image), str(faceless), cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]      # one file worked
    face_photo, bad, empty = json.loads(result.stdout)
    assert face_photo["error"] is None and len(face_photo["faces"]) >= 1
    x, y, w, h = face_photo["faces"][0]["box"]
    assert 100 < x < 300 and 0 < y < 200 and w > 50     # her face, not the background
    assert bad["faces"] == [] and "notes.jpg: not a readable image" in bad["error"]
    assert empty["faces"] == [] and "no face found" in empty["error"] and "--no_detect" in empty["error"]


def test_predict_exits_nonzero_when_no_file_could_be_processed(trained_run, tmp_path):
    result = run_module("serving.predict", f"--model_dir={trained_run['dir']}", str(tmp_path / "nope.jpg"),
                        cwd=REPO)
    assert result.returncode == 1
    assert "nope.jpg does not exist" in result.stderr     # answered before TensorFlow loads


def test_killed_run_resumes_from_its_last_completed_epoch(train_shards, tmp_path):
    run_dir = str(tmp_path / "resume")
    args = [sys.executable, "-m", "trainer", f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}",
            f"--model_dir={run_dir}", "--epochs=12", "--noevaluate"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_dir = os.path.join(run_dir, "checkpoints")
    deadline = time.time() + 240
    while time.time() < deadline:            # kill once at least 3 epochs are committed
        if os.path.isdir(ckpt_dir) and sum(n.endswith(".index") for n in os.listdir(ckpt_dir)) >= 2 \
                and len(history(run_dir)) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(history(run_dir))
    assert 3 <= done_before < 12, "the run finished before it could be killed"
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout
    epochs = [int(r["epoch"]) for r in history(run_dir)]
    assert epochs == list(range(1, 13))          # no epoch repeated or missing


def test_killed_fine_tune_resumes_on_its_schedule_and_keeps_its_depth(trained_run, tmp_path):
    run_dir = str(tmp_path / "fine-tune")
    args = [sys.executable, "-m", "trainer", f"--flagfile={CPU_FLAGS}", f"--records={trained_run['shards']}",
            f"--model_dir={run_dir}", f"--init_from={trained_run['dir']}", "--trainable_from=conv5_1",
            "--lr_schedule=cosine", "--learning_rate=0.001", "--epochs=10", "--noevaluate"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not (os.path.exists(os.path.join(run_dir, "history.csv"))
                                          and len(history(run_dir)) >= 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 3 <= len(history(run_dir)) < 10, "the run finished before it could be killed"
    # Another depth is refused before the restore, in one line.
    other = subprocess.run(args[:-3] + ["--trainable_from=all", "--noevaluate"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
    assert other.returncode != 0
    assert other.stderr.strip().splitlines()[-1].startswith(
        "error: --trainable_from=all but the run in"), other.stderr[-1500:]
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout and "layers carried" not in result.stdout   # its own weights
    rows = history(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(1, 11))
    # The cosine schedule continues where it was killed: epoch k ends at 0.001 (1 + cos(pi k/10)) / 2.
    np.testing.assert_allclose([float(r["learning_rate"]) for r in rows],
                               [0.0005 * (1 + np.cos(np.pi * k / 10)) for k in range(1, 11)], atol=1e-9)
    info = json.load(open(os.path.join(run_dir, "run.json")))
    assert info["trainable_from"] == "conv5_1"
    assert info["init_from"] == os.path.abspath(os.path.join(trained_run["dir"], "best.keras"))


def test_init_from_takes_precedence_over_weights_in_one_line(trained_run, tmp_path):
    weights = tmp_path / "vgg_face_weights.h5"
    weights.write_bytes(b"never read: --init_from wins")
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={trained_run['shards']}", f"--model_dir={tmp_path / 'ft'}",
                     f"--init_from={trained_run['dir']}", f"--weights={weights}", "--epochs=1", "--noevaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--init_from={trained_run['dir']} takes precedence over --weights={weights} (not loaded)" \
        in result.stdout.splitlines()


def test_mirrored_strategy_on_two_logical_cpus_trains(train_shards, tmp_path):
    run_dir = str(tmp_path / "mirrored")
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}", f"--model_dir={run_dir}",
                     "--strategy=mirrored", "--logical_cpus=2", "--epochs=1", "--noevaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy: 2 replica(s) in sync" in result.stdout
    assert len(history(run_dir)) == 1 and os.path.exists(os.path.join(run_dir, "best.keras"))


def test_multi_worker_strategy_with_two_local_workers_trains(train_shards, tmp_path):
    run_dir = str(tmp_path / "multi")
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_CONFIG": tf_config}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "trainer", f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}",
             f"--model_dir={run_dir}", "--strategy=multi_worker", "--epochs=1", "--noevaluate"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, out[-2000:] + err[-3000:]
        assert "2 replica(s) in sync, 2 worker(s)" in out
    assert len(history(run_dir)) == 1                       # only the chief writes the run
    assert os.path.exists(os.path.join(run_dir, "best.keras"))


def test_gpu_flags_parse_and_resolve(train_shards, tmp_path):
    weights = tmp_path / "vgg_face_weights.h5"
    weights.write_bytes(b"placeholder: --dry_run checks only that the file exists")
    result = trainer(f"--flagfile={GPU_FLAGS}", f"--weights={weights}", f"--records={train_shards['shards']}",
                     f"--model_dir={tmp_path / 'gpu'}", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("--variant=full", "--batch_size=256", "--epochs=250", "--steps_per_epoch=1",
                 "--mixed_precision=bf16", "--jit_compile", "--optimizer=adam", "--validation_split=val"):
        assert line in result.stdout.splitlines(), line
    assert "plan: 250 epochs x 1 steps x 256 images" in result.stdout


def test_dex_flags_parse_and_resolve(trained_run, appa_real_shards, tmp_path):
    # Stage 2 validates on APPA-REAL, whose faces carry the spreads its ε-error needs.
    result = trainer(f"--flagfile={DEX_FLAGS}", f"--records={appa_real_shards}",
                     f"--init_from={trained_run['dir']}", f"--model_dir={tmp_path / 'dex'}", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    for line in ("--trainable_from=conv5_1", "--lr_schedule=cosine", "--learning_rate=0.0001",
                 "--augment_ops=flip,crop,label_jitter", "--best_metric=val_epsilon_error", "--variant=full"):
        assert line in result.stdout.splitlines(), line
    assert "plan: 60 epochs x" in result.stdout
    # On real-age data (the wiki sample) the same flags are refused in one line.
    refused = trainer(f"--flagfile={DEX_FLAGS}", f"--records={trained_run['shards']}",
                      f"--init_from={trained_run['dir']}", f"--model_dir={tmp_path / 'dex2'}", "--dry_run")
    assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith(
        "error: --best_metric=val_epsilon_error: the val split of"), refused.stderr[-2000:]


def test_small_flags_train_from_scratch_then_serve_as_stage_2_with_init_from(train_shards, tmp_path):
    # Stage 1: every layer of the small variant from random initialisation (the sample's
    # 32 px crops resized to its 64 px inside the model).
    first = str(tmp_path / "small")
    result = trainer(f"--flagfile={SMALL_FLAGS}", f"--records={train_shards['shards']}", f"--model_dir={first}",
                     "--epochs=2", "--noevaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training every layer (--trainable_from=all, from random initialisation)" in result.stdout
    info = json.load(open(os.path.join(first, "run.json")))
    assert (info["variant"], info["input_size"], info["trainable_from"]) == ("small", 64, "all")
    # Stage 2: the same flagfile from that run, every layer at a lower rate; BatchNorm's
    # moving statistics are carried with the weights (layers matched by name and shape).
    second = str(tmp_path / "stage2")
    result = trainer(f"--flagfile={SMALL_FLAGS}", f"--records={train_shards['shards']}", f"--model_dir={second}",
                     f"--init_from={first}", "--learning_rate=0.0003", "--warmup_epochs=0", "--epochs=1",
                     "--noevaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "29 layers carried; head predictions carried" in result.stdout, result.stdout[-2000:]
    assert f"training every layer (--trainable_from=all, from --init_from={first})" in result.stdout


def test_two_sources_plan_and_validation_records_on_the_command_line(train_shards, trained_run, tmp_path):
    shards = train_shards["shards"]
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={shards},{trained_run['shards']}",
                     "--records_weights=1,3", f"--validation_records={shards}",
                     f"--model_dir={tmp_path / 'mix'}", "--dry_run")
    assert result.returncode == 0, result.stderr[-2000:]
    manifest = json.load(open(os.path.join(shards, "manifest.json")))
    n = manifest["splits"]["train"]["count"]
    plan = [line for line in result.stdout.splitlines() if line.startswith("plan: ")][0]
    assert plan.startswith(f"plan: 40 epochs x {2 * n // 32} steps x 32 images from {2 * n} training records")
    assert "weight 0.25" in plan and "weight 0.75" in plan
    assert plan.endswith(f"validating on {manifest['splits']['val']['count']} val records of {shards}")


@pytest.mark.parametrize("args, message", [
    (["--epochs=0"], "error: --epochs=0: must be at least 1"),
    (["--weights=/nowhere/vgg_face_weights.h5", "--variant=full"],
     "error: --weights=/nowhere/vgg_face_weights.h5: file not found; download vgg_face_weights.h5 and pass "
     "--weights=/path/to/vgg_face_weights.h5, or --weights=none to train from scratch"),
    (["--cache_features", "--augment"], "error: --cache_features with --augment"),
    (["--time_limit=20 minutes"], "error: --time_limit=20 minutes: not a duration; write hours, minutes and "
                                  "seconds such as 20m, 1h30m or 90s"),
    (["--records_weights=1,2"], "error: --records_weights has 2 values for 1 --records"),
    (["--cache_features"], "error: --cache_features with --weights=none and no --init_from"),
    (["--trainable_from=fc6"], "error: --trainable_from=fc6 with --weights=none and no --init_from"),
    (["--strategy=multi_worker"], "error: --strategy=multi_worker needs the TF_CONFIG environment variable"),
])
def test_bad_flags_fail_with_one_clear_line(args, message, train_shards, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}",
                     f"--model_dir={tmp_path / 'bad'}", *args, env=env)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr[-1500:]
    assert not os.path.exists(tmp_path / "bad")


def test_early_stopping_after_patience_epochs_without_improvement(train_shards, tmp_path):
    # A learning rate far below float32 resolution leaves the weights bit-identical, so
    # the validation metric never improves after epoch 1: patience 2 stops at epoch 3.
    run_dir = str(tmp_path / "patience")
    args = (f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}", f"--model_dir={run_dir}",
            "--learning_rate=1e-30", "--patience=2", "--epochs=10", "--noevaluate")
    result = trainer(*args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("Training stopped after epoch 3 of 10: val_mae has not improved for 2 epochs (--patience=2)"
            in result.stdout.splitlines())
    assert [int(r["epoch"]) for r in history(run_dir)] == [1, 2, 3]
    again = trainer(*args)                       # the same command does not train on
    assert again.returncode == 0 and "stopped early before" in again.stdout
    assert len(history(run_dir)) == 3


def test_age_gender_task_reports_and_predicts_gender(train_shards, tmp_path):
    run_dir = str(tmp_path / "gender")
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}", f"--model_dir={run_dir}",
                     "--task=age_gender", "--epochs=2")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.load(open(os.path.join(run_dir, "report.json")))
    assert 0 <= report["gender_accuracy"] <= 1 and "gender accuracy" in result.stdout
    rows = history(run_dir)
    assert "val_gender_accuracy" in rows[0]
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all(f" - val_gender_acc {float(row['val_gender_accuracy']):.4g} - " in line
                                         for line, row in zip(epoch_lines, rows))
    photo, _ = some_kept_image(train_shards["src"])
    predicted = run_module("serving.predict", f"--model_dir={run_dir}", "--no_detect", "--json", photo, cwd=REPO)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout)[0]["faces"][0]["gender"] in ("male", "female")


def test_a_nan_loss_stops_training_with_a_clear_message(train_shards, tmp_path):
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}",
                     f"--model_dir={tmp_path / 'nan'}", "--optimizer=sgd", "--learning_rate=1e12", "--epochs=3")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training loss became nan in epoch 1; lower --learning_rate"), last
    assert not os.path.exists(tmp_path / "nan" / "history.csv")     # no epoch was recorded as done


def test_missing_shards_fail_before_building_anything(tmp_path):
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={tmp_path / 'nothing'}",
                     f"--model_dir={tmp_path / 'run'}")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "nothing" in last and "python -m ingest" in last


def test_resuming_with_another_variant_is_refused(trained_run):
    result = trainer(f"--flagfile={os.path.join(trained_run['dir'], 'flags.txt')}", "--variant=full",
                     "--weights=none", "--dry_run")
    assert result.returncode != 0
    assert "--variant=full but the run in" in result.stderr and "--variant=tiny" in result.stderr


# --------------------------------------------------------------------------- guarantees

def last_line(result) -> str:
    return result.stderr.strip().splitlines()[-1] if result.stderr.strip() else ""


@pytest.fixture(scope="module")
def feature_cache(train_shards, tmp_path_factory):
    """A feature cache of a private copy of the shards (it is written inside them)."""
    shards = str(tmp_path_factory.mktemp("cache_data") / "shards")
    shutil.copytree(train_shards["shards"], shards)
    result = run_module("trainer.features", f"--records={shards}", "--weights=none", "--variant=tiny", cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("case", ["eval_batch_size", "shuffle_buffer", "feature_cache", "model_dir_file",
                                  "batch_size", "cluster_timeout"])
def test_bad_input_is_one_line(case, train_shards, feature_cache, tmp_path):
    records, model_dir, extra = train_shards["shards"], str(tmp_path / "run"), []
    if case == "eval_batch_size":
        extra, expected = ["--eval_batch_size=-1"], "error: --eval_batch_size=-1: use 0 for --batch_size"
    elif case == "shuffle_buffer":
        extra, expected = ["--shuffle_buffer=0"], "error: --shuffle_buffer=0: must be at least 1"
    elif case == "feature_cache":
        records, expected = feature_cache, f"error: --records={feature_cache} is a feature cache, not image shards"
    elif case == "model_dir_file":
        open(model_dir, "w").write("mine")
        expected = f"error: --model_dir {model_dir}: is a file, not a directory"
    elif case == "batch_size":
        extra, expected = ["--batch_size=100000"], "error: --batch_size=100000 is larger than the "
    else:
        extra, expected = ["--cluster_timeout=0"], "error: --cluster_timeout=0: must be a positive number"
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={records}", f"--model_dir={model_dir}", *extra)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last_line(result).startswith(expected), result.stderr[-1500:]
    if case == "model_dir_file":
        assert open(model_dir).read() == "mine"


def test_evaluate_batch_size_zero_is_one_line(trained_run):
    result = run_module("trainer.evaluate", f"--model_dir={trained_run['dir']}", "--batch_size=0", cwd=REPO)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert last_line(result) == "error: --batch_size=0: must be at least 1"


def test_a_second_trainer_on_one_run_dir_is_refused_at_once(train_shards, tmp_path):
    run_dir = str(tmp_path / "busy")
    args = [sys.executable, "-m", "trainer", f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}",
            f"--model_dir={run_dir}", "--epochs=200", "--noevaluate"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not os.path.exists(os.path.join(run_dir, "flags.txt")):
            time.sleep(0.1)
        started = time.time()
        second = trainer(*args[3:])
        assert time.time() - started < 60
        assert second.returncode == 1
        assert last_line(second).startswith(f"error: {run_dir}: already being written by pid {first.pid} on "), \
            second.stderr[-1500:]
    finally:
        first.kill()
        first.wait()


def test_an_unreachable_multi_worker_peer_is_one_line_not_a_hang(train_shards, tmp_path):
    ports = free_ports(2)
    tf_config = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                            "task": {"type": "worker", "index": 0}})
    started = time.time()
    result = trainer(f"--flagfile={CPU_FLAGS}", f"--records={train_shards['shards']}",
                     f"--model_dir={tmp_path / 'mw'}", "--strategy=multi_worker", "--cluster_timeout=3",
                     env={**os.environ, "TF_CONFIG": tf_config}, timeout=120)
    assert result.returncode == 1
    assert last_line(result).startswith(f"error: --strategy=multi_worker: peer worker 1 at 127.0.0.1:{ports[1]} "
                                        f"unreachable for 3 s"), result.stderr[-1500:]
    assert time.time() - started < 90
