"""How sure an age estimate is, read from the predicted age distribution itself
(the DEX softmax over 0..100), defined once for every consumer of `age_outputs`:

    age_sd(probs)              the distribution's standard deviation around its mean (years)
    age_quantile(probs, q)     the smallest age a whose cumulative probability reaches q
    age_interval(probs, mass)  the central interval holding `mass` of the distribution:
                               (quantile (1 - mass) / 2, quantile (1 + mass) / 2), both ends
                               whole ages, inclusive

A face's interval covers its true age with probability at least `mass` when the
distribution is right (the ages are whole numbers, so the ends are too and the
coverage is rounded up); `trainer.calibration` measures how often it does on real faces.

Keras ops only (any backend, TFLite-convertible: a cumulative sum and a count).
`Temperature` is the calibration layer (`trainer.calibration` fits its value).
"""

from __future__ import annotations

import keras
from keras import ops

from .layers import PACKAGE, expected_age

__all__ = ["INTERVAL_MASS", "TEMPERATURE_LAYER", "Temperature", "age_sd", "age_quantile", "age_interval",
           "model_temperature", "with_temperature"]

INTERVAL_MASS = 0.90      # the interval served with every estimate (age_low, age_high)


def age_sd(probs):
    """sqrt(sum_i p_i (i - mean)^2) per example, float32 [B]."""
    probs = ops.cast(probs, "float32")
    ages = ops.arange(ops.shape(probs)[-1], dtype="float32")
    mean = ops.expand_dims(expected_age(probs), -1)
    return ops.sqrt(ops.maximum(ops.sum(probs * ops.square(ages - mean), axis=-1), 0.0))


def age_quantile(probs, q: float):
    """The smallest age whose cumulative probability is >= q, float32 [B]: the number of
    ages whose cumulative probability is still below q (a tiny tolerance absorbs the
    float32 rounding of the cumulative sum, so a mass of exactly q at an age counts)."""
    cdf = ops.cumsum(ops.cast(probs, "float32"), axis=-1)
    below = ops.cast(ops.less(cdf, q - 1e-6), "float32")
    return ops.minimum(ops.sum(below, axis=-1), ops.cast(ops.shape(probs)[-1] - 1, "float32"))


def age_interval(probs, mass: float = INTERVAL_MASS):
    """(low, high) of the central `mass` interval, float32 [B] each."""
    tail = (1.0 - mass) / 2.0
    return age_quantile(probs, tail), age_quantile(probs, 1.0 - tail)


TEMPERATURE_LAYER = "age_temperature"   # the layer's name in a calibrated model


@keras.saving.register_keras_serializable(package=PACKAGE)
class Temperature(keras.layers.Layer):
    """Age probabilities -> the same distribution sharpened (T < 1) or widened (T > 1):
    softmax(log p / T), which equals softmax(logits / T) for p = softmax(logits).  T is
    a non-trainable weight, so a calibrated best.keras, its SavedModel and TFLite carry it."""

    def __init__(self, temperature: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.initial_temperature = float(temperature)

    def build(self, input_shape):
        self.temperature = self.add_weight(shape=(), initializer=keras.initializers.Constant(
            self.initial_temperature), trainable=False, name="temperature", dtype="float32")

    def call(self, probs):
        log_p = ops.log(ops.maximum(ops.cast(probs, "float32"), 1e-30))
        return ops.softmax(log_p / self.temperature, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.initial_temperature}


def with_temperature(net: keras.Model, temperature: float) -> keras.Model:
    """`net` whose age distribution goes through Temperature(`temperature`): a model that
    already has the layer gets its value multiplied in (two temperatures compose into
    their product); otherwise the layer is appended to the age output."""
    try:
        layer = net.get_layer(TEMPERATURE_LAYER)
    except ValueError:
        layer = None
    if layer is not None:
        layer.temperature.assign(float(layer.temperature.numpy()) * temperature)
        return net
    outputs = net.output
    scaled = Temperature(temperature, name=TEMPERATURE_LAYER)
    if isinstance(outputs, dict):
        outputs = {**outputs, "age": scaled(outputs["age"])}
    else:
        outputs = scaled(outputs)
    return keras.Model(net.inputs, outputs, name=net.name)


def model_temperature(net: keras.Model) -> float:
    """The temperature stored in `net` (1.0 for a model never calibrated)."""
    try:
        return float(net.get_layer(TEMPERATURE_LAYER).temperature.numpy())
    except ValueError:
        return 1.0
