"""One training loop on tf.distribute, used unchanged by every strategy.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras
#20585), so the trainer owns this compact loop in the style of TF Model Garden's
Orbit: a `tf.function` that runs several steps with `strategy.run` and returns
metric *sums* reduced across replicas and workers. Sums (not means) make every
metric exact however the batches are split across replicas.

Evaluation runs outside the strategy, on each worker, over a non-distributed,
non-repeating dataset: no collective op is involved, so a partial final batch or
workers with unequal data can never hang it. Every worker computes the same
numbers from the same weights, so they all take the same early-stopping decision.

The ChaLearn ε-error is a sum too: the per-face error over the faces whose label has
a spread (age_std > 0, e.g. APPA-REAL's votes) and their count, so its mean is exact
however the faces are split. A split without such faces reports no ε-error at all.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from model import metric_names, metrics as dex_metrics
from records import schema

# The reduced sums every step returns (each metric's total, a ratio's weight, the example
# count), declared by the metric table; metrics() turns them into rates.
COUNT = metric_names.COUNT


def active(table, with_gender: bool) -> tuple:
    """The metrics of `table` a model computes: the gender head's only with it."""
    return tuple(m for m in table if m.when != metric_names.WITH_GENDER or with_gender)


def sum_keys(with_gender: bool, table=metric_names.METRICS) -> tuple[str, ...]:
    """Every key of the loop's sums, in table order, the example count last."""
    return tuple(k for m in active(table, with_gender) for k in m.sum_keys()) + (COUNT,)


def batch_sums(outputs, labels, with_gender: bool, table=metric_names.METRICS):
    """Per-example loss and the metric sums of one batch.

    Loss: sparse categorical cross-entropy on ages 0..100, plus (age_gender) the
    gender cross-entropy of records whose gender is known. The apparent age is
    DEX's expectation over the softmax, not its argmax. `labels` carries the
    reader's age, age_mean and age_std (and gender with `with_gender`). Each metric of
    `table` sums its per-example values (and a ratio its per-example weights).
    """
    age_probs = outputs["age"] if isinstance(outputs, dict) else outputs
    age = labels["age"]
    per_example = keras.losses.sparse_categorical_crossentropy(age, age_probs)
    expected = dex_metrics.expected_age(age_probs)
    gender_probs = None
    if with_gender:
        gender = labels["gender"]
        known = tf.cast(gender != schema.GENDER_UNKNOWN, tf.float32)
        gender_probs = outputs["gender"]
        per_example += known * keras.losses.sparse_categorical_crossentropy(
            tf.maximum(gender, 0), gender_probs)
    batch = metric_names.Batch(labels=labels, age_probs=age_probs, expected=expected,
                               abs_error=dex_metrics.abs_error(age, expected), loss=per_example,
                               gender_probs=gender_probs)
    sums = {}
    for m in active(table, with_gender):
        sums[m.total] = tf.reduce_sum(tf.cast(m.per_example(batch), tf.float32))
        if m.weight is not None:
            sums[m.weight_total] = tf.reduce_sum(tf.cast(m.weight(batch), tf.float32))
    sums[COUNT] = tf.cast(tf.shape(age)[0], tf.float32)
    return per_example, sums


def metrics(sums: dict, table=metric_names.METRICS) -> dict:
    """Rates from summed counts, in table order: a mean over every example, or a ratio
    over its weight (a metric `IF_COUNTED` only when some example had weight: the
    ε-error when some face had a spread)."""
    n = float(sums[COUNT])
    out = {}
    for m in table:
        if any(k not in sums for k in m.sum_keys()):      # the gender head's, without it
            continue
        if m.weight is None:
            out[m.name] = float(sums[m.total]) / n
            continue
        weight = float(sums[m.weight_total])
        if m.when == metric_names.IF_COUNTED and weight <= 0:
            continue
        out[m.name] = float(sums[m.total]) / max(weight, 1.0)
    return out


