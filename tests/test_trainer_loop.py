"""trainer.loop's metric sums against numpy: exact, and independent of how a
split is cut into batches (the property the distributed reduction relies on); the
ε-error against trainer.evaluate's apparent_age_scores on the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from trainer import loop
from trainer.evaluate import apparent_age_scores


def labels_of(age, age_mean=None, age_std=None) -> dict:
    """The reader's labels: without a spread, age_mean = age and age_std = 0."""
    age = np.asarray(age)
    return {"age": tf.constant(age, tf.int32),
            "age_mean": tf.constant(age if age_mean is None else age_mean, tf.float32),
            "age_std": tf.constant(np.zeros(len(age)) if age_std is None else age_std, tf.float32)}


def random_batch(rng, n, with_gender):
    logits = rng.normal(size=(n, 101)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    age = rng.integers(0, 101, n)
    labels = labels_of(age)
    outputs = tf.constant(probs, tf.float32)
    if with_gender:
        g_logits = rng.normal(size=(n, 2))
        g_probs = np.exp(g_logits) / np.exp(g_logits).sum(1, keepdims=True)
        gender = rng.choice([-1, 0, 1], n)
        labels["gender"] = tf.constant(gender, tf.int32)
        outputs = {"age": outputs, "gender": tf.constant(g_probs, tf.float32)}
        return outputs, labels, probs, age, g_probs, gender
    return outputs, labels, probs, age, None, None


def test_batch_sums_match_numpy_with_gender_masking():
    rng = np.random.default_rng(0)
    outputs, labels, probs, age, g_probs, gender = random_batch(rng, 64, with_gender=True)
    per_example, sums = loop.batch_sums(outputs, labels, with_gender=True)
    expected = probs @ np.arange(101)
    err = np.abs(expected - age)
    known = gender >= 0
    ce = -np.log(probs[np.arange(64), age]) + known * -np.log(g_probs[np.arange(64), np.maximum(gender, 0)])
    np.testing.assert_allclose(per_example.numpy(), ce, rtol=1e-4)
    np.testing.assert_allclose(float(sums["abs_error"]), err.sum(), rtol=1e-4)
    assert float(sums["within5"]) == (err <= 5).sum()
    assert float(sums["correct"]) == (probs.argmax(1) == age).sum()
    assert float(sums["gender_count"]) == known.sum()
    assert float(sums["gender_correct"]) == ((g_probs.argmax(1) == gender) & known).sum()
    assert float(sums["count"]) == 64


def test_metrics_do_not_depend_on_how_the_batch_is_split():
    rng = np.random.default_rng(1)
    outputs, labels, *_ = random_batch(rng, 50, with_gender=False)
    whole = {k: float(v) for k, v in loop.batch_sums(outputs, labels, False)[1].items()}
    parts = {k: 0.0 for k in whole}
    for lo, hi in ((0, 7), (7, 32), (32, 50)):          # uneven, like a partial last batch
        _, s = loop.batch_sums(outputs[lo:hi], {k: v[lo:hi] for k, v in labels.items()}, False)
        for k in parts:
            parts[k] += float(s[k])
    a, b = loop.metrics(whole), loop.metrics(parts)
    assert a.keys() == {"loss", "accuracy", "mae", "cs5"}
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5)


def one_hot_at(ages) -> tf.Tensor:
    """Softmax outputs whose expected age is exactly `ages`."""
    return tf.constant(np.eye(101)[np.asarray(ages)], tf.float32)


def test_epsilon_sums_leave_out_faces_without_a_spread_and_match_evaluate():
    expected = np.array([30, 33, 50, 24, 70])
    mean = np.array([30.0, 30.0, 45.0, 20.0, 70.0])
    std = np.array([4.0, 3.0, 0.0, 2.0, 0.0])          # faces 3 and 5: no spread, left out
    # (face 5 sits on its mean: unguarded, its 0/0 would make the sum NaN)
    _, sums = loop.batch_sums(one_hot_at(expected), labels_of(mean.round(), mean, std), False)
    # ε: 0, 1 - e^(-9/18) = 0.393469, 1 - e^(-16/8) = 0.864665; the std-0 faces add nothing
    assert float(sums["epsilon_count"]) == 3
    assert float(sums["epsilon_error"]) == pytest.approx(0.393469 + 0.864665, abs=1e-5)
    rates = loop.metrics({k: float(v) for k, v in sums.items()})
    scores = apparent_age_scores(expected.astype(float), mean, std)
    assert scores["epsilon_faces"] == 3
    assert rates["epsilon_error"] == pytest.approx(scores["epsilon_error"], abs=1e-6)
    assert rates["epsilon_error"] == pytest.approx((0.0 + 0.393469 + 0.864665) / 3, abs=1e-6)


def test_epsilon_does_not_depend_on_how_the_batch_is_split():
    rng = np.random.default_rng(2)
    outputs, *_ = random_batch(rng, 40, with_gender=False)
    mean = rng.uniform(0, 100, 40)
    std = np.where(rng.random(40) < 0.4, 0.0, rng.uniform(0.5, 8, 40))
    std[:3] = 0.0                                          # some std-0 faces, whatever the draw
    labels = labels_of(mean.round().astype(int), mean, std)
    whole = {k: float(v) for k, v in loop.batch_sums(outputs, labels, False)[1].items()}
    assert np.isfinite(whole["epsilon_error"]) and whole["epsilon_count"] == (std > 0).sum()
    parts = {k: 0.0 for k in whole}
    for lo, hi in ((0, 3), (3, 25), (25, 40)):             # the first part has no spread at all
        _, s = loop.batch_sums(outputs[lo:hi], {k: v[lo:hi] for k, v in labels.items()}, False)
        for k in parts:
            parts[k] += float(s[k])
    expected = outputs.numpy() @ np.arange(101)
    by_evaluate = apparent_age_scores(expected, mean, std)["epsilon_error"]
    assert loop.metrics(whole)["epsilon_error"] == pytest.approx(by_evaluate, rel=1e-5)
    assert loop.metrics(parts)["epsilon_error"] == pytest.approx(by_evaluate, rel=1e-5)


def test_a_split_without_spreads_reports_no_epsilon_error():
    rng = np.random.default_rng(3)
    outputs, labels, *_ = random_batch(rng, 20, with_gender=True)
    _, sums = loop.batch_sums(outputs, labels, True)
    assert float(sums["epsilon_count"]) == 0 and float(sums["epsilon_error"]) == 0
    rates = loop.metrics({k: float(v) for k, v in sums.items()})
    assert "epsilon_error" not in rates and "gender_accuracy" in rates
