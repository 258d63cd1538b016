"""records.augment: every registered op eagerly and inside tf.data (same seed, same
result), what each op does, and label_jitter's draw against its N(age_mean, age_std)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from records import augment, schema

SIZE = 12


def batch(n=6):
    rng = np.random.RandomState(0)
    images = tf.constant(rng.randint(0, 255, (n, SIZE, SIZE, 3)), tf.uint8)
    labels = {"age": tf.constant(np.arange(n) * 10, tf.int32),
              "age_mean": tf.constant(np.arange(n) * 10 + 0.4, tf.float32),
              "age_std": tf.constant([0.0, 3.0, 0.0, 5.0, 2.0, 0.0], tf.float32)}
    return images, labels


@pytest.mark.parametrize("name", sorted(augment.OPS))
def test_each_op_is_the_same_eagerly_and_inside_dataset_map(name):
    images, labels = batch()
    seed = tf.constant([5, 6], tf.int64)
    eager = augment.OPS[name](images, labels, seed)
    mapped = next(iter(tf.data.Dataset.from_tensors((images, labels, seed)).map(augment.OPS[name])))
    np.testing.assert_array_equal(eager[0].numpy(), mapped[0].numpy())
    for key in labels:
        np.testing.assert_array_equal(eager[1][key].numpy(), mapped[1][key].numpy())
    assert eager[0].dtype == tf.uint8 and eager[0].shape == images.shape


def test_flip_mirrors_some_images_exactly_and_leaves_the_rest():
    images, labels = batch(32)
    out = augment.OPS["flip"](images, labels, tf.constant([1, 2], tf.int64))[0].numpy()
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images.numpy())]
    same = [np.array_equal(o, i) for o, i in zip(out, images.numpy())]
    assert all(m or s for m, s in zip(mirrored, same)) and 5 < sum(mirrored) < 27


def test_label_jitter_draws_from_the_spread_and_keeps_ages_without_one():
    n = 4000
    labels = {"age": tf.fill([n], 30), "age_mean": tf.fill([n], 30.4), "age_std": tf.fill([n], 5.0)}
    images = tf.zeros([n, 1, 1, 3], tf.uint8)
    ages = augment.OPS["label_jitter"](images, labels, tf.constant([0, 1], tf.int64))[1]["age"].numpy()
    assert ages.dtype == np.int32
    assert abs(ages.mean() - 30.4) < 0.3 and abs(ages.std() - 5.0) < 0.3
    _, labels = batch()
    out = augment.OPS["label_jitter"](images[:6], labels, tf.constant([0, 1], tf.int64))[1]["age"].numpy()
    np.testing.assert_array_equal(out[[0, 2, 5]], [0, 20, 50])       # age_std 0: unchanged
    # clipped to the 101 ages
    high = {"age": tf.fill([500], 99), "age_mean": tf.fill([500], 99.0), "age_std": tf.fill([500], 20.0)}
    drawn = augment.OPS["label_jitter"](images[:1], high, tf.constant([3, 4], tf.int64))[1]["age"].numpy()
    assert drawn.max() == 100 and drawn.min() >= 0
    # a source without spreads: the labels come back as they were
    plain = {"age": tf.constant([7, 8])}
    assert augment.OPS["label_jitter"](images[:2], plain, tf.constant([0, 1], tf.int64))[1] is plain


def test_apply_runs_ops_in_order_and_unknown_names_are_refused():
    images, labels = batch()
    seed = tf.constant([9, 9], tf.int64)
    out = augment.apply(("flip", "label_jitter"), images, labels, seed)
    np.testing.assert_array_equal(out[0].numpy(), augment.OPS["flip"](
        images, labels, tf.random.experimental.stateless_fold_in(seed, 0))[0].numpy())
    with pytest.raises(ValueError, match="unknown augmentation op 'rotate'; known: crop, flip, label_jitter"):
        augment.check_ops(["flip", "rotate"])


def test_label_jitter_rounds_a_half_up_as_ingest_does():
    means = [0.5, 1.5, 2.5, 30.5]
    labels = {"age": tf.constant([0, 0, 0, 0]), "age_mean": tf.constant(means),
              "age_std": tf.fill([4], 1e-30)}          # a spread, too small to move the mean
    ages = augment.OPS["label_jitter"](tf.zeros([4, 1, 1, 3], tf.uint8), labels,
                                       tf.constant([0, 1], tf.int64))[1]["age"].numpy()
    assert ages.tolist() == [schema.label_age(m) for m in means] == [1, 2, 3, 31]


def test_round_age_is_one_rule_for_numbers_arrays_and_tensors():
    halves = [-0.5, 0.5, 1.5, 2.5, 2.49]
    assert [schema.round_age(x) for x in halves] == [0.0, 1.0, 2.0, 3.0, 2.0]
    assert schema.round_age(np.array(halves)).tolist() == [0.0, 1.0, 2.0, 3.0, 2.0]
    assert schema.round_age(tf.constant(halves)).numpy().tolist() == [0.0, 1.0, 2.0, 3.0, 2.0]
