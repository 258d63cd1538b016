"""How sure an age estimate is, read from the predicted age distribution itself
(the DEX softmax over 0..100), defined once for every consumer of `age_outputs`:

    age_sd(probs)              the distribution's standard deviation around its mean (years)
    age_quantile(probs, q)     the smallest age a with P(age <= a) >= q (a lower end)
    age_upper_quantile(probs, u)  the largest age a with P(age >= a) > u (an upper end:
                               the quantile 1 - u, read from the upper tail's own sum)
    age_interval(probs, mass)  the central interval holding `mass` of the distribution:
                               (age_quantile (1 - mass) / 2, age_upper_quantile (1 - mass) / 2),
                               both ends whole ages, inclusive

A face's interval covers its true age with probability at least `mass` when the
distribution is right (the ages are whole numbers, so the ends are too and the
coverage is rounded up); `trainer.calibration` measures how often it does on real faces.

Keras ops only (any backend, TFLite-convertible: a cumulative sum and a count).

`IntervalCalibration` is the calibration a model carries (`trainer.calibration` fits
it by split-conformal prediction): for each nominal mass it serves (50/80/90%) and each
band of the *estimated* age, the lower level a and the upper tail level u of the face's
own distribution whose interval (age_quantile a, age_upper_quantile u) reaches that
mass on the calibration faces.  The layer passes the age
distribution through unchanged and holds the levels as a weight, so best.keras, its
SavedModel and TFLite carry them; `served_interval` answers with them when a model has
the layer and with the central interval otherwise.
"""

from __future__ import annotations

import keras
from keras import ops

from .layers import PACKAGE, expected_age

RUN_KEY = "interval_calibration"   # run.json's (and export.json's) record of the calibrated levels

__all__ = ["INTERVAL_MASS", "CALIBRATION_LAYER", "IntervalCalibration", "age_sd", "age_cdf", "age_tail",
           "age_quantile", "age_upper_quantile", "age_interval", "served_interval", "interval_calibration", "with_interval_calibration"]

INTERVAL_MASS = 0.90      # the interval served with every estimate (age_low, age_high)
QUANTILE_SLACK = 1e-5     # the quantiles' relative tolerance for float32 cumulative sums


def age_sd(probs):
    """sqrt(sum_i p_i (i - mean)^2) per example, float32 [B]."""
    probs = ops.cast(probs, "float32")
    ages = ops.arange(ops.shape(probs)[-1], dtype="float32")
    mean = ops.expand_dims(expected_age(probs), -1)
    return ops.sqrt(ops.maximum(ops.sum(probs * ops.square(ages - mean), axis=-1), 0.0))


def age_cdf(probs):
    """P(age <= a) of each age a, float32 [B, ages] (a cumulative sum from age 0)."""
    return ops.cumsum(ops.cast(probs, "float32"), axis=-1)


def age_tail(probs):
    """P(age >= a) of each age a, float32 [B, ages] (a cumulative sum from the top age, so
    an upper tail keeps its float32 precision where 1 - cdf would round to 0)."""
    return ops.flip(ops.cumsum(ops.flip(ops.cast(probs, "float32"), axis=-1), axis=-1), axis=-1)


def _per_face(level):
    level = ops.cast(level, "float32")
    return ops.expand_dims(level, -1) if len(ops.shape(level)) == 1 else level


def age_quantile(probs, q):
    """The lower end for level q: the smallest age whose P(age <= a) reaches q, float32
    [B] (the number of ages whose cumulative probability is still below q; the relative
    tolerance QUANTILE_SLACK absorbs float32 rounding, so a mass of exactly q counts).
    q is one level or one per face [B]."""
    below = ops.cast(ops.less(age_cdf(probs), _per_face(q) * (1.0 - QUANTILE_SLACK)), "float32")
    return ops.minimum(ops.sum(below, axis=-1), ops.cast(ops.shape(probs)[-1] - 1, "float32"))


def age_upper_quantile(probs, u):
    """The upper end for tail level u: the largest age a whose P(age >= a) still exceeds
    u, float32 [B] (0 when none above 0 does); equal to the smallest age whose
    cumulative probability reaches 1 - u, computed from the upper tail.  u is one level
    or one per face [B]."""
    tail = age_tail(probs)[:, 1:]
    return ops.sum(ops.cast(ops.greater(tail, _per_face(u) * (1.0 + QUANTILE_SLACK)), "float32"), axis=-1)