def _zeros(with_gender: bool, table=metric_names.METRICS) -> dict:
    return {k: tf.constant(0.0) for k in sum_keys(with_gender, table)}


class Loop:
    """Train and evaluate `net` (the age model, or its head on cached features)."""

    def __init__(self, strategy: tf.distribute.Strategy, net: keras.Model,
                 optimizer: keras.optimizers.Optimizer, *, global_batch_size: int,
                 with_gender: bool, jit_compile: bool = False, table=metric_names.METRICS):
        self.strategy, self.net, self.optimizer = strategy, net, optimizer
        self.table = table
        self.global_batch_size = global_batch_size
        self.with_gender = with_gender
        # XLA compiles the forward/backward pass only: the optimizer update holds the
        # cross-replica all-reduce, which must stay outside the compiled cluster. Without
        # XLA the pass is not a nested tf.function: a synchronized BatchNorm (the small
        # variant) all-reduces its batch statistics inside it, which strategy.run allows
        # only in its own function.
        self._grads = (tf.function(self._forward_backward, jit_compile=True) if jit_compile
                       else self._forward_backward)
        self._train_steps = tf.function(self._train_steps_impl)
        self._eval_batch = tf.function(self._eval_batch_impl)

    def _forward_backward(self, images, labels):
        net = self.net
        with tf.GradientTape() as tape:
            outputs = net(images, training=True)
            per_example, sums = batch_sums(outputs, labels, self.with_gender, self.table)
            # Scaled by the GLOBAL batch: summing gradients over replicas then gives the mean.
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
            scaled = self.optimizer.scale_loss(loss)  # loss scaling under mixed_float16, else identity
        grads = tape.gradient(scaled, net.trainable_variables)
        return grads, sums

    def _replica_step(self, images, labels):
        grads, sums = self._grads(images, labels)
        # Keras' TF optimizer all-reduces (sums) the gradients across replicas here,
        # and LossScaleOptimizer unscales them and skips non-finite steps.
        self.optimizer.apply(grads, self.net.trainable_variables)
        # Sum the metrics over replicas and workers in replica context: one batched
        # all-reduce (strategy.reduce in a tf.range loop fails under multi-worker).
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, sums)

    def _train_steps_impl(self, iterator, num_steps):
        totals = _zeros(self.with_gender, self.table)
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            per_replica = self.strategy.run(self._replica_step, args=(images, labels))
            # Every replica holds the same all-reduced sums: take the local first one.
            reduced = self.strategy.experimental_local_results(per_replica)[0]
            totals = {k: totals[k] + reduced[k] for k in totals}
        return totals

    def train(self, iterator, num_steps: int) -> dict:
        """Run `num_steps` synchronous steps; returns the summed metrics (numpy)."""
        totals = self._train_steps(iterator, tf.constant(num_steps, tf.int64))
        return {k: float(v) for k, v in totals.items()}

    def _eval_batch_impl(self, images, labels):
        outputs = self.net(images, training=False)
        return batch_sums(outputs, labels, self.with_gender, self.table)[1]

    def evaluate(self, dataset: tf.data.Dataset) -> dict:
        """Summed metrics over every record of a finite, non-distributed dataset."""
        totals = {k: 0.0 for k in _zeros(self.with_gender, self.table)}
        for images, labels in dataset:
            for k, v in self._eval_batch(images, labels).items():
                totals[k] += float(v)
        if not totals[COUNT]:
            raise ValueError("the validation split yielded no records")
        return totals


def model_variables(net: keras.Model) -> dict:
    """Every weight of `net` (trainable or frozen) keyed by its path, for
    tf.train.Checkpoint: Keras 3 models reach a TF checkpoint only through the
    optimizer's trainable slots, which would miss the frozen trunk."""
    out = {}
    for v in net.weights:
        key = v.path.replace("/", ".")
        if key in out:
            raise ValueError(f"two weights share the path {v.path}")
        out[key] = v
    return out


def set_seeds(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    np.random.seed(seed)
