"""Registered custom layers of the age model (no Lambda layers, so `.keras`
files reload with ``safe_mode=True``; Keras 3 APIs only, so every backend works).

The pixel contract: the model takes uint8 RGB face crops of any size; `Resize`
brings them to the input size, then `Preprocess` normalises them:
(pixel - mean) * scale, with the mean and scale its model family declares
(model.family; VGG: the mean below, scale 1; MobileNet: [-1, 1]).

Preprocessing, defined once (the model's first layer, so the data pipeline and
prediction cannot disagree): the VGG-Face weights in the widely distributed
``vgg_face_weights.h5`` were converted from the matconvnet release of VGG-Face
(Parkhi et al. 2015), which takes RGB pixels on the 0..255 scale minus the
per-channel mean image ``averageImage = (129.1863, 104.7624, 93.5940)`` (R, G, B),
with no division by 255.  The original article trained on raw 0..255 pixels but
divided by 255 at prediction time; we reproduce neither half of that mismatch.
"""
from __future__ import annotations

import keras
from keras import ops

from faces.resize import resize_pixels

PACKAGE = "dex_age"

from .variants import VGG_FACE_MEAN_RGB


@keras.saving.register_keras_serializable(package=PACKAGE)
class Preprocess(keras.layers.Layer):
    """uint8 (or any numeric) RGB 0..255 image -> float (image - mean) * scale; by
    default minus the VGG-Face mean, unscaled.

    The arithmetic happens in float32; the output is in the layer's compute
    dtype (bfloat16 / float16 under a mixed precision policy).
    """

    def __init__(self, mean=VGG_FACE_MEAN_RGB, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.mean = tuple(float(m) for m in mean)
        self.scale = float(scale)

    def call(self, images):
        x = ops.cast(images, "float32") - ops.convert_to_tensor(self.mean, dtype="float32")
        if self.scale != 1.0:
            x = x * self.scale
        return ops.cast(x, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["mean"] = list(self.mean)
        config["scale"] = self.scale
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class Resize(keras.layers.Layer):
    """The age model's first layer: a face crop of any size -> `size` x `size` uint8,
    by :func:`resize_pixels`; an identity when the input already has that size.

    `size` is the model's input size (in the layer's config and in the run's
    run.json), since the model input itself is [None, None, 3]."""

    def __init__(self, size: int, **kwargs):
        super().__init__(**kwargs)
        self.size = int(size)

    def call(self, images):
        if tuple(images.shape[-3:-1]) == (self.size, self.size):
            return images
        return resize_pixels(images, self.size)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-3]) + (self.size, self.size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config["size"] = self.size
        return config


def input_size(age_model) -> int:
    """The side in pixels the age model computes at (its `Resize` layer's size)."""
    for layer in age_model.layers:
        if isinstance(layer, Resize):
            return layer.size
    return int(age_model.input_shape[1])   # a model without the layer has a fixed input


def expected_age(probs):
    """DEX apparent age: the expectation sum_i p_i * i over the age classes (float32)."""
    probs = ops.cast(probs, "float32")
    ages = ops.arange(ops.shape(probs)[-1], dtype="float32")
    return ops.sum(probs * ages, axis=-1)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FullyConnectedConv2D(keras.layers.Conv2D):
    """VGG's fc6/fc7/fc8: a Conv2D whose kernel covers its whole input, computed as
    one matrix multiply.

    Same kernel shape (kh, kw, in, out), weights, name and output [B, 1, 1, out] as
    the Conv2D of the original network, so the Keras-2 h5 weights load unchanged;
    but a "valid" convolution whose window is the whole input IS a matmul of the
    flattened input with the reshaped kernel, and as a matmul it runs about twice
    as fast on CPUs (measured: 0.12 s vs 0.23 s for fc6 on a 256-image batch here),
    which matters most when the trunk is cached and these layers are all that run.
    Inputs of any other spatial size fall back to the convolution.
    """

    def call(self, inputs):
        kh, kw = self.kernel_size
        whole_input = (inputs.shape[1] == kh and inputs.shape[2] == kw and self.padding == "valid"
                       and self.data_format == "channels_last" and tuple(self.strides) == (1, 1))
        if not whole_input:
            return super().call(inputs)
        fan_in = kh * kw * int(inputs.shape[-1])
        y = ops.matmul(ops.reshape(inputs, (-1, fan_in)), ops.reshape(self.kernel, (fan_in, self.filters)))
        if self.use_bias:
            y = ops.add(y, self.bias)
        if self.activation is not None:
            y = self.activation(y)
        return ops.reshape(y, (-1, 1, 1, self.filters))
