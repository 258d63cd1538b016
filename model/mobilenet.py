"""The MobileNetV3-Small family (Howard et al. 2019; keras.applications.MobileNetV3Small
with include_top=False) as an age-model trunk: declared here without Keras, built and
loaded by the functions below (Keras imported inside them).

    Preprocess ((pixel - 127.5) / 127.5: the [-1, 1] scale of Keras's own
    include_preprocessing, which is off so the pixel contract stays the age model's one
    Preprocess layer) -> MobileNetV3-Small, its layers inlined under Keras's names
    (conv .. conv_1_bn + hard-swish) -> avg_pool (global average, [B, 1, 1, C]: the feature
    layer) -> fc (1x1, hard-swish, MobileNetV3's own last_point width) -> drop

Weights: None (random initialisation) or a user's file of the same network
(include_top=False, include_preprocessing=False, the variant's alpha and minimalistic),
e.g. Keras's own `weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5` or a
`.weights.h5` saved from keras.applications.MobileNetV3Small: copied by layer name.
Nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
import os

from .family import Family


@dataclasses.dataclass(frozen=True)
class MobileNetVariant:
    alpha: float                # width multiplier of every block
    minimalistic: bool          # ReLU and 3x3 only, no squeeze-excite
    fc_units: int               # the neck's width
    input_size: int             # default input side
    batch_norm: bool = False    # Keras's BatchNormalization: per replica, XLA compiles it


VARIANTS = {
    # 96 px: UTKFace's 64-px shards upsampled (the stride-2 stem halves it at once);
    # mobilenet.flags measures it on real faces.
    "mobilenet": MobileNetVariant(alpha=1.0, minimalistic=False, fc_units=1024, input_size=96),
}

FAMILY = Family(
    name="mobilenet", variants=VARIANTS, feature_layer="avg_pool", neck=("fc", "drop"),
    trainable_from=("fc", "expanded_conv_10_expand", "all"), builder="model.mobilenet:age_trunk",
    weights_loader="model.mobilenet:load_weights", mean=(127.5, 127.5, 127.5), scale=1 / 127.5,
    min_side=32,                       # five stride-2 stages
    weights_variants=tuple(VARIANTS),
    weights_file="a MobileNetV3-Small weights file (include_top=False)",
    weights_name="MobileNetV3-Small", weights_example="mobilenet_v3_small_no_top.weights.h5",
    variant_help="mobilenet: MobileNetV3-Small (Keras Applications, random init or your weights "
                 "file), 96x96 (mobilenet.flags).",
    trainable_help="mobilenet: fc (trunk frozen to avg_pool), expanded_conv_10_expand (the last "
                   "block trains too) or all.",
)


# BatchNorm's moving-average momentum. Keras's MobileNetV3 uses 0.999 (a ~1,000-step
# horizon, for ImageNet's long epochs): on UTKFace (96 steps an epoch) the moving
# statistics lagged the changing network and val MAE stayed at 23 years after 7 epochs
# while the training MAE fell to 9. 0.99 (Keras's default) follows within an epoch.
BATCH_NORM_MOMENTUM = 0.99


def _backbone(x, spec: MobileNetVariant, weights=None, input_shape=None):
    import keras
    net = keras.applications.MobileNetV3Small(
        input_tensor=x, input_shape=input_shape, include_top=False, weights=weights,
        include_preprocessing=False, alpha=spec.alpha, minimalistic=spec.minimalistic)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BATCH_NORM_MOMENTUM
    return net


def age_trunk(x, spec: MobileNetVariant, dropout: float):
    """The preprocessed float tensor `x` -> the neck's output ([B, 1, 1, fc_units])."""
    import keras

    from .layers import FullyConnectedConv2D
    x = _backbone(x, spec).output
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="avg_pool")(x)
    x = FullyConnectedConv2D(spec.fc_units, 1, activation="hard_swish", name="fc")(x)
    return keras.layers.Dropout(dropout, name="drop")(x)


def load_weights(model, path, spec: MobileNetVariant) -> list[str]:
    """Copy a MobileNetV3-Small weights file into the age model's trunk, by layer name;
    returns the names loaded. One line (WeightsError) naming the file and the fix otherwise."""
    from .layers import input_size
    from .weights import WeightsError
    how = ("pass a MobileNetV3-Small weights file (include_top=False, alpha "
           f"{spec.alpha:g}, minimalistic {spec.minimalistic}) with --weights, or --weights none")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"MobileNetV3-Small weights file not found: {path}; {how}")
    size = input_size(model)
    try:
        source = _backbone(None, spec, weights=path, input_shape=(size, size, 3))
    except (ValueError, OSError, KeyError, TypeError) as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise WeightsError(f"{path}: cannot be loaded into MobileNetV3-Small ({reason}); {how}") from None
    loaded = []
    for layer in source.layers:
        if layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())
            loaded.append(layer.name)
    return loaded
