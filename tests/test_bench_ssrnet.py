"""bench.ssrnet (SSR-Net rebuilt in Keras 3, loading the authors' Keras-2 weight files by
layer name) and bench.peers' data and score helpers.  The authors' weights are never
committed: a file in their layout is written here from random weights."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from bench import peers, ssrnet

# The authors' ssrnet_3_3_3_64_1.0_1.0.h5 (pre-trained/imdb/) holds 40,915 numbers.
PUBLISHED_PARAMETERS = 40915


@pytest.fixture(scope="module")
def net():
    return ssrnet.build()


def save_keras2_layout(model, path, skip=(), reshape=None):
    """`model`'s weights as Keras 2's save_weights wrote them: a group per layer named
    by the layer, its `weight_names` attribute, datasets `<layer>/<name>:0`."""
    with h5py.File(path, "w") as f:
        names = [layer.name for layer in model.layers if layer.name not in skip]
        f.attrs["layer_names"] = np.array([n.encode() for n in names])
        for layer in model.layers:
            if layer.name in skip:
                continue
            group = f.create_group(layer.name)
            weight_names = []
            for variable in layer.weights:
                name = f"{layer.name}/{variable.name}:0"
                value = np.asarray(variable)
                if reshape and name == reshape:
                    value = value.reshape(-1)
                group.create_dataset(name, data=value)
                weight_names.append(name.encode())
            group.attrs["weight_names"] = np.array(weight_names)


def test_the_architecture_has_the_published_parameter_count_and_layer_names(net):
    assert net.count_params() == PUBLISHED_PARAMETERS
    with_weights = {layer.name for layer in net.layers if layer.weights}
    assert with_weights == ({f"conv2d_{i}" for i in range(1, 15)} | {f"batch_normalization_{i}" for i in range(1, 9)}
                            | {f"dense_{i}" for i in range(1, 10)}
                            | {f"{kind}{k}" for k in (1, 2, 3)
                               for kind in ("delta_s", "pred_age_stage", "local_delta_stage")})
    assert net.get_layer("conv2d_1").kernel.shape == (3, 3, 3, 32)       # the x stream first
    assert net.get_layer("conv2d_5").kernel.shape == (3, 3, 3, 16)       # then the s stream
    assert net.get_layer("delta_s1").kernel.shape == (160, 1)            # 4x4x10 features
    assert net.get_layer("delta_s2").kernel.shape == (90, 1)             # 3x3x10
    assert net.output.shape == (None, 1)


def test_weights_in_the_authors_layout_load_by_name_and_give_the_same_ages(net, tmp_path):
    rng = np.random.default_rng(0)
    source = ssrnet.build()
    for variable in source.weights:
        variable.assign(rng.normal(0, 0.3, variable.shape).astype(np.float32) + (
            1.0 if "variance" in variable.name else 0.0))
    for k in (1, 2, 3):          # interval scales away from -1 (a width of 0: an infinite age)
        source.get_layer(f"delta_s{k}").kernel.assign(np.zeros(source.get_layer(f"delta_s{k}").kernel.shape))
    path = tmp_path / "ssrnet.h5"
    save_keras2_layout(source, path)
    loaded = ssrnet.build()
    ssrnet.load_weights(loaded, str(path))
    faces = rng.uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    expected = np.asarray(source(faces, training=False))
    assert np.allclose(np.asarray(loaded(faces, training=False)), expected, rtol=1e-5, atol=1e-5)
    assert np.isfinite(expected).all() and np.ptp(expected) > 0.01    # ages that tell the faces apart


def test_soft_stagewise_regression_is_the_papers_formula():
    rng = np.random.default_rng(1)
    stages, lambda_local, lambda_d = (3, 3, 3), 0.75, 0.5
    probs = [rng.uniform(0, 1, (4, s)).astype(np.float32) for s in stages]
    deltas = [rng.uniform(-1, 1, (4, 1)).astype(np.float32) for _ in stages]
    shifts = [rng.uniform(-1, 1, (4, s)).astype(np.float32) for s in stages]
    layer = ssrnet.SoftStagewiseRegression(stages, lambda_local, lambda_d)
    got = np.asarray(layer(probs + deltas + shifts)).reshape(-1)
    for b in range(4):
        total, width = 0.0, 1.0
        for k, s in enumerate(stages):
            width *= s * (1 + lambda_d * deltas[k][b, 0])
            total += sum((i + lambda_local * shifts[k][b, i]) * probs[k][b, i] for i in range(s)) / width
        assert got[b] == pytest.approx(101 * total, rel=1e-5)


def test_a_weights_file_that_does_not_fit_is_one_line(net, tmp_path):
    with pytest.raises(ssrnet.PeerError, match=r"no such file"):
        ssrnet.load_weights(net, str(tmp_path / "missing.h5"))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ssrnet.PeerError, match=r"not a readable HDF5 file"):
        ssrnet.load_weights(net, str(tmp_path / "text.h5"))
    save_keras2_layout(net, tmp_path / "no_delta.h5", skip=("delta_s2",))
    with pytest.raises(ssrnet.PeerError, match=r"has no layer 'delta_s2'") as e:
        ssrnet.load_weights(net, str(tmp_path / "no_delta.h5"))
    assert "\n" not in str(e.value)
    save_keras2_layout(net, tmp_path / "flat.h5", reshape="dense_3/kernel:0")
    with pytest.raises(ssrnet.PeerError, match=r"layer 'dense_3' weight 'kernel' is \(18,\), "
                                               r"the architecture needs \(3, 6\)"):
        ssrnet.load_weights(net, str(tmp_path / "flat.h5"))


def test_the_crop_grows_the_box_clips_it_and_swaps_to_bgr():
    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[..., 0] = 200                                   # red
    rgb[40:60, 90:110, 2] = 255                         # a blue square: the face box below
    face = ssrnet.crop(rgb, (90, 40, 20, 20))
    assert face.shape == (64, 64, 3) and face.dtype == np.float32
    assert np.all(face[..., 2] == 200) and np.all(face[..., 1] == 0)   # red is last (BGR)
    # 0.4 per side: the 20 px square fills 20 / 36 of the 36 px crop's width, centred.
    blue = face[32, :, 0] > 127
    assert abs(blue.sum() - 64 * 20 / 36) <= 2 and abs(np.flatnonzero(blue).mean() - 31.5) <= 1
    corner = ssrnet.crop(rgb, (0, 0, 20, 20))          # clipped at the photo's top-left
    assert np.all(corner[..., 2] == 200)


def test_faces_of_reads_a_csv_keeps_ages_1_to_100_inside_the_folder_and_draws_a_seeded_sample(tmp_path):
    (tmp_path / "faces").mkdir()
    rows = ["path,age"] + [f"faces/{i}.jpg,{i + 1}" for i in range(10)] + ["../outside.jpg,30", "faces/old.jpg,120"]
    (tmp_path / "faces.csv").write_text("\n".join(rows) + "\n")
    paths, ages = peers.faces_of(str(tmp_path / "faces.csv"), None, 0)
    assert [p.rsplit("/", 1)[-1] for p in paths] == [f"{i}.jpg" for i in range(10)]
    assert ages.tolist() == list(range(1, 11))
    drawn, drawn_ages = peers.faces_of(str(tmp_path / "faces.csv"), 4, 7)
    again, _ = peers.faces_of(str(tmp_path / "faces.csv"), 4, 7)
    assert drawn == again and len(drawn) == 4 and set(drawn) <= set(paths)
    assert drawn_ages.tolist() == [ages[paths.index(p)] for p in drawn]


def test_scores_are_mae_and_the_share_within_five_years():
    mae, cs = peers.scores(np.array([10.0, 20.0, 33.0, 40.0]), np.array([12.0, 26.0, 33.0, 45.0]))
    assert mae == pytest.approx((2 + 6 + 0 + 5) / 4)
    assert cs == pytest.approx(3 / 4)
