"""In-graph DEX metrics on sparse integer age labels and age probabilities.

Both are plain `keras.metrics.Metric`s (registered, serializable), usable in
``model.compile(metrics=...)`` and as the building blocks of a custom loop:
:func:`age_abs_error` gives the per-example error whose sum a distributed
trainer can reduce exactly across replicas.
"""
from __future__ import annotations

import keras
from keras import ops

from .layers import PACKAGE, expected_age


def age_abs_error(y_true, probs):
    """|expected_age(probs) - y_true| per example, float32, shape [B]."""
    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    return ops.abs(expected_age(probs) - y_true)


class _MeanOfPerExample(keras.metrics.Metric):
    """Weighted mean of a per-example quantity; state is (total, count)."""

    def __init__(self, name, dtype=None):
        super().__init__(name=name, dtype=dtype or "float32")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total", dtype="float32")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count", dtype="float32")

    def _per_example(self, y_true, y_pred):  # pragma: no cover - abstract
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._per_example(y_true, y_pred)
        if sample_weight is None:
            weights = ops.ones_like(values)
        else:
            weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        self.total.assign_add(ops.sum(values * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AgeMAE(_MeanOfPerExample):
    """Mean absolute error of the expected age (DEX) against the true age."""

    def __init__(self, name="mae", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def _per_example(self, y_true, y_pred):
        return age_abs_error(y_true, y_pred)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CumulativeScore(_MeanOfPerExample):
    """CS(θ): fraction of examples whose expected age is within θ years (error <= θ)."""

    def __init__(self, threshold=5, name=None, dtype=None):
        self.threshold = float(threshold)
        if name is None:
            name = f"cs{threshold:g}" if isinstance(threshold, (int, float)) else "cs"
        super().__init__(name=name, dtype=dtype)

    def _per_example(self, y_true, y_pred):
        return ops.cast(age_abs_error(y_true, y_pred) <= self.threshold, "float32")

    def get_config(self):
        return {"threshold": self.threshold, "name": self.name, "dtype": self.dtype}
