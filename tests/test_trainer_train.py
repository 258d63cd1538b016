"""trainer.train in-process: a TrainConfig in, a run directory out (tiny variant,
default strategy). tests/test_trainer_main.py runs the same code as the user does, in
subprocesses (CLI, kill -9, strategies)."""

from __future__ import annotations

import dataclasses
import json
import os

import keras
import pytest
import tensorflow as tf

from trainer import flags as trainer_flags
from trainer import train
from trainer.run_dir import RunDir, RunDirError


@pytest.fixture
def float32_policy():
    """build_state sets the global mixed-precision policy: leave it as found."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def tiny_config(records_dir: str, model_dir: str, **overrides) -> trainer_flags.TrainConfig:
    values = dict(records=records_dir, model_dir=model_dir, weights=None, variant="tiny", epochs=2,
                  steps_per_epoch=2, batch_size=16, eval_batch_size=64, dropout=0.1,
                  best_metric="val_mae", strategy="default", evaluate=False)
    values.update(overrides)
    return trainer_flags.TrainConfig(**values).check()


def fake_checkpoint(run_dir: str) -> None:
    tf.train.Checkpoint(v=tf.Variable(1)).save(os.path.join(run_dir, "checkpoints", "ckpt"))


@pytest.mark.slow
def test_train_runs_and_resumes_in_process(sample_shards, tmp_path, float32_policy):
    run_dir = str(tmp_path / "run")
    config = tiny_config(sample_shards, run_dir)
    assert train.train(config) == run_dir
    run = RunDir(run_dir)
    assert [r["epoch"] for r in run.read_history()] == [1, 2]
    assert os.path.exists(run.best_model)
    info = run.read_info()
    assert info["cache_features"] is False and info["best_metric"] == "val_mae"
    assert info["variant"] == "tiny" and info["input_size"] == 32
    # The same run with one more epoch continues after epoch 2.
    assert train.train(dataclasses.replace(config, epochs=3)) == run_dir
    assert [r["epoch"] for r in run.read_history()] == [1, 2, 3]


def test_resume_is_checked_against_run_json(tmp_path):
    run_dir = str(tmp_path / "run")
    fake_checkpoint(run_dir)
    config = tiny_config("unused", run_dir)
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump({"variant": "tiny", "task": "age", "best_metric": "val_loss"}, f)
    with pytest.raises(RunDirError, match=r"--best_metric=val_mae but the run in .* was trained with "
                                          r"--best_metric=val_loss; use the same value or a new --model_dir"):
        train.check_run_dir(RunDir(run_dir), config)
    # A setting an older run.json does not record (cache_features here) counts as compatible.
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump({"variant": "tiny", "task": "age", "best_metric": "val_mae"}, f)
    assert train.check_run_dir(RunDir(run_dir), config) is True
    with pytest.raises(RunDirError, match="already holds a run; pass --resume"):
        train.check_run_dir(RunDir(run_dir), dataclasses.replace(config, resume=False))


def test_a_flag_name_starting_with_no_does_not_confuse_resume(tmp_path):
    # flags.txt is for people and --flagfile; resume compatibility never reads it back.
    run_dir = str(tmp_path / "run")
    fake_checkpoint(run_dir)
    with open(os.path.join(run_dir, "flags.txt"), "w") as f:
        f.write("--nodes\n--variant=full\n")
    assert train.check_run_dir(RunDir(run_dir), tiny_config("unused", run_dir)) is True


@pytest.mark.parametrize("overrides, message", [
    ({"epochs": 0}, "--epochs=0: must be at least 1"),
    ({"cache_features": True, "augment": True}, "--cache_features with --augment"),
    ({"weights": "/nowhere.h5"}, "--weights=/nowhere.h5: file not found"),
    ({"eval_batch_size": 0}, "--eval_batch_size=0"),
])
def test_config_refuses_bad_values_with_one_line(overrides, message):
    with pytest.raises(trainer_flags.ConfigError) as e:
        tiny_config("unused", "unused", **overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_weights_none_is_parsed_once():
    assert trainer_flags.parse_weights("none") is None and trainer_flags.parse_weights("NONE") is None
    assert trainer_flags.parse_weights("w.h5") == "w.h5"
