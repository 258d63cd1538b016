"""SSR-Net (Yang et al., IJCAI 2018), a published 0.3 MB age model, rebuilt in Keras 3
so that its authors' weight files load into it: the peer bench.peers compares the
project's models with.

The network, as the paper describes it: two convolutional streams over a 64x64
face, one of 32-channel ReLU blocks with average pooling, one of 16-channel tanh
blocks with max pooling (each block 3x3 conv, batch norm, activation).  Three
stages read the streams at three depths (after block 4, after pooling 2, after
pooling 1), each through a 1x1 conv to 10 channels per stream; a stage multiplies
its two streams' features and predicts `s` class probabilities p (ReLU), `s` shifts
eta of the class centres (tanh) and one scale delta of its interval width (tanh).
Soft stagewise regression turns them into an age:

    age = V * sum_k  sum_i (i + lambda_local * eta_k,i) * p_k,i  /  prod_(j<=k) s_j (1 + lambda_d * delta_j)

with V = 101 (the age range 0..100).  The authors' weights for IMDB-WIKI are
`ssrnet_3_3_3_64_1.0_1.0.h5`: stages s = (3, 3, 3), lambda_local = lambda_d = 1.

The weight file is Keras 2's save_weights layout (one HDF5 group per layer, named
by Keras 2's automatic layer names); the layers here carry the same names, so
`load_weights` fills them by name with h5py.  The file is the user's: nothing is
downloaded.

Its framing (the authors' demo, TYY_demo_mtcnn.py): the MTCNN box grown by 0.4 of
its width and height on each side, clipped to the photo, resized to 64x64 (OpenCV,
bilinear), in OpenCV's BGR channel order, pixel values 0..255 as floats (no
normalisation: the network's first batch norm does it).
"""

from __future__ import annotations

import os

import keras
import numpy as np
from keras import layers, ops

from errors import ProjectError

IMAGE_SIZE = 64
STAGES = (3, 3, 3)
LAMBDA_LOCAL = 1.0
LAMBDA_D = 1.0
AGE_RANGE = 101        # V: the ages 0..100
MARGIN = 0.4           # of the detector's box width/height, added on each side
X_CHANNELS = 32       # the ReLU, average-pooling stream
S_CHANNELS = 16       # the tanh, max-pooling stream
STAGE_CHANNELS = 10    # each stage's 1x1 conv, per stream
DROPOUT = 0.2


class PeerError(ProjectError):
    """A peer model's weight file that is missing or does not fit its architecture."""


def _names():
    """Keras 2's automatic layer names in the order its authors' code created the
    layers: the x stream's four blocks, then the s stream's, then stages 1, 2, 3."""
    counters: dict[str, int] = {}

    def name(kind: str) -> str:
        counters[kind] = counters.get(kind, 0) + 1
        return f"{kind}_{counters[kind]}"
    return name


def build(stages: tuple[int, int, int] = STAGES, lambda_local: float = LAMBDA_LOCAL,
          lambda_d: float = LAMBDA_D, image_size: int = IMAGE_SIZE):
    """The SSR-Net age model: BGR float faces [batch, size, size, 3] in 0..255 ->
    ages [batch, 1]."""
    name = _names()
    inputs = keras.Input((image_size, image_size, 3), name="input_1")

    def stream(channels: int, activation: str, pool) -> list:
        """Four conv-BN-activation blocks; the outputs of pools 1, 2, 3 and of block 4."""
        taps, x = [], inputs
        for block in range(4):
            x = layers.Conv2D(channels, 3, name=name("conv2d"))(x)
            x = layers.BatchNormalization(axis=-1, name=name("batch_normalization"))(x)
            x = layers.Activation(activation, name=name("activation"))(x)
            if block < 3:
                x = pool(2, name=name(pool.__name__.lower().replace("pooling2d", "_pooling2d")))(x)
                taps.append(x)
        return taps + [x]

    x_taps = stream(X_CHANNELS, "relu", layers.AveragePooling2D)      # conv2d_1..4
    s_taps = stream(S_CHANNELS, "tanh", layers.MaxPooling2D)          # conv2d_5..8

    def stage(s_feature, x_feature, pool_size: int, classes: int, k: int):
        def reduce(feature, pool):
            f = layers.Conv2D(STAGE_CHANNELS, 1, activation="relu", name=name("conv2d"))(feature)
            if pool is not None:
                f = pool(pool_size, name=name(pool.__name__.lower().replace("pooling2d", "_pooling2d")))(f)
            return layers.Flatten(name=name("flatten"))(f)

        s_flat = reduce(s_feature, None if pool_size == 1 else layers.MaxPooling2D)
        x_flat = reduce(x_feature, None if pool_size == 1 else layers.AveragePooling2D)
        s_mix = layers.Dense(classes, activation="relu", name=name("dense"))(
            layers.Dropout(DROPOUT, name=name("dropout"))(s_flat))
        x_mix = layers.Dense(classes, activation="relu", name=name("dense"))(
            layers.Dropout(DROPOUT, name=name("dropout"))(x_flat))
        delta = layers.Dense(1, activation="tanh", name=f"delta_s{k}")(
            layers.Multiply(name=name("multiply"))([s_flat, x_flat]))
        mixed = layers.Dense(2 * classes, activation="relu", name=name("dense"))(
            layers.Multiply(name=name("multiply"))([s_mix, x_mix]))
        probs = layers.Dense(classes, activation="relu", name=f"pred_age_stage{k}")(mixed)
        shifts = layers.Dense(classes, activation="tanh", name=f"local_delta_stage{k}")(mixed)
        return probs, delta, shifts

    # Stage 1 reads block 4, stage 2 pooling 2 (pooled by 4), stage 3 pooling 1 (by 8).
    outs = [stage(s_taps[3], x_taps[3], 1, stages[0], 1),
            stage(s_taps[1], x_taps[1], 4, stages[1], 2),
            stage(s_taps[0], x_taps[0], 8, stages[2], 3)]
    age = SoftStagewiseRegression(stages, lambda_local, lambda_d, name="pred_a")(
        [o[0] for o in outs] + [o[1] for o in outs] + [o[2] for o in outs])
    return keras.Model(inputs, age, name="ssrnet")


