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


def test_a_new_metric_is_one_table_entry_in_the_sums_the_rates_and_the_history():
    """A toy metric (CS at 10 years) added to a copy of the metric table reaches the loop's
    sums (a step's and a whole evaluation's), its rates, history.csv's columns, the epoch
    line, the --best_metric choices and the report rows."""
    import keras

    from model import metric_names, metrics as dex_metrics
    from trainer import history

    toy = metric_names.Metric("cs10", lambda b: dex_metrics.within(b.abs_error, 10.0), "within10",
                              line="val", best=True, label="CS(10)")
    table = metric_names.METRICS + (toy,)
    rng = np.random.default_rng(4)
    outputs, labels, probs, age, *_ = random_batch(rng, 40, with_gender=False)
    err = np.abs(probs @ np.arange(101) - age)
    _, sums = loop.batch_sums(outputs, labels, False, table)
    assert "within10" in loop.sum_keys(False, table) and "within10" not in loop.sum_keys(False)
    assert float(sums["within10"]) == (err <= 10).sum() and float(sums["within5"]) == (err <= 5).sum()
    rates = loop.metrics(sums, table)
    assert rates["cs10"] == pytest.approx((err <= 10).mean()) and "cs10" not in loop.metrics(sums)

    net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(101, activation="softmax")])
    x = rng.normal(size=(10, 4)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, {k: v[:10] for k, v in labels.items()})).batch(4)
    trainer = loop.Loop(tf.distribute.get_strategy(), net, keras.optimizers.Adam(), global_batch_size=4,
                        with_gender=False, table=table)
    totals = trainer.evaluate(ds)
    net_err = np.abs(net(x).numpy() @ np.arange(101) - age[:10])
    assert totals["within10"] == (net_err <= 10).sum() and totals["count"] == 10

    row = {"epoch": 1, **rates, **{metric_names.val(k): v for k, v in rates.items()},
           "learning_rate": 0.1, "epoch_seconds": 1.0, "images_per_second": 40.0}
    columns = history.columns([row], table)
    assert columns.index("cs10") == columns.index("cs5") + 1
    assert columns.index("val_cs10") == columns.index("val_cs5") + 1 < columns.index("learning_rate")
    assert "cs10" not in history.columns([row])
    assert metric_names.epoch_line(table)["val_cs10"] == "val_cs10"
    assert metric_names.best_choices(table)[-1] == "val_cs10"
