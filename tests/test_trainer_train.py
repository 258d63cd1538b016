"""trainer.train in-process: a TrainConfig in, a run directory out (tiny variant,
default strategy). tests/test_trainer_main.py runs the same code as the user does, in
subprocesses (CLI, kill -9, strategies)."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import model
from errors import DataError
from model import transfer
from storage.run_dir import RunDir, RunDirError
from trainer import evaluate, inputs, loop, resume, train
from trainer import flags as trainer_flags


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
    assert [r["learning_rate"] for r in run.read_history()] == pytest.approx([1e-3, 1e-3])
    with open(run.file("history.csv")) as f:           # real ages: no spreads, no ε columns
        assert "epsilon" not in f.readline()
    logged = [(e.step, float(tf.make_ndarray(v.tensor))) for f in tf.io.gfile.glob(os.path.join(run.tensorboard, "*"))
              for e in tf.compat.v1.train.summary_iterator(f) for v in e.summary.value if v.tag == "learning_rate"]
    assert sorted(logged) == [(1, pytest.approx(1e-3)), (2, pytest.approx(1e-3))]
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
        resume.check_run_dir(RunDir(run_dir), config, {})
    # A setting an older run.json does not record (cache_features here) counts as compatible.
    with open(os.path.join(run_dir, "run.json"), "w") as f:
        json.dump({"variant": "tiny", "task": "age", "best_metric": "val_mae"}, f)
    assert resume.check_run_dir(RunDir(run_dir), config, {}) is True
    with pytest.raises(RunDirError, match="already holds a run; pass --resume"):
        resume.check_run_dir(RunDir(run_dir), dataclasses.replace(config, resume=False), {})


def test_a_flag_name_starting_with_no_does_not_confuse_resume(tmp_path):
    # flags.txt is for people and --flagfile; resume compatibility never reads it back.
    run_dir = str(tmp_path / "run")
    fake_checkpoint(run_dir)
    with open(os.path.join(run_dir, "flags.txt"), "w") as f:
        f.write("--nodes\n--variant=full\n")
    assert resume.check_run_dir(RunDir(run_dir), tiny_config("unused", run_dir), {}) is True


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


# An existing file standing in for vgg_face_weights.h5: the config only checks that it exists.
SOME_WEIGHTS = __file__


def test_the_default_depth_trains_every_layer_from_random_weights_and_the_head_on_trained_ones(tmp_path):
    assert tiny_config("unused", "unused").trainable_from == "all"
    assert tiny_config("unused", "unused", weights=SOME_WEIGHTS, variant="full").trainable_from == "fc6"
    trained = tmp_path / "best.keras"
    trained.write_bytes(b"only its existence is checked here")
    assert tiny_config("unused", "unused", init_from=str(trained)).trainable_from == "fc6"
    # An explicit depth is kept.
    assert tiny_config("unused", "unused", init_from=str(trained), trainable_from="conv5_1").trainable_from \
        == "conv5_1"


@pytest.mark.parametrize("overrides, message", [
    ({"trainable_from": "fc6"}, "--trainable_from=fc6 with --weights=none and no --init_from: the layers "
                                "before fc6 would stay random and frozen; use --trainable_from=all, or start "
                                "from trained weights (--weights=vgg_face_weights.h5 or --init_from=RUN)"),
    ({"trainable_from": "conv5_1"}, "--trainable_from=conv5_1 with --weights=none and no --init_from"),
    ({"cache_features": True}, "--cache_features with --weights=none and no --init_from: the cache would "
                               "hold the features of a random trunk, which nothing trains; pass "
                               "--weights=vgg_face_weights.h5 or drop --cache_features"),
    ({"cache_features": True, "trainable_from": "fc6"}, "--cache_features with --weights=none"),
    ({"variant": "small", "jit_compile": True, "strategy": "mirrored"},
     "--jit_compile with --variant=small and --strategy=mirrored: its BatchNorm all-reduces"),
    ({"variant": "small", "weights": SOME_WEIGHTS}, "--variant=small with --weights: VGG-Face weights only "
                                                    "fit the full variant; pass --weights=none for the small one"),
])
def test_random_frozen_layers_are_refused_in_one_line_naming_both_flags_and_the_fix(overrides, message):
    with pytest.raises(trainer_flags.ConfigError) as e:
        tiny_config("unused", "unused", **overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_weights_none_is_parsed_once():
    assert trainer_flags.parse_weights("none") is None and trainer_flags.parse_weights("NONE") is None
    assert trainer_flags.parse_weights("w.h5") == "w.h5"


# ----------------------------------------------------------------------------- fine-tuning

def weights_by_layer(net) -> dict:
    return {layer.name: [np.array(w) for w in layer.get_weights()] for layer in net.layers if layer.weights}


# The layers each --trainable_from depth trains (tiny variant, age task).
HEAD = {"fc6", "fc7", "predictions"}
TRAINED_LAYERS = {"fc6": HEAD, "conv5_1": HEAD | {"conv5_1", "conv5_2", "conv5_3"}, "all": None}


@pytest.mark.slow
@pytest.mark.parametrize("depth", sorted(TRAINED_LAYERS))
def test_each_trainable_from_depth_trains_exactly_its_layers(sample_shards, tmp_path, float32_policy, depth):
    run_dir = str(tmp_path / "run")
    # A frozen depth needs trained weights: start from a saved network (--init_from).
    loop.set_seeds(0)
    start = model.build_age_model(None, variant="tiny", dropout=0.1)
    start.save(str(tmp_path / "start.keras"))
    before = weights_by_layer(start)
    train.train(tiny_config(sample_shards, run_dir, epochs=1, trainable_from=depth, learning_rate=0.01,
                            init_from=str(tmp_path / "start.keras")))
    after = weights_by_layer(keras.saving.load_model(RunDir(run_dir).best_model))
    changed = {name for name in before
               if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name]))}
    expected = TRAINED_LAYERS[depth] or set(before)
    assert changed == expected
    assert RunDir(run_dir).read_info()["trainable_from"] == depth


@pytest.mark.slow
def test_training_on_cached_features_learns_like_the_frozen_trunk_it_caches(sample_shards, tmp_path,
                                                                             float32_policy, capsys):
    # The flags refuse a cache of a random trunk (nothing trains it; on real faces it
    # learns nothing). The cached path is the one VGG-Face weights take; a frozen random
    # trunk stands in for them here.
    frozen = dataclasses.replace(tiny_config(sample_shards, "", epochs=12, steps_per_epoch=0,
                                             learning_rate=0.003), trainable_from="fc6")
    runs = {}
    for name, cache in (("plain", False), ("cached", True)):
        runs[name] = str(tmp_path / name)
        train.train(dataclasses.replace(frozen, model_dir=runs[name], cache_features=cache))
    assert "Feature cache: building" in capsys.readouterr().out
    plain, cached = (evaluate.evaluate_run(runs[n], split="val", batch_size=64, quiet=True) for n in runs)
    baseline = plain["baseline_mae_predicting_train_mean"]
    # Same seed, data and schedule: the head sees the same pool5 values (to float16), so
    # both end about equally well (on this 400-row sample a random trunk is near the mean).
    assert [r["epoch"] for r in RunDir(runs["cached"]).read_history()] == list(range(1, 13))
    assert abs(cached["mae"] - plain["mae"]) < 0.25 * baseline, (cached["mae"], plain["mae"])
    assert cached["count"] == plain["count"]     # best.keras is the full age model (images in)


@pytest.mark.slow
def test_init_from_a_trained_run_starts_far_ahead_of_scratch(sample_shards, tmp_path, float32_policy, capsys):
    trained = str(tmp_path / "trained")
    train.train(tiny_config(sample_shards, trained, epochs=20, steps_per_epoch=0, learning_rate=0.003))
    scratch = str(tmp_path / "scratch")
    train.train(tiny_config(sample_shards, scratch, epochs=1, learning_rate=0.001))
    tuned = str(tmp_path / "tuned")
    capsys.readouterr()
    train.train(tiny_config(sample_shards, tuned, epochs=1, learning_rate=0.001, init_from=trained))
    out = capsys.readouterr().out
    assert "layers carried; head predictions carried" in out
    first = {d: RunDir(d).read_history()[0]["val_mae"] for d in (scratch, tuned)}
    assert first[tuned] <= 0.7 * first[scratch], first
    assert RunDir(tuned).read_info()["init_from"] == os.path.abspath(os.path.join(trained, "best.keras"))


def test_carry_weights_matches_by_name_and_shape_and_says_when_the_head_is_new():
    loop.set_seeds(1)
    source = model.build_age_model(None, variant="tiny", num_classes=50)
    loop.set_seeds(2)
    net = model.build_age_model(None, variant="tiny")
    fresh_head = [np.array(w) for w in net.get_layer("predictions").get_weights()]
    note = transfer.carry_weights(net, source, "src.keras")
    assert note == "init_from src.keras: 15 layers carried; head predictions new (its shape differs)"
    np.testing.assert_array_equal(net.get_layer("conv3_2").get_weights()[0],
                                  source.get_layer("conv3_2").get_weights()[0])
    for a, b in zip(net.get_layer("predictions").get_weights(), fresh_head):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(model.WeightsError, match="no layer matches this model by name and shape"):
        transfer.carry_weights(model.build_age_model(None, variant="full", input_size=32), source, "src.keras")


@pytest.mark.parametrize("overrides, message", [
    ({"cache_features": True, "trainable_from": "conv5_1", "weights": SOME_WEIGHTS, "variant": "full"},
     "--cache_features with --trainable_from=conv5_1"),
    ({"cache_features": True, "train_records": ("a", "b"), "weights": SOME_WEIGHTS, "variant": "full"},
     "--cache_features with several --records"),
    ({"train_records": ("a", "b"), "records_weights": (1.0,)}, "--records_weights has 1 values for 2 --records"),
    ({"augment_ops": ("flip", "rotate")}, "--augment_ops=flip,rotate: unknown op 'rotate'"),
    ({"warmup_epochs": 3}, "--warmup_epochs=3: must be between 0 and --epochs"),
    ({"data_service": "grpc://localhost:5050", "train_records": ("a", "b")}, "--records=a,b with --data_service"),
    ({"init_from": "/nowhere"}, "--init_from=/nowhere: /nowhere not found"),
])
def test_fine_tuning_flags_refuse_bad_combinations_with_one_line(overrides, message):
    with pytest.raises(trainer_flags.ConfigError) as e:
        tiny_config("unused", "unused", **overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [0.0, 0.05, 0.1, 0.1, 0.1, 0.1]),
    ("cosine", [0.0, 0.05, 0.1, 0.1 * (1 + np.cos(np.pi / 4)) / 2, 0.05, 0.1 * (1 + np.cos(3 * np.pi / 4)) / 2]),
])
def test_learning_rate_schedule_warms_up_linearly_then_holds_or_decays(schedule, expected):
    config = tiny_config("unused", "unused", epochs=3, lr_schedule=schedule, warmup_epochs=1, learning_rate=0.1)
    lr = train.learning_rate_schedule(config, steps=2)        # warm-up 2 steps, then 4 more
    got = [float(lr(step)) for step in range(6)]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert train.learning_rate_schedule(dataclasses.replace(config, warmup_epochs=0, lr_schedule="constant"), 2) == 0.1


@pytest.mark.slow
def test_two_sources_train_and_the_plan_counts_both(sample_shards, tmp_path, float32_policy, capsys):
    run_dir = str(tmp_path / "run")
    config = tiny_config(sample_shards, run_dir, epochs=1, steps_per_epoch=0,
                         train_records=(sample_shards, sample_shards), records_weights=(0.25, 0.75),
                         augment_ops=("flip", "label_jitter"))
    count = json.load(open(os.path.join(sample_shards, "manifest.json")))["splits"]["train"]["count"]
    train.dry_run(config)
    plan = capsys.readouterr().out.splitlines()[-1]
    assert plan.startswith(f"plan: 1 epochs x {2 * count // 16} steps x 16 images from {2 * count} training records")
    assert "weight 0.25" in plan and "weight 0.75" in plan
    train.train(config)
    info = RunDir(run_dir).read_info()
    assert info["train_records"] == [os.path.abspath(sample_shards)] * 2
    assert info["records_weights"] == [0.25, 0.75]
    shards = json.load(open(os.path.join(sample_shards, "manifest.json")))["splits"]["train"]["shards"]
    assert info["train_data"] == [[shard["sha256"] for shard in shards]] * 2
    assert info["records"] == os.path.abspath(sample_shards)
    assert [r["epoch"] for r in RunDir(run_dir).read_history()] == [1]


# --------------------------------------------------------------------------- ε-error selection

@pytest.mark.slow
def test_epsilon_error_is_in_the_history_and_selects_best_keras(appa_real_shards, tmp_path, float32_policy,
                                                                capsys):
    run_dir = str(tmp_path / "run")
    config = tiny_config(appa_real_shards, run_dir, epochs=3, best_metric="val_epsilon_error",
                         learning_rate=3e-2)
    assert train.train(config) == run_dir
    run = RunDir(run_dir)
    with open(run.file("history.csv")) as f:
        header = f.readline().strip().split(",")
    assert header[-2:] == ["epsilon_error", "val_epsilon_error"]
    history = run.read_history()
    eps = [row["val_epsilon_error"] for row in history]
    assert len(eps) == 3 and all(0 < e < 1 for e in eps) and all(0 < row["epsilon_error"] < 1 for row in history)
    best = json.load(open(run.file("best.json")))
    assert best["metric"] == "val_epsilon_error"
    assert best["epoch"] == 1 + int(np.argmin(eps)) and best["value"] == pytest.approx(min(eps))
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3 and all(f" - val_eps {e:.4g} - " in line for line, e in zip(lines, eps))
    # best.keras is that epoch's model: trainer.evaluate scores its val split at best.json's value.
    from trainer import evaluate
    report = evaluate.evaluate_run(run_dir, split="val", batch_size=64, quiet=True)
    assert report["epsilon_error"] == pytest.approx(best["value"], abs=1e-6)   # epochs differ by ~1e-4


def test_epsilon_selection_is_refused_for_data_whose_labels_are_real_ages():
    config = tiny_config("shards/wiki", "unused", best_metric="val_epsilon_error")
    inputs.check_best_metric(config, {"label": "apparent"})
    inputs.check_best_metric(dataclasses.replace(config, best_metric="val_mae"), {"label": "real"})
    for manifest in ({"label": "real"}, {}):                 # {}: schema version 1, IMDB-WIKI's real ages
        with pytest.raises(trainer_flags.ConfigError) as e:
            inputs.check_best_metric(config, manifest)
        assert str(e.value) == (
            "--best_metric=val_epsilon_error: the val split of shards/wiki has no face with an apparent-age "
            "spread (age_std > 0): its manifest's label is 'real'; choose --best_metric=val_mae, or "
            "--validation_records with apparent-age spreads such as APPA-REAL")


@pytest.mark.slow
def test_epsilon_selection_without_spreads_is_one_line_before_building_or_after_the_first_validation(
        sample_shards, tmp_path, float32_policy):
    run_dir = str(tmp_path / "run")
    config = tiny_config(sample_shards, run_dir, best_metric="val_epsilon_error")
    with pytest.raises(trainer_flags.ConfigError, match=r"^--best_metric=val_epsilon_error: the val split of "
                       r".* its manifest's label is 'real'; choose --best_metric=val_mae"):
        train.train(config)
    assert not os.path.exists(run_dir)                       # refused before anything was built
    # A data set that says "apparent" but whose val faces have no spread: the first validation says so.
    relabelled = str(tmp_path / "relabelled")
    shutil.copytree(sample_shards, relabelled)
    manifest = json.load(open(os.path.join(relabelled, "manifest.json")))
    json.dump({**manifest, "label": "apparent"}, open(os.path.join(relabelled, "manifest.json"), "w"))
    with pytest.raises(trainer_flags.ConfigError) as e:
        train.train(dataclasses.replace(config, records=relabelled, steps_per_epoch=1))
    assert str(e.value) == (f"--best_metric=val_epsilon_error: the val split of {relabelled} has no face with "
                            f"an apparent-age spread (age_std > 0); choose --best_metric=val_mae, or "
                            f"--validation_records with apparent-age spreads such as APPA-REAL")
    assert not os.path.exists(os.path.join(run_dir, "best.keras"))
    assert not os.path.exists(os.path.join(run_dir, "history.csv"))


# --------------------------------------------------------------------------- resume guards

def manifest_with(shas: dict) -> dict:
    return {"splits": {split: {"count": 10 * len(v), "shards": [{"file": f"{split}-{i}", "sha256": s}
                                                                 for i, s in enumerate(v)]}
                       for split, v in shas.items()}}


def test_resuming_on_another_data_set_is_refused(tmp_path):
    from records.identity import data_identity
    run = RunDir(str(tmp_path / "run"))
    here = str(tmp_path / "shards")
    started = manifest_with({"train": ["a", "b"], "val": ["c"], "test": ["d"]})
    before = {"records": os.path.abspath(here), "data": data_identity(started)}
    resume.check_same_data(run, before, here, started)                       # the same: fine
    again = dict(started, created="later", flags={"workers": 4})            # a byte-identical re-ingest
    resume.check_same_data(run, before, here, again)
    with pytest.raises(RunDirError) as e:
        resume.check_same_data(run, before, str(tmp_path / "other"), started)
    assert str(e.value) == (f"--records={tmp_path / 'other'} but the run in {run.path} was trained on "
                            f"{os.path.abspath(here)}; pass --records={os.path.abspath(here)} or a new --model_dir")
    changed = manifest_with({"train": ["a", "x"], "val": ["c"], "test": ["d", "e"]})
    with pytest.raises(RunDirError) as e:
        resume.check_same_data(run, before, here, changed)
    assert str(e.value) == (f"--records={here}: not the data set the run in {run.path} started with "
                            f"(test: 1 shards -> 2; train: 1 of 2 shards differ); restore that data set "
                            f"or train into a new --model_dir")
    resume.check_same_data(run, {}, str(tmp_path / "other"), changed)        # an older run.json: compatible


def test_resuming_with_other_training_sources_is_refused(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    before = {"train_records": [os.path.abspath(a), os.path.abspath(b)]}
    mixed = dataclasses.replace(tiny_config(b, run.path), train_records=(a, b))
    resume.check_same_sources(run, before, mixed)                                 # the same: fine
    with pytest.raises(RunDirError) as e:
        resume.check_same_sources(run, before, tiny_config(b, run.path))          # b alone
    assert str(e.value) == (f"--records={b} but the run in {run.path} was trained on "
                            f"{os.path.abspath(a)},{os.path.abspath(b)}; pass the same sources or a new --model_dir")
    resume.check_same_sources(run, {}, tiny_config(b, run.path))                  # an older run.json


def test_resuming_when_a_training_source_changed_is_refused_naming_it(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    mixed = dataclasses.replace(tiny_config(b, run.path), train_records=(a, b))
    started = [manifest_with({"train": ["a1"], "val": ["a2"]}), manifest_with({"train": ["b1", "b2"]})]
    before = {"train_records": [os.path.abspath(a), os.path.abspath(b)],
              "train_data": [resume.training_identity(m) for m in started]}
    resume.check_same_sources(run, before, mixed, started)                        # the same: fine
    val_changed = [manifest_with({"train": ["a1"], "val": ["zz"]}), started[1]]
    resume.check_same_sources(run, before, mixed, val_changed)                    # a's validation split is not trained on
    with pytest.raises(RunDirError) as e:
        resume.check_same_sources(run, before, mixed, [started[0], manifest_with({"train": ["b1", "b9"]})])
    assert str(e.value) == (f"--records: {b} is not the training data the run in {run.path} started with "
                            f"(train: 1 of 2 shards differ); restore that data set or train into a new --model_dir")
    resume.check_same_sources(run, {"train_records": before["train_records"]}, mixed, val_changed)  # older run.json


def test_sources_cropped_with_different_margins_are_warned_about():
    a, b = manifest_with({"train": ["a"]}), manifest_with({"train": ["b"]})
    config = dataclasses.replace(tiny_config("shards/b", "unused"), train_records=("shards/a", "shards/b"))
    assert inputs.mixed_margins(config, [a, dict(b, margin=0.4)], b) is None  # 0.4 is the unrecorded default
    line = inputs.mixed_margins(config, [a, dict(b, margin=0.0)], dict(b, margin=0.0))
    assert line == ("warning: the training sources were cropped with different face margins (shards/a 0.4, "
                    "shards/b 0); predict and export crop with the validation set's 0. Re-ingest with one "
                    "--margin where the source has face boxes, if that is not what you want")


def test_a_batch_larger_than_the_training_split_is_refused():
    twenty = manifest_with({"train": ["a", "b"]})
    inputs.check_batch_size(tiny_config("shards/x", "unused", batch_size=20), twenty)
    with pytest.raises(DataError) as e:
        inputs.check_batch_size(tiny_config("shards/x", "unused", batch_size=21), twenty)
    assert str(e.value) == ("--batch_size=21 is larger than the 20-record training split of shards/x; "
                            "use --batch_size=20 or less")


def trained(sample_shards, tmp_path, epochs=2) -> tuple[str, trainer_flags.TrainConfig]:
    run_dir = str(tmp_path / "run")
    config = tiny_config(sample_shards, run_dir, epochs=epochs)
    assert train.train(config) == run_dir
    return run_dir, config


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["lost", "empty", "garbled"])
def test_a_damaged_checkpoint_index_resumes_instead_of_starting_over(sample_shards, tmp_path, float32_policy,
                                                                       capsys, damage):
    run_dir, config = trained(sample_shards, tmp_path)
    run = RunDir(run_dir)
    history, best = run.read_history(), open(run.best_model, "rb").read()
    index = os.path.join(run.checkpoints, "checkpoint")
    if damage == "lost":
        os.remove(index)
    else:
        open(index, "w").write("" if damage == "empty" else "model_checkpoint_path: {{{\n")
    capsys.readouterr()
    assert train.train(dataclasses.replace(config, epochs=4)) == run_dir
    out = capsys.readouterr().out
    assert f"Resuming {run_dir} after epoch 2" in out
    assert run.read_history()[:2] == history                     # not rewritten
    assert [r["epoch"] for r in run.read_history()] == [1, 2, 3, 4]
    assert sorted(os.listdir(run.checkpoints)) == ["checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index",
                                                   "ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    record = run.read_best_record()
    if record["epoch"] <= 2:                                     # no new best since: best.keras untouched
        assert open(run.best_model, "rb").read() == best


@pytest.mark.slow
def test_a_damaged_latest_checkpoint_falls_back_and_cuts_history_and_best_back(sample_shards, tmp_path,
                                                                               float32_policy, capsys):
    run_dir, config = trained(sample_shards, tmp_path, epochs=3)
    run = RunDir(run_dir)
    history = run.read_history()
    # Epoch 3 was a new best (learning rate 3e-3 on the sample keeps improving), so
    # best.keras is from the epoch about to be lost: the record must not survive it.
    assert run.read_best_record()["epoch"] == 3
    data = os.path.join(run.checkpoints, "ckpt-3.data-00000-of-00001")
    raw = bytearray(open(data, "rb").read())
    raw[len(raw) // 2] ^= 0xFF
    open(data, "wb").write(bytes(raw))
    capsys.readouterr()
    assert train.train(dataclasses.replace(config, epochs=2)) == run_dir   # nothing to train after epoch 2
    out = capsys.readouterr().out
    assert f"Checkpoint {run.checkpoints}/ckpt-3 is unreadable (" in out
    assert "Restored ckpt-2 instead of ckpt-3: epochs after 2 are lost and will be trained again" in out
    assert f"{run.best_model} was saved in epoch 3, after the restored epoch 2: replaced by the model of epoch 2" in out
    assert run.read_history() == history[:2]
    assert run.read_best_record() == {"epoch": 2, "metric": "val_mae", "value": history[1]["val_mae"]}
    assert f"Resuming {run_dir} after epoch 2 (best val_mae {history[1]['val_mae']:.4g})" in out


# TensorFlow's own text when a checkpoint meets a full disk (SaveV2 on a full tmpfs).
_TF_DISK_FULL = ("{{function_node __wrapped__SaveV2_dtypes_3_device_/job:localhost/replica:0/task:0/device:CPU:0}} "
                 "{path}; No space left on device [Op:SaveV2]")


@pytest.mark.slow
def test_a_disk_that_fills_mid_training_is_one_line_and_the_rerun_resumes(sample_shards, tmp_path, float32_policy,
                                                                           monkeypatch):
    run_dir = str(tmp_path / "run")
    config = tiny_config(sample_shards, run_dir, epochs=3)
    real_save = tf.train.CheckpointManager.save

    def save(self, checkpoint_number=None, **kwargs):
        if checkpoint_number == 2:
            path = os.path.join(self.directory, "ckpt-2_temp", "part-00000-of-00001.data-00000-of-00001.tempstate1")
            raise tf.errors.ResourceExhaustedError(None, None, _TF_DISK_FULL.replace("{path}", path))
        return real_save(self, checkpoint_number=checkpoint_number, **kwargs)
    monkeypatch.setattr(tf.train.CheckpointManager, "save", save)
    with pytest.raises(RunDirError) as e:
        train.train(config)
    assert str(e.value) == (f"--model_dir {run_dir}: cannot write {run_dir}/checkpoints/ckpt-2_temp/"
                            f"part-00000-of-00001.data-00000-of-00001.tempstate1 (No space left on device); "
                            f"free space on that disk, then rerun the same command: it resumes from epoch 2")
    monkeypatch.undo()
    assert train.train(config) == run_dir           # the lock was released; epoch 2 is trained again
    assert [r["epoch"] for r in RunDir(run_dir).read_history()] == [1, 2, 3]


@pytest.mark.parametrize("error, line", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/d/best.keras"), ("No space left on device", "/d/best.keras")),
    (OSError(errno.EROFS, os.strerror(errno.EROFS)), ("Read-only file system", "a file")),
    (tf.errors.ResourceExhaustedError(None, None, _TF_DISK_FULL.replace("{path}", "/d/ckpt-1_temp/part")),
     ("No space left on device", "/d/ckpt-1_temp/part")),
    (OSError(errno.EACCES, os.strerror(errno.EACCES), "/d/x"), None),
    (tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor"), None),
    (ValueError("No space left on device"), None),
])
def test_a_full_or_read_only_disk_is_told_apart_from_other_failures(error, line):
    from errors import disk_problem, disk_target
    assert disk_problem(error) == (line[0] if line else None)
    if line:
        assert disk_target(error) == line[1]


# ----------------------------------------------------------------------------- when training stops

@pytest.mark.slow
def test_patience_stops_early_and_keeps_the_best_epoch(sample_shards, tmp_path, float32_policy, capsys):
    # A learning rate far below float32 resolution leaves the weights unchanged, so the
    # validation metric never beats epoch 1: patience 2 stops after epoch 3.
    run_dir = str(tmp_path / "patience")
    train.train(tiny_config(sample_shards, run_dir, epochs=8, patience=2, learning_rate=1e-30))
    run = RunDir(run_dir)
    assert [r["epoch"] for r in run.read_history()] == [1, 2, 3]
    assert run.read_best_record()["epoch"] == 1 and os.path.exists(run.best_model)
    assert ("Training stopped after epoch 3 of 8: val_mae has not improved for 2 epochs (--patience=2)"
            in capsys.readouterr().out.splitlines())


@pytest.mark.slow
def test_time_limit_stops_after_the_epoch_that_passes_it(sample_shards, tmp_path, float32_policy, capsys):
    run_dir = str(tmp_path / "limited")
    train.train(tiny_config(sample_shards, run_dir, epochs=8, time_limit=0.001))   # any epoch passes 1 ms
    run = RunDir(run_dir)
    assert [r["epoch"] for r in run.read_history()] == [1]
    assert run.read_best_record()["epoch"] == 1 and os.path.exists(run.best_model)
    stop = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Training ")]
    assert len(stop) == 1 and stop[0].startswith("Training stopped after epoch 1 of 8: ")
    assert stop[0].endswith("of training passed --time_limit=0s")
    # Without a limit the same command resumes and runs to --epochs, and says so.
    train.train(tiny_config(sample_shards, run_dir, epochs=2))
    assert [r["epoch"] for r in run.read_history()] == [1, 2]
    assert "Training finished: all 2 epochs done" in capsys.readouterr().out.splitlines()


def test_the_time_limit_action_stops_only_after_the_epoch_that_passes_it():
    from trainer import actions
    now = [100.0]
    action = actions.time_limit(60.0, started=100.0, clock=lambda: now[0])
    said = []
    for t in (130.0, 159.0, 161.0):
        now[0] = t
        said.append(action(None))
    assert said == [None, None, "1m1s of training passed --time_limit=1m"]
    assert actions.time_limit(0.0, started=0.0, clock=lambda: 1e9)(None) is None      # 0: no limit


@pytest.mark.parametrize("text, seconds", [("20m", 1200), ("1h30m", 5400), ("90s", 90), ("1h", 3600),
                                           ("2m5s", 125), ("0", 0), ("", 0)])
def test_time_limit_durations(text, seconds):
    from trainer.config import format_duration, parse_duration
    assert parse_duration(text) == seconds
    if seconds:
        assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["90", "20 minutes", "m30", "1m1h", "0m", "-5m", "1.5h"])
def test_a_time_limit_that_is_not_a_duration_is_one_line(text):
    from trainer.config import parse_duration
    with pytest.raises(trainer_flags.ConfigError, match=rf"^--time_limit={text}: not a duration; write "
                                                        r"hours, minutes and seconds such as 20m, 1h30m or 90s"):
        parse_duration(text)


def test_time_limit_with_multi_worker_is_refused(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{}")
    with pytest.raises(trainer_flags.ConfigError, match=r"--time_limit with --strategy=multi_worker"):
        tiny_config("unused", "unused", time_limit=60.0, strategy="multi_worker")


@pytest.mark.slow
def test_a_flipped_byte_in_a_training_shard_is_one_line_naming_it(sample_shards, tmp_path, float32_policy):
    import json
    import shutil
    from errors import DataError

    copy = tmp_path / "shards"
    shutil.copytree(sample_shards, copy)
    manifest = json.load(open(copy / "manifest.json"))
    for entry in manifest["splits"]["train"]["shards"]:     # every one: the epoch's order is random
        shard = copy / entry["file"]
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    with pytest.raises(DataError) as e:
        train.train(tiny_config(str(copy), str(tmp_path / "run"), epochs=1, steps_per_epoch=200))
    line = str(e.value)
    first = copy / manifest["splits"]["train"]["shards"][0]["file"]
    assert line.startswith(f"{first}, ") and ": damaged (a record fails its checksum" in line and "\n" not in line
    assert line.endswith(f"`python -m records verify {copy}` names the record; re-run ingest (or restore the shard)")
