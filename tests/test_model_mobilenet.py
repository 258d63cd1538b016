"""The mobilenet family (model.mobilenet, MobileNetV3-Small) through the family seam: its
build at a small input, its pixel normalisation, its depths, one training step, a safe-mode
save/load, its weights loader, the feature cache's head, the config's family checks, and
(slow) train with the cache -> evaluate -> export (SavedModel + float16 TFLite) -> predict."""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import model
from conftest import run_module
from model import families, mobilenet
from trainer import flags as trainer_flags
from trainer import loop

SIZE = 32          # the smallest input the trunk takes: fast tests
SPEC = mobilenet.VARIANTS["mobilenet"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _net(seed=0, **kwargs):
    loop.set_seeds(seed)
    return model.build_age_model(None, variant="mobilenet", input_size=SIZE, **kwargs)


def _pixels(n=4, size=SIZE, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _trained(net, names):
    return {layer.name for layer in net.layers if layer.trainable and layer.weights and layer.name in names}


def test_the_registry_maps_each_variant_to_one_family():
    assert {name: f.name for name, f in families.FAMILY_OF.items()} == {
        "full": "vgg", "small": "vgg", "tiny": "vgg", "mobilenet": "mobilenet"}
    assert families.VARIANTS["mobilenet"] is SPEC and families.default_input_size("mobilenet") == 96
    assert families.TRAINABLE_FROM == ("fc6", "conv5_1", "all", "fc", "expanded_conv_10_expand")
    with pytest.raises(ValueError, match="input_size must be >= 32 for the mobilenet family"):
        families.resolve_input_size("mobilenet", 31)


def test_build_at_a_small_input_has_the_family_layers_and_its_pixel_scale():
    net = _net(gender=True, trainable_from="all")
    names = [layer.name for layer in net.layers]
    assert names[1:3] == ["resize", "preprocess"] and model.input_size(net) == SIZE
    for name in ("conv", "expanded_conv_10_expand", "conv_1", "avg_pool", "fc", "drop", "predictions", "age",
                 "gender"):
        assert name in names, name
    assert model.model_family(net) is mobilenet.FAMILY
    assert model.feature_extractor(net).output_shape == (None, 1, 1, 576)
    assert sorted(map(tuple, model.head(net).output_shape)) == [(None, 2), (None, 101)]
    # Preprocess maps 0..255 to [-1, 1], the scale of Keras's own include_preprocessing.
    pre = net.get_layer("preprocess")
    ends = np.asarray(pre(np.array([[[[0, 255, 127]]]], np.uint8)))
    np.testing.assert_allclose(ends.ravel(), [-1.0, 1.0, -0.5 / 127.5], atol=1e-6)
    assert not any(isinstance(layer, keras.layers.Rescaling) for layer in net.layers)
    out = net(_pixels(size=40), training=False)          # any input size: resized inside
    assert out["age"].shape == (4, 101)
    np.testing.assert_allclose(np.sum(out["age"], -1), 1.0, atol=1e-5)


def test_each_depth_trains_its_layers_and_other_families_depths_are_refused():
    from model.age import set_trainable_from
    head = {"fc", "predictions"}
    last_block = {"expanded_conv_10_expand", "expanded_conv_10_depthwise", "expanded_conv_10_project", "conv_1"}
    probe = head | last_block | {"conv"}
    net = _net()
    assert _trained(net, probe) == head                                   # default: the family's first
    for depth, trained in (("expanded_conv_10_expand", head | last_block), ("all", probe), ("fc", head)):
        set_trainable_from(net, depth, mobilenet.FAMILY)
        assert _trained(net, probe) == trained, depth
    with pytest.raises(ValueError, match="unknown trainable_from 'conv5_1' for the mobilenet family"):
        set_trainable_from(net, "conv5_1", mobilenet.FAMILY)


def test_one_training_step_changes_the_trunk_and_the_head():
    """One eager step (the trainer's compiled step is the slow tests' business)."""
    net = _net(trainable_from="all", dropout=0.0)
    before = {name: np.array(net.get_layer(name).weights[0]) for name in ("conv", "fc", "predictions")}
    optimizer = keras.optimizers.Adam(1e-2)
    ages = np.array([5, 30, 60, 90], np.int32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(ages, net(_pixels(), training=True)))
    optimizer.apply_gradients(zip(tape.gradient(loss, net.trainable_variables), net.trainable_variables))
    assert np.isfinite(float(loss))
    for name, value in before.items():
        assert not np.allclose(value, np.array(net.get_layer(name).weights[0])), name


def test_save_and_load_in_safe_mode_gives_the_same_ages(tmp_path):
    net = _net(trainable_from="all")
    path = str(tmp_path / "best.keras")
    net.save(path)
    model.register_layers()
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    pixels = _pixels(seed=1)
    np.testing.assert_allclose(loaded(pixels, training=False), net(pixels, training=False), atol=1e-6)
    assert model.model_family(loaded) is mobilenet.FAMILY and model.input_size(loaded) == SIZE
    assert loaded.get_layer("preprocess").get_config()["scale"] == pytest.approx(1 / 127.5)
    momentum = {layer.momentum for layer in loaded.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momentum == {mobilenet.BATCH_NORM_MOMENTUM} == {0.99}


def _backbone_weights(path, seed=5):
    """A user's MobileNetV3-Small weights file (include_top=False, as Keras saves it)."""
    keras.utils.set_random_seed(seed)
    source = keras.applications.MobileNetV3Small(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None,
                                                 include_preprocessing=False)
    source.save_weights(path)
    return source


def test_the_weights_loader_copies_a_users_file_by_layer_name_and_refuses_others(tmp_path):
    path = str(tmp_path / "mnv3.weights.h5")
    source = _backbone_weights(path)
    loop.set_seeds(0)
    net = model.build_age_model(path, variant="mobilenet", input_size=SIZE)
    weighted = [layer for layer in source.layers if layer.weights]
    assert len(weighted) > 50
    for layer in weighted:
        for a, b in zip(layer.get_weights(), net.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    # The trunk's features are the file's network's own (its preprocessing: [-1, 1]).
    pixels = _pixels(seed=2)
    own = source(pixels.astype(np.float32) / 127.5 - 1.0, training=False)
    np.testing.assert_allclose(model.feature_extractor(net)(pixels, training=False)[:, 0, 0],
                               np.mean(np.asarray(own), axis=(1, 2)), rtol=1e-4, atol=1e-4)
    missing, other = str(tmp_path / "none.h5"), str(tmp_path / "notes.weights.h5")
    with open(other, "w") as f:
        f.write("not weights")
    for bad, message in ((missing, "MobileNetV3-Small weights file not found: "),
                         (other, f"{other}: cannot be loaded into MobileNetV3-Small")):
        with pytest.raises(model.WeightsError) as e:
            model.build_age_model(bad, variant="mobilenet", input_size=SIZE)
        assert str(e.value).startswith(message) and "\n" not in str(e.value)
        assert str(e.value).endswith("with --weights, or --weights none")


def test_the_head_on_the_feature_layer_reproduces_the_model():
    net = _net()
    pixels = _pixels(seed=3)
    features = model.feature_extractor(net)(pixels, training=False)
    np.testing.assert_allclose(model.head(net)(features, training=False), net(pixels, training=False),
                               atol=1e-6)


def _config(**overrides):
    values = dict(records="unused", model_dir="unused", weights=None, variant="mobilenet", epochs=1,
                  strategy="default")
    values.update(overrides)
    return trainer_flags.TrainConfig(**values).check()


def test_the_config_checks_the_variants_family():
    assert _config().trainable_from == "all"
    assert _config(weights=__file__).trainable_from == "fc"        # a file that exists
    with pytest.raises(trainer_flags.ConfigError) as e:
        _config(trainable_from="conv5_1")
    assert str(e.value) == ("--trainable_from=conv5_1 with --variant=mobilenet: the mobilenet family trains "
                            "from one of fc, expanded_conv_10_expand, all")
    with pytest.raises(trainer_flags.ConfigError, match="--cache_features with --weights=none and no "
                       "--init_from: .* pass --weights=mobilenet_v3_small_no_top.weights.h5 or drop"):
        _config(cache_features=True)
    with pytest.raises(trainer_flags.ConfigError, match="--cache_features with --trainable_from=all: the cache "
                       "holds a frozen trunk's features; use --trainable_from=fc "):
        _config(weights=__file__, cache_features=True, trainable_from="all")
    with pytest.raises(trainer_flags.ConfigError, match="the vgg family trains from one of fc6, conv5_1, all"):
        _config(variant="tiny", trainable_from="fc")


@pytest.mark.slow
def test_train_on_the_feature_cache_then_export_float16_tflite_and_predict(sample_shards, tmp_path):
    """A user's weights file, the cache (trunk frozen at avg_pool), the run's own
    evaluation, serving.export --tflite float16 and serving.predict, as commands."""
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image

    shards = str(tmp_path / "shards")
    shutil.copytree(sample_shards, shards)       # the cache is written inside the shard directory
    weights = str(tmp_path / "mnv3.weights.h5")
    _backbone_weights(weights)
    run = str(tmp_path / "run")
    result = run_module("trainer", "--variant=mobilenet", f"--weights={weights}", "--cache_features",
                        f"--records={shards}", f"--model_dir={run}", "--epochs=2", "--steps_per_epoch=2",
                        "--batch_size=16", cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Feature cache: building" in result.stdout
    info = json.load(open(os.path.join(run, "run.json")))
    assert (info["variant"], info["input_size"], info["trainable_from"], info["cache_features"]) == \
        ("mobilenet", 96, "fc", True)
    [cache] = [name for name in os.listdir(os.path.join(shards, "features")) if not name.startswith(".")]
    manifest = json.load(open(os.path.join(shards, "features", cache, "manifest.json")))
    assert cache.startswith("mobilenet-") and manifest["feature_shape"] == [1, 1, 576]
    report = json.load(open(os.path.join(run, "report.json")))
    assert 0 < report["mae"] < 100

    out = str(tmp_path / "export")
    result = run_module("serving.export", f"--model_dir={run}", f"--out={out}", "--tflite=float16", cwd=REPO,
                        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model.register_layers()
    net = keras.saving.load_model(os.path.join(run, "best.keras"), safe_mode=True, compile=False)
    pixels = _pixels(3, size=96, seed=4)
    keras_age = (np.asarray(net(pixels, training=False), np.float64) * np.arange(101)).sum(-1)
    served = tf.saved_model.load(out).signatures["predict_pixels"](pixels=tf.constant(pixels))
    np.testing.assert_allclose(served["apparent_age"].numpy(), keras_age, atol=0.01)
    runner = Interpreter(model_path=os.path.join(out, "model.tflite")).get_signature_runner("serve")
    lite = [float(runner(pixels=pixels[i:i + 1])["apparent_age"][0]) for i in range(3)]
    np.testing.assert_allclose(lite, keras_age, atol=0.5)      # float16 weights

    face = str(tmp_path / "face.png")
    Image.fromarray(pixels[0]).save(face)
    result = run_module("serving.predict", f"--model_dir={run}", "--no_detect", "--json", face, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    [entry] = json.loads(result.stdout)
    assert entry["error"] is None and abs(entry["faces"][0]["apparent_age"] - keras_age[0]) < 0.01
