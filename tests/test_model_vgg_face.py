"""VGG-Face / age model shapes as checked facts, and the Keras-2 h5 weights loader."""
import h5py
import numpy as np
import pytest

import model
from model.vgg_face import WEIGHTED_LAYER_NAMES

ORIGINAL_ORDER = (
    ["image"]
    + [n for b, d in enumerate((2, 2, 3, 3, 3), 1)
       for n in [x for i in range(1, d + 1) for x in (f"pad{b}_{i}", f"conv{b}_{i}")] + [f"pool{b}"]]
    + ["fc6", "drop6", "fc7", "drop7", "fc8", "flatten", "softmax"]
)


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


@pytest.mark.slow     # allocates all 145 M weights
def test_full_vgg_face_params_and_layer_order():
    m = model.build_vgg_face("full")
    assert m.count_params() == 145_002_878 == model.FULL_VGG_FACE_PARAMS
    assert [layer.name for layer in m.layers] == ORIGINAL_ORDER
    assert m.input_shape == (None, 224, 224, 3)
    assert m.output_shape == (None, 2622)
    assert tuple(m.get_layer("fc6").kernel.shape) == (7, 7, 512, 4096)
    assert tuple(m.get_layer("conv3_3").kernel.shape) == (3, 3, 256, 256)
    del m


@pytest.mark.slow     # allocates all 145 M weights
def test_full_age_model_counts_and_freezing():
    m = model.build_age_model(variant="full")
    assert _count(m.trainable_weights) == 119_959_653 == model.FULL_TRAINABLE_PARAMS
    assert _count(m.non_trainable_weights) == 14_714_688 == model.FULL_NON_TRAINABLE_PARAMS
    assert "fc8" not in [layer.name for layer in m.layers]
    assert m.input.dtype == "uint8" and m.input_shape == (None, None, None, 3)
    assert model.input_size(m) == 224 and m.get_layer("resize").get_config()["size"] == 224
    assert m.output_shape == (None, 101) and m.layers[-1].name == "age"
    assert [layer.name for layer in m.layers[1:3]] == ["resize", "preprocess"]
    trainable = {layer.name for layer in m.layers if layer.trainable and layer.weights}
    assert trainable == {"fc6", "fc7", "predictions"}
    assert tuple(model.feature_extractor(m).output.shape) == (None, 7, 7, 512)
    del m


def test_input_size_sets_fc6_kernel_to_pool5_size():
    for size, k in [(64, 2), (96, 3), (32, 1)]:
        m = model.build_age_model(variant="tiny", input_size=size)
        assert model.pool5_size(size) == k
        assert tuple(m.get_layer("fc6").kernel.shape) == (k, k, 12, 24)
        assert m.output_shape == (None, 101)
    assert model.default_input_size("full") == 224 and model.default_input_size("tiny") == 32
    with pytest.raises(ValueError, match="unknown model variant"):
        model.build_age_model(variant="huge")


# --- the Keras 2 h5 loader -------------------------------------------------------------------

def _keras2_file(path, variant="tiny", names="keras2", drop=None, bad_shape=None, seed=0):
    """Write a Keras-2 `save_weights`-layout file for VGG-Face with distinct random values.

    names="keras2": Sequential auto names (zero_padding2d_1, conv2d_1, ..., activation_1),
    as in the distributed vgg_face_weights.h5.  Returns {our layer name: [kernel, bias]}.
    """
    spec = model.VARIANTS[variant]
    rng = np.random.default_rng(seed)
    shapes, cin = [], 3
    for filters, depth in zip(spec.conv_filters, (2, 2, 3, 3, 3)):
        for _ in range(depth):
            shapes.append((3, 3, cin, filters))
            cin = filters
    k = model.pool5_size(spec.input_size)
    shapes += [(k, k, cin, spec.fc6_units), (1, 1, spec.fc6_units, spec.fc7_units),
               (1, 1, spec.fc7_units, spec.fc8_units)]
    values = {}
    layer_names, counters = [], {}

    def auto(kind):
        counters[kind] = counters.get(kind, 0) + 1
        return f"{kind}_{counters[kind]}"

    with h5py.File(path, "w") as f:
        def add(name, arrays):
            g = f.create_group(name)
            wnames = [f"{name}/kernel:0", f"{name}/bias:0"] if arrays else []
            g.attrs["weight_names"] = np.array([w.encode() for w in wnames], dtype="S") if wnames else np.array([])
            for w, a in zip(wnames, arrays):
                g.create_dataset(w, data=a)
            layer_names.append(name)

        for ours, shape in zip(WEIGHTED_LAYER_NAMES, shapes):
            if ours == drop:
                continue
            if bad_shape == ours:
                shape = shape[:-1] + (shape[-1] + 1,)
            arrays = [rng.standard_normal(shape).astype("float32"),
                      rng.standard_normal(shape[-1:]).astype("float32")]
            values[ours] = arrays
            if ours.startswith("conv"):
                add(auto("zero_padding2d") if names == "keras2" else "pad" + ours[4:], [])
            add(auto("conv2d") if names == "keras2" else ours, arrays)
            if ours.endswith("_2") and ours in ("conv1_2", "conv2_2") or ours.endswith("_3"):
                add(auto("max_pooling2d") if names == "keras2" else "pool" + ours[4], [])
            if ours in ("fc6", "fc7"):
                add(auto("dropout"), [])
        add(auto("flatten"), [])
        add(auto("activation"), [])
        order = layer_names if names == "keras2" else list(reversed(layer_names))
        f.attrs["layer_names"] = np.array([n.encode() for n in order], dtype="S")
    return values


