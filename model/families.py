"""The registry of model families: every variant name -> its family (model.family).

Adding a family is one declaration module (its variants, feature layer, trainable depths,
builder, weights loader; Keras imported only inside its builder) and one line below.
Variant names are unique across families, so --variant alone picks the family.
No Keras here: the flags read these facts before TensorFlow loads.
"""

from __future__ import annotations

from . import mobilenet, variants
from .family import Family

REGISTERED = (
    variants.FAMILY,        # VGG-Face: full, small, tiny
    mobilenet.FAMILY,       # MobileNetV3-Small (Keras Applications): mobilenet
)

FAMILIES = {family.name: family for family in REGISTERED}
FAMILY_OF = {variant: family for family in REGISTERED for variant in family.variants}
VARIANTS = {variant: family.variants[variant] for variant, family in FAMILY_OF.items()}
# Every family's --trainable_from values (the flag's choices; each family checks its own).
TRAINABLE_FROM = tuple(dict.fromkeys(depth for family in REGISTERED for depth in family.trainable_from))
if len(FAMILY_OF) != sum(len(family.variants) for family in REGISTERED):
    raise ImportError("two model families declare the same variant name")


def family_of(variant: str) -> Family:
    try:
        return FAMILY_OF[variant]
    except KeyError:
        raise ValueError(f"unknown model variant {variant!r}; expected one of {sorted(FAMILY_OF)}") from None


def get_variant(variant: str):
    """The variant's widths (its family's dataclass)."""
    return family_of(variant).spec(variant)


def default_input_size(variant: str) -> int:
    """Default input side in pixels (full 224, tiny 32)."""
    return get_variant(variant).input_size


def resolve_input_size(variant: str, input_size=None) -> int:
    family = family_of(variant)
    size = default_input_size(variant) if input_size is None else int(input_size)
    if size < family.min_side:
        raise ValueError(f"input_size must be >= {family.min_side} for the {family.name} family "
                         f"(its downsampling), got {size}")
    return size