class SoftStagewiseRegression(layers.Layer):
    """[p_1, p_2, p_3, delta_1, delta_2, delta_3, eta_1, eta_2, eta_3] -> age [batch, 1]
    (the formula in this module's docstring)."""

    def __init__(self, stages, lambda_local, lambda_d, age_range=AGE_RANGE, **kwargs):
        super().__init__(**kwargs)
        self.stages = tuple(int(s) for s in stages)
        self.lambda_local = float(lambda_local)
        self.lambda_d = float(lambda_d)
        self.age_range = float(age_range)

    def call(self, inputs):
        n = len(self.stages)
        probs, deltas, shifts = inputs[:n], inputs[n:2 * n], inputs[2 * n:]
        age, width = 0.0, 1.0
        for k, classes in enumerate(self.stages):
            centres = ops.arange(classes, dtype=probs[k].dtype) + self.lambda_local * shifts[k]
            width = width * classes * (1.0 + self.lambda_d * deltas[k])
            age = age + ops.sum(centres * probs[k], axis=-1, keepdims=True) / width
        return self.age_range * age

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "stages": self.stages, "lambda_local": self.lambda_local,
                "lambda_d": self.lambda_d, "age_range": self.age_range}


def _short(weight_name: str) -> str:
    """`conv2d_1/kernel:0` -> `kernel`."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def check_file(path: str) -> None:
    """A one-line error unless `path` is a file."""
    if not os.path.isfile(path):
        raise PeerError(f"--ssrnet_weights {path}: no such file; pass the authors' "
                        f"ssrnet_3_3_3_64_1.0_1.0.h5 (pre-trained/imdb/ in shamangary/SSR-Net)")


def load_weights(model, path: str) -> None:
    """Fill `model`'s layers from the Keras-2 save_weights file `path` by layer name
    (every layer with weights must be in the file with the same shapes)."""
    import h5py

    check_file(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise PeerError(f"--ssrnet_weights {path}: not a readable HDF5 file ({e}); "
                        f"pass the authors' .h5 weights file") from e
    with f:
        group = f["model_weights"] if "model_weights" in f else f
        for layer in model.layers:
            if not layer.weights:
                continue
            if layer.name not in group:
                raise PeerError(f"--ssrnet_weights {path}: has no layer {layer.name!r}; pass weights "
                                f"saved from SSR-Net with stages {STAGES} (ssrnet_3_3_3_64_*.h5)")
            stored = group[layer.name]
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in stored.attrs["weight_names"]]
            arrays = {_short(n): np.asarray(stored[n]) for n in names}
            values = []
            for variable in layer.weights:
                key = _short(variable.name)
                if key not in arrays or tuple(arrays[key].shape) != tuple(variable.shape):
                    got = None if key not in arrays else tuple(arrays[key].shape)
                    raise PeerError(f"--ssrnet_weights {path}: layer {layer.name!r} weight {key!r} is "
                                    f"{got}, the architecture needs {tuple(variable.shape)}; pass the "
                                    f"weights of SSR-Net with stages {STAGES} at {IMAGE_SIZE}x{IMAGE_SIZE}")
                values.append(arrays[key])
            layer.set_weights(values)


def crop(rgb: np.ndarray, box: tuple[int, int, int, int], size: int = IMAGE_SIZE,
         margin: float = MARGIN) -> np.ndarray:
    """SSR-Net's face from an RGB uint8 photo and a detector box (x, y, width,
    height): the box grown by `margin` on each side (truncated to whole pixels and
    clipped as the authors' demo does), resized to size x size (OpenCV bilinear),
    BGR float32 in 0..255."""
    import cv2

    x, y, w, h = box
    height, width = rgb.shape[:2]
    x0, y0 = max(int(x - margin * w), 0), max(int(y - margin * h), 0)
    x1, y1 = min(int(x + w + margin * w), width - 1), min(int(y + h + margin * h), height - 1)
    face = cv2.resize(np.ascontiguousarray(rgb[y0:y1 + 1, x0:x1 + 1]), (size, size))
    return face[..., ::-1].astype(np.float32)
