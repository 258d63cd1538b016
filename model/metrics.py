"""The DEX metrics and their names, defined once: everything that reports an MAE,
a CS(θ) or an ε-error (the training loop's sums, evaluation, the plots, the
history and report columns) calls these and spells them with these names.

    expected_age(probs)        apparent age: the expectation over the age softmax
    abs_error(age, expected)   |expected - age| per example, float32
    age_abs_error(age, probs)  the two together
    mean_abs_error(age, x)     the MAE of a set of faces, a float
    within(abs_error)          1.0 where the error is at most θ = CS_THRESHOLD years
    epsilon_error(x, μ, σ)     ChaLearn LAP's apparent-age error 1 - exp(-(x-μ)²/(2σ²)),
                               for faces with a spread σ > 0
    spread_epsilon_error(...)  the same, 0 for a face with σ = 0 (never NaN or inf)

Keras ops only (any backend; numpy in, tensors out).
"""
from __future__ import annotations

from keras import ops

from .layers import expected_age

__all__ = ["CS_THRESHOLD", "CS_NAME", "LOSS", "ACCURACY", "MAE", "EPSILON_ERROR", "GENDER_ACCURACY",
           "RATES", "val", "expected_age", "abs_error", "age_abs_error", "mean_abs_error", "within",
           "epsilon_error", "spread_epsilon_error"]

from .metric_names import (ACCURACY, CS_NAME, CS_THRESHOLD, EPSILON_ERROR, GENDER_ACCURACY,  # noqa: F401
                           LOSS, MAE, RATES, VAL_PREFIX, val)


def abs_error(true_age, expected):
    """|expected - true_age| per example, float32, shape [B]."""
    true_age = ops.reshape(ops.cast(true_age, "float32"), (-1,))
    return ops.abs(ops.cast(expected, "float32") - true_age)


def age_abs_error(true_age, probs):
    """|expected_age(probs) - true_age| per example, float32, shape [B]."""
    return abs_error(true_age, expected_age(probs))


def mean_abs_error(true_age, expected) -> float:
    """The MAE of a set of faces: the mean of `abs_error`, a Python float."""
    return float(ops.mean(abs_error(true_age, expected)))


def within(error, threshold: float = CS_THRESHOLD):
    """1.0 where `error` <= threshold, else 0.0 (float32): CS(θ) is its mean."""
    return ops.cast(ops.less_equal(error, threshold), "float32")


def epsilon_error(expected, mean, std):
    """1 - exp(-(expected - mean)² / (2 std²)) per example, float32 [B]: 0 on the mean,
    towards 1 far from it. Defined for std > 0 only (callers leave std = 0 faces out)."""
    x = ops.cast(expected, "float32")
    mean, std = ops.cast(mean, "float32"), ops.cast(std, "float32")
    return 1.0 - ops.exp(-ops.square(x - mean) / (2.0 * ops.square(std)))


def spread_epsilon_error(expected, mean, std):
    """`epsilon_error` where std > 0, 0.0 where std = 0 (no spread, no ε-error): such a
    face is computed with std 1 and then zeroed, so no NaN or inf from its division
    ever enters a sum."""
    std = ops.cast(std, "float32")
    spread = ops.greater(std, 0.0)
    return ops.where(spread, epsilon_error(expected, mean, ops.where(spread, std, ops.ones_like(std))), 0.0)
