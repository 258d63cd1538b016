"""The metric table: every epoch metric, declared once.

Each `Metric` says its name (history.csv's column, report.json's key), its value per
example (a function of one batch's labels and predictions), how the examples reduce
(the mean over all of them, or a ratio over the examples its own weight counts), and
where it is shown: the epoch line, the history, the --best_metric choices, the report.
The training loop's sums, history.csv's columns, the epoch line, `BEST_METRICS`, the
printed report and report.html's headline are all derived from `METRICS`: a new epoch
metric is one entry here.

Imports nothing heavy (the flags read the names before TensorFlow loads): the per-example
functions import Keras when they run, inside the loop's step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

CS_THRESHOLD = 5.0                 # CS(θ): the fraction of faces within θ years

LOSS, ACCURACY, MAE = "loss", "accuracy", "mae"
CS_NAME = f"cs{CS_THRESHOLD:g}"    # "cs5"
EPSILON_ERROR = "epsilon_error"    # over the faces with a spread (apparent-age data)
GENDER_ACCURACY = "gender_accuracy"   # --task=age_gender
VAL_PREFIX = "val_"
COUNT = "count"                    # the loop's sum of examples: every mean's denominator

# When a metric is part of an epoch's results.
ALWAYS = "always"
WITH_GENDER = "with_gender"        # a model with the gender head (--task=age_gender)
IF_COUNTED = "if_counted"          # only when some example had weight (its column may stay empty)


def val(name: str) -> str:
    """The name of metric `name` on the validation data ("val_mae")."""
    return VAL_PREFIX + name


@dataclasses.dataclass(frozen=True)
class Batch:
    """What a per-example function reads: one batch's labels and predictions (tensors).
    `loss` is the per-example training loss; `expected` DEX's expected age; `abs_error`
    |expected - age|; `gender_probs` None without the gender head."""
    labels: dict
    age_probs: Any
    expected: Any
    abs_error: Any
    loss: Any
    gender_probs: Any = None


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str                                   # history column, report.json key
    per_example: Callable[[Batch], Any]         # float32 [B]
    total: str                                  # its sum's key in the loop's sums
    weight: Callable[[Batch], Any] | None = None   # ratio: a per-example weight [B]; None: the mean over all
    weight_total: str = COUNT                   # the weight sum's key (a ratio's own)
    when: str = ALWAYS                          # ALWAYS, WITH_GENDER or IF_COUNTED
    line: str = ""                              # "": not on the epoch line; "val": validation only; "both"
    short: str = ""                             # its name on the epoch line (default: its name), val_ added
    best: bool = False                          # a --best_metric choice (as val_NAME; lower is better)
    label: str = ""                             # its row in the printed report and report.html ("": none)
    fmt: str = ".4f"                            # the report's format
    card: bool = False                          # a headline card of report.html

    def sum_keys(self) -> tuple[str, ...]:
        return (self.total,) if self.weight is None else (self.total, self.weight_total)

    def on_line(self, validation: bool) -> bool:
        return self.line == "both" or (validation and self.line == "val")


# The per-example values (Keras ops, imported when a step runs).
def _loss(b: Batch):
    return b.loss


def _top1(b: Batch):
    from keras import ops
    return ops.cast(ops.equal(ops.cast(ops.argmax(b.age_probs, -1), "int32"),
                              ops.cast(b.labels["age"], "int32")), "float32")


def _abs_error(b: Batch):
    return b.abs_error


def _within(b: Batch):
    from model.metrics import within
    return within(b.abs_error, CS_THRESHOLD)


def _gender_known(b: Batch):
    from keras import ops
    from records.schema import GENDER_UNKNOWN
    return ops.cast(ops.not_equal(b.labels["gender"], GENDER_UNKNOWN), "float32")


def _gender_hit(b: Batch):
    from keras import ops
    hit = ops.equal(ops.cast(ops.argmax(b.gender_probs, -1), "int32"), ops.cast(b.labels["gender"], "int32"))
    return _gender_known(b) * ops.cast(hit, "float32")


def _spread(b: Batch):
    from keras import ops
    return ops.cast(ops.greater(ops.cast(b.labels["age_std"], "float32"), 0.0), "float32")


def _epsilon(b: Batch):
    # 0 for a face with std 0, never NaN or inf
    from model.metrics import spread_epsilon_error
    return spread_epsilon_error(b.expected, b.labels["age_mean"], b.labels["age_std"])


METRICS = (
    Metric(LOSS, _loss, "loss", line="both", best=True, label="loss"),
    Metric(ACCURACY, _top1, "correct", label="top-1 accuracy"),
    Metric(MAE, _abs_error, "abs_error", line="both", best=True, label="MAE (years)", fmt=".2f", card=True),
    Metric(CS_NAME, _within, f"within{CS_THRESHOLD:g}", line="val", label=f"CS({CS_THRESHOLD:g})", card=True),
    Metric(GENDER_ACCURACY, _gender_hit, "gender_correct", weight=_gender_known, weight_total="gender_count",
           when=WITH_GENDER, line="val", short="gender_acc", label="gender accuracy"),
    Metric(EPSILON_ERROR, _epsilon, EPSILON_ERROR, weight=_spread, weight_total="epsilon_count",
           when=IF_COUNTED, line="val", short="eps", best=True, label="epsilon-error (ChaLearn)"),
)

RATES = tuple(m.name for m in METRICS if m.when == ALWAYS)   # what every epoch reports ("loss", ..., "cs5")


def best_choices(table=METRICS) -> tuple[str, ...]:
    """--best_metric's values: the validation name of each best-model metric (all lower is better)."""
    return tuple(val(m.name) for m in table if m.best)


def epoch_line(table=METRICS) -> dict:
    """History column -> its name on the epoch line: training ones first, then validation."""
    train = {m.name: m.short or m.name for m in table if m.on_line(False)}
    return {**train, **{val(m.name): val(m.short or m.name) for m in table if m.on_line(True)}}


def history_columns(table=METRICS) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the metric columns every history.csv has, the optional ones in their order): each
    metric on training then validation data; the gender head's before the counted ones."""
    def cols(ms):
        return tuple(c for m in ms for c in (m.name, val(m.name)))
    always = [m for m in table if m.when == ALWAYS]
    return (tuple(m.name for m in always) + tuple(val(m.name) for m in always),
            cols(m for m in table if m.when == WITH_GENDER) + cols(m for m in table if m.when == IF_COUNTED))