def age_interval(probs, mass: float = INTERVAL_MASS):
    """(low, high) of the central `mass` interval, float32 [B] each."""
    tail = (1.0 - mass) / 2.0
    return age_quantile(probs, tail), age_upper_quantile(probs, tail)


CALIBRATION_LAYER = "age_interval_calibration"   # the layer's name in a calibrated model


@keras.saving.register_keras_serializable(package=PACKAGE)
class IntervalCalibration(keras.layers.Layer):
    """Age probabilities -> the same probabilities; carries the calibrated quantile
    levels `levels[band][mass] = [a, u]` (lower level, upper tail level) for the nominal `masses` and the bands
    of the estimated age that start at 0 and at each of `band_starts` (an estimate e is
    in the last band whose start is <= e).  `interval` reads them."""

    def __init__(self, masses=(INTERVAL_MASS,), band_starts=(), levels=None, **kwargs):
        super().__init__(**kwargs)
        self.masses = tuple(float(m) for m in masses)
        self.band_starts = tuple(float(b) for b in band_starts)
        if levels is None:   # uncalibrated: the central intervals
            levels = [[[(1 - m) / 2, (1 - m) / 2] for m in self.masses] for _ in range(len(self.band_starts) + 1)]
        self.initial_levels = [[[float(x) for x in pair] for pair in band] for band in levels]

    def build(self, input_shape):
        shape = (len(self.band_starts) + 1, len(self.masses), 2)
        self.levels = self.add_weight(shape=shape, initializer=keras.initializers.Constant(self.initial_levels),
                                      trainable=False, name="levels", dtype="float32")

    def call(self, probs):
        return probs

    def compute_output_shape(self, input_shape):
        return input_shape

    def band(self, probs):
        """The band index of each face's estimated age, int32 [B]."""
        estimate = ops.expand_dims(expected_age(probs), -1)
        starts = ops.convert_to_tensor([list(self.band_starts)] if self.band_starts else [[1e9]], "float32")
        return ops.cast(ops.sum(ops.cast(ops.greater_equal(estimate, starts), "float32"), axis=-1), "int32")

    def interval(self, probs, mass: float):
        """(low, high) float32 [B]: the calibrated interval of nominal `mass` (one of masses)."""
        if not self.built:       # a layer made on its own, outside a model
            self.build(ops.shape(probs))
        per_band = self.levels[:, self.masses.index(float(mass)), :]       # [bands, 2]
        chosen = ops.take(per_band, self.band(probs), axis=0)             # [B, 2]
        return age_quantile(probs, chosen[:, 0]), age_upper_quantile(probs, chosen[:, 1])

    def get_config(self):
        levels = self.levels.numpy().tolist() if self.built else self.initial_levels
        return {**super().get_config(), "masses": list(self.masses), "band_starts": list(self.band_starts),
                "levels": levels}


def interval_calibration(net: keras.Model) -> IntervalCalibration | None:
    """The calibration `net` carries, None for a model never calibrated."""
    try:
        return net.get_layer(CALIBRATION_LAYER)
    except ValueError:
        return None


def served_interval(net: keras.Model, probs, mass: float = INTERVAL_MASS):
    """The interval a model serves for `mass`: its calibrated one when it carries a
    calibration of that mass, else the central interval of its distribution."""
    layer = interval_calibration(net)
    if layer is not None and float(mass) in layer.masses:
        return layer.interval(probs, mass)
    return age_interval(probs, mass)


def with_interval_calibration(net: keras.Model, masses, band_starts, levels) -> keras.Model:
    """`net` carrying these levels: a model that already has the layer with the same
    masses and bands gets them assigned; otherwise the layer goes after the age output
    (a model whose layer differs is rebuilt on its inputs without it first)."""
    layer = interval_calibration(net)
    if layer is not None and layer.masses == tuple(masses) and layer.band_starts == tuple(band_starts):
        layer.levels.assign(ops.convert_to_tensor(levels, "float32"))
        return net
    outputs = net.output
    if layer is not None:   # unwrap: the layer is the identity, its input is the age output
        age = layer.input
        outputs = {**outputs, "age": age} if isinstance(outputs, dict) else age
    calibrated = IntervalCalibration(masses, band_starts, levels, name=CALIBRATION_LAYER)
    if isinstance(outputs, dict):
        outputs = {**outputs, "age": calibrated(outputs["age"])}
    else:
        outputs = calibrated(outputs)
    return keras.Model(net.inputs, outputs, name=net.name)