def _assert_loaded(m, values, names):
    for name in names:
        got = m.get_layer(name).get_weights()
        np.testing.assert_array_equal(got[0], values[name][0], err_msg=name)
        np.testing.assert_array_equal(got[1], values[name][1], err_msg=name)


def test_load_keras2_layout_into_vgg_face_and_age_model(tmp_path):
    path = tmp_path / "vgg_face_weights.h5"
    values = _keras2_file(path)
    vgg = model.build_vgg_face("tiny")
    loaded = model.load_vgg_face_weights(vgg, path)
    assert loaded == list(WEIGHTED_LAYER_NAMES)
    _assert_loaded(vgg, values, WEIGHTED_LAYER_NAMES)

    age = model.build_age_model(str(path), variant="tiny", gender=True)  # the file's fc8 is skipped
    _assert_loaded(age, values, WEIGHTED_LAYER_NAMES[:-1])
    # the new heads keep their own initialization
    assert age.get_layer("predictions").kernel.shape == (1, 1, 20, 101)


def test_load_matches_by_name_when_the_file_uses_our_names(tmp_path):
    path = tmp_path / "ours.h5"
    values = _keras2_file(path, names="ours", seed=3)  # layer_names attribute in reverse order
    age = model.build_age_model(variant="tiny")
    assert model.load_vgg_face_weights(age, path) == list(WEIGHTED_LAYER_NAMES[:-1])
    _assert_loaded(age, values, WEIGHTED_LAYER_NAMES[:-1])


def test_missing_file_error(tmp_path):
    path = tmp_path / "nowhere" / "vgg_face_weights.h5"
    with pytest.raises(model.WeightsError) as e:
        model.build_age_model(str(path), variant="tiny")
    msg = str(e.value)
    assert "not found" in msg and str(path) in msg and "--weights PATH" in msg and "--weights none" in msg
    assert "\n" not in msg


def test_not_hdf5_error(tmp_path):
    path = tmp_path / "vgg_face_weights.h5"
    path.write_text("<html>404 Not Found</html>")
    with pytest.raises(model.WeightsError, match="is not an HDF5 file") as e:
        model.load_vgg_face_weights(model.build_vgg_face("tiny"), path)
    assert str(path) in str(e.value)


def test_not_keras2_layout_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(model.WeightsError, match="no 'layer_names' attribute"):
        model.load_vgg_face_weights(model.build_vgg_face("tiny"), path)


def test_wrong_number_of_weighted_layers_error(tmp_path):
    path = tmp_path / "short.h5"
    _keras2_file(path, drop="conv4_2")
    m = model.build_vgg_face("tiny")
    with pytest.raises(model.WeightsError, match=r"has 15 layers with weights, model 'vgg_face_tiny' expects 16"):
        model.load_vgg_face_weights(m, path)
    path2 = tmp_path / "shorter.h5"
    _keras2_file(path2, drop="conv1_1")
    with h5py.File(path2, "a") as f:  # now 15 weighted layers, age model wants 15 (or 16): drop one more
        names = [n.decode() for n in f.attrs["layer_names"]]
        f.attrs["layer_names"] = np.array([n.encode() for n in names if n != "conv2d_1"], dtype="S")
    with pytest.raises(model.WeightsError, match=r"has 14 layers with weights.*expects 15 \(or 16 with fc8\)"):
        model.build_age_model(str(path2), variant="tiny")


def test_shape_mismatch_error_names_layer_and_shapes_and_loads_nothing(tmp_path):
    path = tmp_path / "bad.h5"
    _keras2_file(path, bad_shape="conv3_2")
    m = model.build_vgg_face("tiny")
    before = m.get_layer("conv1_1").get_weights()[0].copy()
    with pytest.raises(model.WeightsError) as e:
        model.load_vgg_face_weights(m, path)
    msg = str(e.value)
    assert "conv3_2" in msg and "(3, 3, 8, 9)" in msg and "(3, 3, 8, 8)" in msg and str(path) in msg
    np.testing.assert_array_equal(m.get_layer("conv1_1").get_weights()[0], before)  # nothing assigned


def test_full_size_file_into_tiny_model_is_a_shape_error(tmp_path):
    path = tmp_path / "full_first_layer.h5"
    _keras2_file(path, variant="tiny")
    with h5py.File(path, "a") as f:  # replace the first conv with full-size shapes
        g = f["conv2d_1"]
        del g["conv2d_1/kernel:0"], g["conv2d_1/bias:0"]
        g.create_dataset("conv2d_1/kernel:0", data=np.zeros((3, 3, 3, 64), "float32"))
        g.create_dataset("conv2d_1/bias:0", data=np.zeros((64,), "float32"))
    with pytest.raises(model.WeightsError, match=r"conv1_1.*\(3, 3, 3, 64\).*\(3, 3, 3, 4\)"):
        model.build_age_model(str(path), variant="tiny")


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_weights_file_is_one_line(tmp_path, keep):
    # An interrupted download: the HDF5 signature is there, the data is not.
    path = tmp_path / "vgg_face_weights.h5"
    _keras2_file(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(model.WeightsError) as e:
        model.load_vgg_face_weights(model.build_vgg_face("tiny"), path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: truncated or not an HDF5 file") and "\n" not in msg
