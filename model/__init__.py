"""Keras 3 models: the DEX apparent-age model on a registered trunk family
(model.families: VGG-Face and its narrow variants, MobileNetV3-Small).

Backend-agnostic (keras.layers / keras.ops only): runs under TensorFlow, JAX or torch.

Importing the package loads nothing: each name below is imported from its submodule
on first use (PEP 562), so `model.families` (with each family's declaration) and
`model.metric_names`, the facts the command lines offer, are read without Keras and TensorFlow.  Loading a saved model
needs its custom layers registered first: `register_layers()`.
"""
from __future__ import annotations

import importlib

# Each public name -> the submodule that defines it.
_HOMES = {
    "age": ("NUM_AGES", "FULL_NON_TRAINABLE_PARAMS", "FULL_TRAINABLE_PARAMS", "build_age_model",
            "feature_extractor", "feature_layer", "head", "model_family"),
    "families": ("FAMILIES", "VARIANTS", "TRAINABLE_FROM", "default_input_size", "family_of"),
    "layers": ("VGG_FACE_MEAN_RGB", "FullyConnectedConv2D", "Preprocess", "Resize", "expected_age",
               "input_size", "resize_pixels"),
    "outputs": ("age_outputs",),
    "uncertainty": ("INTERVAL_MASS", "IntervalCalibration", "age_interval", "age_sd"),
    "metrics": ("abs_error", "age_abs_error", "within"),
    "metric_names": ("CS_THRESHOLD",),
    "variants": ("Variant",),
    "vgg_face": ("FULL_VGG_FACE_PARAMS", "SMALL_PARAMS", "build_vgg_face", "pool5_size"),
    "weights": ("WeightsError", "load_vgg_face_weights"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF) + ["register_layers"]


def __getattr__(name: str):
    if name in _HOME_OF:
        value = getattr(importlib.import_module(f".{_HOME_OF[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _HOMES:                      # a submodule, e.g. model.metrics
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_layers() -> None:
    """Register the custom layers an age model is made of (Preprocess, Resize,
    FullyConnectedConv2D, IntervalCalibration), so keras.saving.load_model(safe_mode=True) knows them."""
    from . import layers, uncertainty  # noqa: F401
