"""The model variants (their widths and default input side) and the depths that can
train: the facts the flags offer, without Keras (they are read before TensorFlow loads).
model.vgg_face builds them, model.age freezes by them."""

from __future__ import annotations

import dataclasses

from records.schema import VGG_FACE_SIZE

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


def get_variant(variant: str) -> Variant:
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown model variant {variant!r}; expected one of {sorted(VARIANTS)}") from None


def default_input_size(variant: str) -> int:
    """Default input side in pixels (full 224, tiny 32)."""
    return get_variant(variant).input_size
