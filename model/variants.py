"""The VGG family (VGG-Face and its narrow variants): its variants (widths and default
input side), the depths that can train and its pixel normalisation, declared without
Keras (the flags read them before TensorFlow loads). model.vgg_face builds them,
model.weights loads vgg_face_weights.h5 into them; model.families registers FAMILY."""

from __future__ import annotations

import dataclasses

from records.schema import VGG_FACE_SIZE

from .family import Family

# matconvnet vgg-face `meta.normalization.averageImage`, RGB order, 0..255 scale
# (model.layers: the pixel contract).
VGG_FACE_MEAN_RGB = (129.1863, 104.7624, 93.5940)

# The first layer that trains: fc6 (the trunk frozen to pool5), conv5_1 (the last
# convolution block trains too) or all (nothing frozen). The first is the default.
TRAINABLE_FROM = ("fc6", "conv5_1", "all")


@dataclasses.dataclass(frozen=True)
class Variant:
    """Widths of one VGG-Face variant.  `input_size` is the default input side;
    fc6's kernel always equals pool5's spatial size (7 for 224)."""

    conv_filters: tuple  # per block
    fc6_units: int
    fc7_units: int
    fc8_units: int
    input_size: int
    # Each convolution followed by BatchNormalization (conv -> bnB_I -> reluB_I, the
    # convolution without bias): trains from random initialisation several times
    # faster than the plain topology. Its moving statistics follow `trainable`: a
    # frozen BatchNorm layer runs in inference mode (Keras 3).
    batch_norm: bool = False


VARIANTS = {
    "full": Variant(conv_filters=(64, 128, 256, 512, 512), fc6_units=4096, fc7_units=4096,
                    fc8_units=2622, input_size=VGG_FACE_SIZE),
    # All sizes distinct (and distinct from 3 channels, 2 genders, 101 ages), so a
    # wiring mistake cannot pass a shape test by coincidence.
    "tiny": Variant(conv_filters=(4, 6, 8, 10, 12), fc6_units=24, fc7_units=20,
                    fc8_units=14, input_size=32),
    # Learns real faces from random initialisation on a CPU and fits a phone
    # (small.flags; widths and input side chosen by measurement on UTKFace, see the
    # docs/training.md "Real faces"). Distinct sizes too.
    "small": Variant(conv_filters=(16, 32, 64, 128, 160), fc6_units=256, fc7_units=192,
                     fc8_units=10, input_size=64, batch_norm=True),
}


FAMILY = Family(
    name="vgg", variants=VARIANTS, feature_layer="pool5", neck=("fc6", "drop6", "fc7", "drop7"),
    trainable_from=TRAINABLE_FROM, builder="model.vgg_face:age_trunk",
    weights_loader="model.weights:load_family_weights", mean=VGG_FACE_MEAN_RGB, scale=1.0,
    min_side=32,                       # five 2x2 poolings
    weights_variants=("full",), weights_file="the Keras-2 vgg_face_weights.h5 (variant full)",
    weights_name="VGG-Face", weights_example="vgg_face_weights.h5",
    variant_help="full: VGG-Face at 224x224. small: the same 13 convolutions, narrow, with "
                 "BatchNorm, 64x64: learns real faces from scratch on a CPU and fits a phone "
                 "(small.flags). tiny: narrower, 32x32, for tests and CPU demos.",
    trainable_help="VGG: fc6 (trunk frozen to pool5), conv5_1 (the last convolution block "
                   "trains too) or all.",
)
