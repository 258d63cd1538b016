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
it by split-conformal prediction, Mondrian per band of the true age): for each nominal
mass it serves (50/80/90%) and each age band, a threshold q on the face's score

    interval_score(probs, a) = |a - expected age| / max(age_sd, SD_FLOOR)

(how many of its own spreads an age a lies from the estimate).  A face's interval is
the span of the ages a whose score is at most the threshold of a's own band: a true
age in band b is inside whenever its score is at most q_b, which on the calibration
faces of band b happened for the nominal share.  The layer passes the age
distribution through unchanged and holds the thresholds as a weight, so best.keras,
its SavedModel and TFLite carry them; `served_interval` answers with them when a model
has the layer and with the central interval otherwise.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from .layers import PACKAGE, expected_age

RUN_KEY = "interval_calibration"   # run.json's (and export.json's) record of the calibration

__all__ = ["INTERVAL_MASS", "CALIBRATION_LAYER", "IntervalCalibration", "STALE_MESSAGE", "age_sd",
           "age_cdf", "age_tail", "age_quantile", "age_upper_quantile", "age_interval",
           "interval_score", "served_interval", "interval_calibration",
           "with_interval_calibration"]

INTERVAL_MASS = 0.90      # the interval served with every estimate (age_low, age_high)
QUANTILE_SLACK = 1e-5     # the quantiles' relative tolerance for float32 cumulative sums
SD_FLOOR = 0.5            # years: the least spread a score divides by (a very sure face still
                          # has whole-age labels)
SCORE_SLACK = 1e-5        # the thresholds' relative tolerance (a calibration face on its
                          # threshold stays inside, whatever the float32 rounding)


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


def interval_score(probs, ages=None):
    """|a - expected age| / max(age_sd, SD_FLOOR) per face [B] for its own age `ages` [B],
    or for every age 0..100 [B, ages] when `ages` is None; float32."""
    probs = ops.cast(probs, "float32")
    estimate = expected_age(probs)
    spread = ops.maximum(age_sd(probs), SD_FLOOR)
    if ages is None:
        every = ops.arange(ops.shape(probs)[-1], dtype="float32")
        return ops.abs(every[None, :] - estimate[:, None]) / spread[:, None]
    return ops.abs(ops.cast(ages, "float32") - estimate) / spread


def age_bands_of(num_ages: int, band_starts) -> list[int]:
    """The band index of each age 0..num_ages-1: bands start at 0 and at each of band_starts."""
    return [sum(a >= s for s in band_starts) for a in range(num_ages)]


CALIBRATION_LAYER = "age_interval_calibration"   # the layer's name in a calibrated model


STALE_MESSAGE = ("its intervals were calibrated by an earlier method; calibrate them again with "
                 "`python -m trainer.evaluate --model_dir {run} --calibrate`")


@keras.saving.register_keras_serializable(package=PACKAGE)
class IntervalCalibration(keras.layers.Layer):
    """Age probabilities -> the same probabilities; carries the calibrated score
    thresholds `thresholds[band][mass]` for the nominal `masses` and the age bands that
    start at 0 and at each of `band_starts`.  `interval` reads them."""

    def __init__(self, masses=(INTERVAL_MASS,), band_starts=(), thresholds=None, levels=None, **kwargs):
        super().__init__(**kwargs)
        # `levels`: the quantile-level calibration this layer once carried.  Such a model
        # loads (so --calibrate can replace it) but serves nothing until it is calibrated
        # again (model.load.load_run_model says so).
        self.stale = levels is not None
        self.stale_shape = tuple(np.shape(levels)) if self.stale else None
        self.masses = tuple(float(m) for m in masses)
        self.band_starts = tuple(float(b) for b in band_starts)
        if thresholds is None:   # uncalibrated: two spreads each side for every mass
            thresholds = [[2.0 for _ in self.masses] for _ in range(len(self.band_starts) + 1)]
        self.initial_thresholds = [[float(x) for x in band] for band in thresholds]

    def build(self, input_shape):
        if self.stale:           # only the old weight, so the file loads
            self.levels = self.add_weight(shape=self.stale_shape, trainable=False, name="levels", dtype="float32")
            return
        shape = (len(self.band_starts) + 1, len(self.masses))
        self.thresholds = self.add_weight(shape=shape, trainable=False, name="thresholds", dtype="float32",
                                          initializer=keras.initializers.Constant(self.initial_thresholds))

    def call(self, probs):
        return probs

    def compute_output_shape(self, input_shape):
        return input_shape

    def interval(self, probs, mass: float):
        """(low, high) float32 [B]: the calibrated interval of nominal `mass` (one of
        masses): the first and last age whose score is within its band's threshold; the
        age nearest the estimate when no age is (a threshold under half a spread)."""
        if not self.built:       # a layer made on its own, outside a model
            self.build(ops.shape(probs))
        probs = ops.cast(probs, "float32")
        num_ages = probs.shape[-1]
        per_age = ops.take(self.thresholds[:, self.masses.index(float(mass))],
                           ops.convert_to_tensor(age_bands_of(num_ages, self.band_starts), "int32"), axis=0)
        inside = ops.cast(ops.less_equal(interval_score(probs), per_age[None, :] * (1.0 + SCORE_SLACK)), "float32")
        # The ages before the first inside one, and after the last: counted, not searched
        # (a cumulative sum and a count convert to every TFLite runtime).
        before = ops.sum(ops.cast(ops.equal(ops.cumsum(inside, axis=-1), 0.0), "float32"), axis=-1)
        after = ops.sum(ops.cast(ops.equal(ops.flip(ops.cumsum(ops.flip(inside, axis=-1), axis=-1), axis=-1), 0.0),
                                 "float32"), axis=-1)
        nearest = ops.clip(ops.round(expected_age(probs)), 0.0, float(num_ages - 1))
        found = ops.greater(ops.sum(inside, axis=-1), 0.0)
        return ops.where(found, before, nearest), ops.where(found, float(num_ages - 1) - after, nearest)

    def get_config(self):
        thresholds = self.thresholds.numpy().tolist() if self.built and not self.stale else self.initial_thresholds
        return {**super().get_config(), "masses": list(self.masses), "band_starts": list(self.band_starts),
                "thresholds": thresholds}


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
    if layer is not None and not layer.stale and float(mass) in layer.masses:
        return layer.interval(probs, mass)
    return age_interval(probs, mass)


def with_interval_calibration(net: keras.Model, masses, band_starts, thresholds) -> keras.Model:
    """`net` carrying these thresholds: a model that already has the layer with the same
    masses and bands gets them assigned; otherwise the layer goes after the age output
    (a model whose layer differs is rebuilt on its inputs without it first)."""
    layer = interval_calibration(net)
    if (layer is not None and not layer.stale and layer.masses == tuple(masses)
            and layer.band_starts == tuple(band_starts)):
        layer.thresholds.assign(ops.convert_to_tensor(thresholds, "float32"))
        return net
    outputs = net.output
    if layer is not None:   # unwrap: the layer is the identity, its input is the age output
        age = layer.input
        outputs = {**outputs, "age": age} if isinstance(outputs, dict) else age
    calibrated = IntervalCalibration(masses, band_starts, thresholds, name=CALIBRATION_LAYER)
    if isinstance(outputs, dict):
        outputs = {**outputs, "age": calibrated(outputs["age"])}
    else:
        outputs = calibrated(outputs)
    return keras.Model(net.inputs, outputs, name=net.name)
