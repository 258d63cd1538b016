"""The metric names and the CS threshold: history.csv's columns, report.json's keys,
--best_metric's values.  Imports nothing (the flags read them before TensorFlow loads);
model.metrics computes them."""

from __future__ import annotations

CS_THRESHOLD = 5.0                 # CS(θ): the fraction of faces within θ years

# The metric names: history.csv's columns, report.json's keys, --best_metric's values.
LOSS, ACCURACY, MAE = "loss", "accuracy", "mae"
CS_NAME = f"cs{CS_THRESHOLD:g}"    # "cs5"
EPSILON_ERROR = "epsilon_error"    # over the faces with a spread (apparent-age data)
GENDER_ACCURACY = "gender_accuracy"   # --task=age_gender
RATES = (LOSS, ACCURACY, MAE, CS_NAME)   # what every epoch reports, on training and validation data
VAL_PREFIX = "val_"


def val(name: str) -> str:
    """The name of metric `name` on the validation data ("val_mae")."""
    return VAL_PREFIX + name
