"""The small variant: its size (checked facts), BatchNorm under --trainable_from and
under a two-replica strategy, and its export (SavedModel, float16 TFLite size)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import model
from model import vgg_face
from trainer import loop

REPO = str(pathlib.Path(__file__).resolve().parents[1])
SMALL = model.VARIANTS["small"]
BN_NAMES = [f"bn{b}_{i}" for b, d in enumerate(vgg_face.BLOCK_DEPTHS, 1) for i in range(1, d + 1)]
MAX_PARAMS = 2_000_000
MAX_TFLITE_FLOAT16_BYTES = 4 * 1024 * 1024


def _batch(n=8, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[n // 2:] //= 3        # two different halves: per-replica statistics would differ from the batch's
    labels = {"age": rng.integers(1, 90, n).astype(np.int32), "age_mean": np.zeros(n, np.float32),
              "age_std": np.zeros(n, np.float32)}
    return images, labels


def _moving(net, names):
    return {name: [np.array(v) for v in (net.get_layer(name).moving_mean, net.get_layer(name).moving_variance)]
            for name in names}


def test_small_variant_size_and_layers_are_checked_facts():
    net = model.build_age_model(None, variant="small", trainable_from="all")
    assert net.count_params() == model.SMALL_PARAMS <= MAX_PARAMS
    assert model.default_input_size("small") == SMALL.input_size == 64
    # Distinct widths (and distinct from 3 channels, 2 genders, 101 ages): a wiring
    # mistake cannot pass a shape test by coincidence.
    sizes = list(SMALL.conv_filters) + [SMALL.fc6_units, SMALL.fc7_units]
    assert len(set(sizes)) == len(sizes) and not set(sizes) & {2, 3, 101}
    # conv (no bias) -> bnB_I -> reluB_I, then the layer names transfer, the feature
    # cache and export rely on.
    names = [layer.name for layer in net.layers]
    for conv, bn in zip(vgg_face.CONV_NAMES, BN_NAMES):
        assert names.index(bn) == names.index(conv) + 1
        assert not net.get_layer(conv).use_bias
    for name in ("pool5", "fc6", "fc7", "predictions", "age"):
        assert name in names
    assert model.feature_extractor(net).output_shape == (None, 2, 2, SMALL.conv_filters[-1])
    assert model.head(net).output_shape == (None, 101)


def test_a_frozen_batchnorm_stays_in_inference_mode():
    keras.utils.set_random_seed(0)
    net = model.build_age_model(None, variant="small", trainable_from="conv5_1", dropout=0.0)
    frozen, trained = BN_NAMES[:-3], BN_NAMES[-3:]
    for name in frozen:
        net.get_layer(name).moving_mean.assign(np.full(net.get_layer(name).moving_mean.shape, 0.5, np.float32))
    images, labels = _batch()
    # In a training call a frozen BatchNorm normalises with its moving statistics: the
    # features before the first trained block are those of an inference call.
    upto = keras.Model(net.inputs, net.get_layer("pool4").output)
    np.testing.assert_allclose(upto(images, training=True), upto(images, training=False), rtol=1e-5, atol=1e-5)
    before = _moving(net, BN_NAMES)
    optimizer = keras.optimizers.Adam(1e-3)
    optimizer.build(net.trainable_variables)
    steps = loop.Loop(tf.distribute.get_strategy(), net, optimizer, global_batch_size=8, with_gender=False)
    steps.train(iter(tf.data.Dataset.from_tensors((images, labels)).repeat()), 2)
    after = _moving(net, BN_NAMES)
    for name in frozen:
        for b, a in zip(before[name], after[name]):
            np.testing.assert_array_equal(b, a, err_msg=name)
    for name in trained:
        assert not np.allclose(before[name][0], after[name][0]), name
    assert {v.path.split("/")[0] for v in net.trainable_variables} >= set(trained) | {"conv5_1", "fc6"}
    assert not {v.path.split("/")[0] for v in net.trainable_variables} & set(frozen)


# Run in a fresh process: the CPU is split into two logical devices before TensorFlow starts.
TWO_REPLICAS = r"""
import json, sys
import numpy as np, tensorflow as tf
from trainer import distribution, loop
distribution.split_cpu(2)
import model
sys.path.insert(0, "tests")
from test_model_small import BN_NAMES, _batch, _moving
out = {}
for name in ("default", "mirrored"):
    strategy = distribution.make_strategy(name)
    loop.set_seeds(0)
    with strategy.scope():
        net = model.build_age_model(None, variant="small", trainable_from="all", dropout=0.0)
        optimizer = tf.keras.optimizers.SGD(0.1)
        optimizer.build(net.trainable_variables)
    images, labels = _batch()
    data = iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors((images, labels)).repeat()))
    loop.Loop(strategy, net, optimizer, global_batch_size=8, with_gender=False).train(data, 2)
    out[name] = {"replicas": strategy.num_replicas_in_sync,
                 "moving": {k: [v.tolist() for v in vs] for k, vs in _moving(net, BN_NAMES).items()},
                 "conv5_3": np.array(net.get_layer("conv5_3").kernel).ravel()[:50].tolist()}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_batchnorm_statistics_under_two_replicas_equal_one_device():
    env = {**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["default"]["replicas"] == 1 and out["mirrored"]["replicas"] == 2
    # Each replica sees half the batch; the synchronized BatchNorm normalises with the
    # whole batch's statistics, so the moving statistics and the weights agree with one
    # device (the halves differ: per-replica statistics would not).
    for name in BN_NAMES:
        for one, two in zip(out["default"]["moving"][name], out["mirrored"]["moving"][name]):
            np.testing.assert_allclose(two, one, rtol=1e-4, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(out["mirrored"]["conv5_3"], out["default"]["conv5_3"], rtol=1e-3, atol=1e-5)


@pytest.mark.slow
def test_small_exports_a_saved_model_and_a_float16_tflite_under_4_mb(sample_shards, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from serving.export import export_run
    from storage.run_dir import RunDir

    keras.utils.set_random_seed(3)
    net = model.build_age_model(None, variant="small", trainable_from="all")
    for name in BN_NAMES:              # moving statistics away from their initial values
        layer = net.get_layer(name)
        layer.moving_mean.assign(np.random.default_rng(1).normal(0, 1, layer.moving_mean.shape))
        layer.moving_variance.assign(np.random.default_rng(2).uniform(0.5, 2, layer.moving_variance.shape))
    run = str(tmp_path / "run")
    os.makedirs(run)
    net.save(os.path.join(run, "best.keras"))
    RunDir(run).write_info({"records": sample_shards, "variant": "small", "task": "age", "input_size": 64})
    out = str(tmp_path / "export")
    export_run(run, out, tflite="float16", log=lambda *_: None)
    assert json.load(open(os.path.join(out, "export.json")))["input_size"] == 64
    size = os.path.getsize(os.path.join(out, "model.tflite"))
    assert size <= MAX_TFLITE_FLOAT16_BYTES, size
    pixels = np.random.default_rng(4).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    keras_age = (np.asarray(net(pixels, training=False), np.float64) * np.arange(101)).sum(-1)
    served = tf.saved_model.load(out).signatures["predict_pixels"](pixels=tf.constant(pixels))
    np.testing.assert_allclose(served["apparent_age"].numpy(), keras_age, atol=0.01)
    runner = Interpreter(model_path=os.path.join(out, "model.tflite")).get_signature_runner("serve")
    lite = [float(runner(pixels=pixels[i:i + 1])["apparent_age"][0]) for i in range(3)]
    np.testing.assert_allclose(lite, keras_age, atol=0.5)      # float16 weights
