"""Keras 3 models: VGG-Face and the DEX apparent-age transfer model.

Backend-agnostic (keras.layers / keras.ops only): runs under TensorFlow, JAX or torch.
"""
from .age import (NUM_AGES, FULL_NON_TRAINABLE_PARAMS, FULL_TRAINABLE_PARAMS, build_age_model,
                  feature_extractor, head)
from .layers import (VGG_FACE_MEAN_RGB, FullyConnectedConv2D, Preprocess, Resize, expected_age,
                     input_size, resize_pixels)
from .outputs import age_outputs
from .uncertainty import INTERVAL_MASS, Temperature, age_interval, age_sd
from .metrics import CS_THRESHOLD, abs_error, age_abs_error, within
from .vgg_face import (FULL_VGG_FACE_PARAMS, SMALL_PARAMS, VARIANTS, Variant, build_vgg_face, default_input_size,
                       pool5_size)
from .weights import WeightsError, load_vgg_face_weights

__all__ = [
    "CS_THRESHOLD", "NUM_AGES", "age_outputs", "abs_error", "within", "FULL_NON_TRAINABLE_PARAMS", "FULL_TRAINABLE_PARAMS", "FULL_VGG_FACE_PARAMS",
    "SMALL_PARAMS",
    "VARIANTS", "VGG_FACE_MEAN_RGB", "FullyConnectedConv2D",
    "Preprocess", "Resize", "input_size", "resize_pixels",
    "Variant", "WeightsError", "age_abs_error", "build_age_model", "build_vgg_face",
    "default_input_size", "expected_age", "feature_extractor", "head", "load_vgg_face_weights",
    "pool5_size",
]
