"""The VGG-Face network (Parkhi et al. 2015) as one Keras 3 functional model.

Layer order and names follow the original recipe: five blocks of
(ZeroPadding2D(1) + 3x3 Conv2D + ReLU) x 2, 2, 3, 3, 3 with 64, 128, 256, 512, 512
filters, each block ending in 2x2 max pooling (pool1..pool5); then
fc6 = Conv2D(4096, 7x7) + ReLU, Dropout(0.5), fc7 = Conv2D(4096, 1x1) + ReLU,
Dropout(0.5), fc8 = Conv2D(2622, 1x1), Flatten, softmax.

Parameter counts (checked facts, asserted by tests/test_model_vgg_face.py):
  full VGG-Face: 145,002,878 (13 convs 14,714,688; fc6 102,764,544;
  fc7 16,781,312; fc8 10,742,334).
The small age model (tests/test_model_small.py): SMALL_PARAMS in all, BatchNorm's
moving statistics included.
"""
from __future__ import annotations

import keras

from .layers import FullyConnectedConv2D
from .families import default_input_size, get_variant, resolve_input_size  # noqa: F401  (this module's API)
from .variants import VARIANTS, Variant  # noqa: F401  (this module's API)

BLOCK_DEPTHS = (2, 2, 3, 3, 3)
CONV_NAMES = tuple(f"conv{b}_{i}" for b, depth in enumerate(BLOCK_DEPTHS, 1) for i in range(1, depth + 1))
# Layers holding weights, in the order of the original model (= the h5 file).
WEIGHTED_LAYER_NAMES = CONV_NAMES + ("fc6", "fc7", "fc8")
FULL_VGG_FACE_PARAMS = 145_002_878
SMALL_PARAMS = 1_360_021   # the small age model (build_age_model(variant="small")), every weight


def pool5_size(input_size: int) -> int:
    """Spatial side of pool5 for a square input (five floor-halvings)."""
    s = int(input_size)
    for _ in range(5):
        s //= 2
    return s


def vgg_trunk(x, spec: Variant):
    """conv1_1 .. pool5 on tensor `x` (already normalized float). Returns pool5.
    With spec.batch_norm each convolution is conv (no bias) -> bnB_I -> reluB_I."""
    for block, (depth, filters) in enumerate(zip(BLOCK_DEPTHS, spec.conv_filters), 1):
        for i in range(1, depth + 1):
            x = keras.layers.ZeroPadding2D(1, name=f"pad{block}_{i}")(x)
            if spec.batch_norm:
                x = keras.layers.Conv2D(filters, 3, use_bias=False, name=f"conv{block}_{i}")(x)
                x = keras.layers.BatchNormalization(synchronized=True, name=f"bn{block}_{i}")(x)
                x = keras.layers.Activation("relu", name=f"relu{block}_{i}")(x)
            else:
                x = keras.layers.Conv2D(filters, 3, activation="relu", name=f"conv{block}_{i}")(x)
        x = keras.layers.MaxPooling2D(2, strides=2, name=f"pool{block}")(x)
    return x


def vgg_fc67(x, spec: Variant, dropout: float = 0.5):
    """fc6 (kernel = pool5's spatial size), drop6, fc7, drop7 on pool5 `x`."""
    k = int(x.shape[1])
    x = FullyConnectedConv2D(spec.fc6_units, k, activation="relu", name="fc6")(x)
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = FullyConnectedConv2D(spec.fc7_units, 1, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    return x


def age_trunk(x, spec: Variant, dropout: float):
    """The VGG family's builder (model.family): normalized `x` -> conv1_1 .. pool5 -> fc6 .. drop7."""
    return vgg_fc67(vgg_trunk(x, spec), spec, dropout)


def build_vgg_face(variant: str = "full", *, input_size=None) -> keras.Model:
    """The original VGG-Face classifier (2622 identities for "full").

    Input: float RGB [H, W, 3] already normalized (mean-subtracted), exactly as the
    original network and the `vgg_face_weights.h5` file; the age model adds the
    uint8 -> normalized `Preprocess` layer in front.
    Layers: image, pad1_1, conv1_1, ..., pool5, fc6, drop6, fc7, drop7, fc8,
    flatten, softmax.
    """
    spec = get_variant(variant)
    size = resolve_input_size(variant, input_size)
    inputs = keras.Input((size, size, 3), name="image")
    x = vgg_trunk(inputs, spec)
    x = vgg_fc67(x, spec, 0.5)
    x = FullyConnectedConv2D(spec.fc8_units, 1, name="fc8")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name=f"vgg_face_{variant}")
