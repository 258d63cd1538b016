"""Behaviour of the tiny DEX age model: freezing, feature/head split, saving, heads, mixed precision."""
import ast
import pathlib

import keras
import numpy as np
import pytest

import model

ROOT = pathlib.Path(__file__).resolve().parents[1]
FROZEN = [f"conv{b}_{i}" for b, d in enumerate((2, 2, 3, 3, 3), 1) for i in range(1, d + 1)]


def _images(n=8, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _ages(n=8, seed=1):
    return np.random.default_rng(seed).integers(0, 101, (n,)).astype("int32")


def _compile(m, gender=False):
    if gender:
        m.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss={"age": "sparse_categorical_crossentropy", "gender": "sparse_categorical_crossentropy"},
                  metrics={"gender": ["accuracy"]})
    else:
        m.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    return m


@pytest.fixture
def policy():
    yield keras.mixed_precision.set_global_policy
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_frozen_layers_do_not_change_in_a_training_step():
    keras.utils.set_random_seed(0)
    m = _compile(model.build_age_model(variant="tiny"))
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in m.layers if layer.weights}
    for _ in range(2):
        m.train_on_batch(_images(), _ages())
    for name in FROZEN:
        assert not m.get_layer(name).trainable
        for old, new in zip(before[name], m.get_layer(name).get_weights()):
            np.testing.assert_array_equal(old, new, err_msg=name)
    for name in ("fc6", "fc7", "predictions"):
        assert any(not np.array_equal(o, n) for o, n in zip(before[name], m.get_layer(name).get_weights())), name


def test_preprocess_subtracts_the_vgg_face_rgb_mean_on_the_0_255_scale():
    m = model.build_age_model(variant="tiny")
    assert m.input.dtype == "uint8"
    pre = keras.Model(m.input, m.get_layer("preprocess").output)
    x = _images(2)
    expected = x.astype("float32") - np.array([129.1863, 104.7624, 93.5940], "float32")
    np.testing.assert_allclose(pre.predict(x, verbose=0), expected, rtol=0, atol=1e-4)
    assert model.VGG_FACE_MEAN_RGB == (129.1863, 104.7624, 93.5940)


def test_head_of_features_equals_the_age_model_and_shares_weights():
    keras.utils.set_random_seed(1)
    for gender in (False, True):
        m = model.build_age_model(variant="tiny", input_size=64, gender=gender)
        fx, hd = model.feature_extractor(m), model.head(m)
        x = _images(4, size=64)
        feats = fx.predict(x, verbose=0)
        assert feats.shape == (4, 2, 2, 12)
        full, split = m.predict(x, verbose=0), hd.predict(feats, verbose=0)
        if gender:
            assert set(split) == {"age", "gender"}
            for k in ("age", "gender"):
                np.testing.assert_allclose(split[k], full[k], rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_allclose(split, full, rtol=1e-5, atol=1e-6)
        # float16 cached features are accepted (cast to the head's float32 input)
        half = hd.predict(feats.astype("float16"), verbose=0)
        np.testing.assert_allclose(half["age"] if gender else half, full["age"] if gender else full, atol=1e-2)
        head_vars = {id(v) for v in hd.trainable_weights}
        model_vars = {id(v) for v in m.trainable_weights}
        assert head_vars == model_vars  # training the head trains the age model
        assert not fx.trainable_weights and len(fx.non_trainable_weights) == 26


def test_gender_head_shapes_and_names():
    m = model.build_age_model(variant="tiny", gender=True)
    assert isinstance(m.output, dict) and sorted(m.output_names) == ["age", "gender"]
    out = m.predict(_images(3), verbose=0)
    assert isinstance(out, dict) and set(out) == {"age", "gender"}
    assert out["age"].shape == (3, 101) and out["gender"].shape == (3, 2)
    np.testing.assert_allclose(out["age"].sum(-1), 1, rtol=1e-5)
    np.testing.assert_allclose(out["gender"].sum(-1), 1, rtol=1e-5)
    assert m.get_layer("gender_predictions").kernel.shape == (1, 1, 20, 2)
    assert m.get_layer("predictions").kernel.shape == (1, 1, 20, 101)
    trainable = {layer.name for layer in m.layers if layer.trainable and layer.weights}
    assert trainable == {"fc6", "fc7", "predictions", "gender_predictions"}
    plain = model.build_age_model(variant="tiny")
    assert plain.layers[-1].name == "age" and not isinstance(plain.output, (dict, list))
    assert model.build_age_model(variant="tiny", num_classes=7).output_shape == (None, 7)


@pytest.mark.slow
@pytest.mark.parametrize("gender", [False, True])
def test_trained_model_saves_as_keras_and_reloads_in_safe_mode(tmp_path, gender):
    keras.utils.set_random_seed(2)
    m = _compile(model.build_age_model(variant="tiny", gender=gender), gender)
    x, y = _images(), _ages()
    targets = {"age": y, "gender": y % 2} if gender else y
    m.fit(x, targets, epochs=1, batch_size=4, verbose=0)
    path = tmp_path / "best.keras"
    m.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    a, b = m.predict(x, verbose=0), loaded.predict(x, verbose=0)
    if gender:
        for k in ("age", "gender"):
            np.testing.assert_array_equal(a[k], b[k])
    else:
        np.testing.assert_array_equal(a, b)
    assert [layer.trainable for layer in loaded.layers] == [layer.trainable for layer in m.layers]
    loaded.evaluate(x, targets, verbose=0)  # the compile config came back with the model


@pytest.mark.parametrize("name,compute", [("mixed_bfloat16", "bfloat16"), ("mixed_float16", "float16")])
def test_mixed_precision_keeps_softmax_outputs_float32(policy, name, compute):
    policy(name)
    m = model.build_age_model(variant="tiny", gender=True)
    assert m.get_layer("preprocess").output.dtype == compute
    assert m.get_layer("fc7").compute_dtype == compute
    assert m.get_layer("fc7").kernel.dtype == "float32"
    out = m.predict(_images(2), verbose=0)
    assert out["age"].dtype == np.float32 and out["gender"].dtype == np.float32
    assert np.isfinite(out["age"]).all()
    hd = model.head(m)
    assert hd.predict(model.feature_extractor(m).predict(_images(2), verbose=0), verbose=0)["age"].dtype == np.float32
    if name == "mixed_bfloat16":
        _compile(m, gender=True).train_on_batch(_images(), {"age": _ages(), "gender": _ages() % 2})


def test_model_package_uses_keras3_apis_only():
    for path in (ROOT / "model").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "tensorflow" for a in node.names), path
            if isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "tensorflow", path
            if isinstance(node, ast.Attribute):
                assert node.attr != "Lambda", path
