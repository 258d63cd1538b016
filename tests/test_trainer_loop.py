"""trainer.loop's metric sums against numpy: exact, and independent of how a
split is cut into batches (the property the distributed reduction relies on)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from trainer import loop


def random_batch(rng, n, with_gender):
    logits = rng.normal(size=(n, 101)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    age = rng.integers(0, 101, n)
    labels = {"age": tf.constant(age, tf.int32)}
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
        _, s = loop.batch_sums(outputs[lo:hi], {"age": labels["age"][lo:hi]}, False)
        for k in parts:
            parts[k] += float(s[k])
    a, b = loop.metrics(whole), loop.metrics(parts)
    assert a.keys() == {"loss", "accuracy", "mae", "cs5"}
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5)
