"""What a model family declares, without Keras (the flags read it before TensorFlow loads).

A family is one trunk network with its variants. The age model is the same for every
family (model.age):

    image (uint8, any size) -> Resize(input side) -> Preprocess(family's mean, scale)
    -> trunk ... `feature_layer` (the feature cache's cut point)
    -> `neck` (the family's layers between the features and the head)
    -> predictions (1x1, 101 ages) -> flatten -> age [-> the gender head beside it]

Builders and weight loaders are named "module:function" and imported on first use, so a
family's declaration loads nothing. The registry of families is model.families.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping


@dataclasses.dataclass(frozen=True)
class Family:
    """One trunk network and its variants."""

    name: str
    # Variant name -> its widths; each has `input_size` (the default input side in
    # pixels) and `batch_norm` (BatchNorm synchronized across replicas, which XLA cannot
    # compile under a distribution strategy).
    variants: Mapping[str, Any]
    # The last layer of the trunk: its output is what the feature cache stores.
    feature_layer: str
    # The layers from the feature layer to the head, in order (model.age.head reuses them).
    neck: tuple[str, ...]
    # The allowed --trainable_from values: the first layer that trains. The first is the
    # default on trained weights (the trunk frozen up to feature_layer); "all" last.
    trainable_from: tuple[str, ...]
    # "module:function": (preprocessed float tensor, variant spec, dropout) -> neck output.
    builder: str
    # "module:function": (age model, variant spec, path) -> the names of the layers loaded.
    # Loads a file the user gives; nothing is ever downloaded.
    weights_loader: str
    # Preprocess's pixel normalisation: (pixel - mean) * scale, RGB 0..255 in.
    mean: tuple[float, float, float]
    scale: float
    # The smallest input side the trunk takes (its downsampling).
    min_side: int
    # The variants a --weights file fits ((): every variant of the family).
    weights_variants: tuple[str, ...]
    # Words for the flags' help and the messages.
    weights_file: str            # what --weights takes for this family
    weights_name: str            # whose weights they are, e.g. "VGG-Face"
    weights_example: str         # a file name to show in messages
    variant_help: str            # --variant's help, one sentence per variant
    trainable_help: str          # --trainable_from's help for this family's depths

    def spec(self, variant: str):
        return self.variants[variant]

    def builder_fn(self) -> Callable:
        return _resolve(self.builder)

    def weights_loader_fn(self) -> Callable:
        return _resolve(self.weights_loader)


def _resolve(target: str) -> Callable:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)
