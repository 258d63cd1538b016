"""Training augmentation as a registry of named batch ops (big_vision's `pp` registry style).

Each op is a small function registered under a name: it takes a decoded batch
`(images uint8 [B, H, W, 3], labels dict)` and a stateless seed (int [2]) and
returns the batch, so the same seed gives the same result eagerly and inside
`Dataset.map`. `apply(names, ...)` runs them in the order given, each with its own
seed folded in from the batch's seed.

    flip           horizontal mirror of about half the images
    crop           a random square crop keeping MIN_CROP_SCALE..1 of each side, resized back
    label_jitter   the training age drawn from N(age_mean, age_std), rounded and clipped to
                   0..NUM_AGES-1; records without a spread (age_std 0, or no age_std in
                   the labels) keep their age

`--augment` means DEFAULT_OPS; `--augment_ops` chooses among OP_NAMES (records.augment_ops,
the names without TensorFlow).
"""
from __future__ import annotations

from typing import Callable, Sequence

import tensorflow as tf

from records.augment_ops import DEFAULT_OPS, OP_NAMES, check_ops, resolve  # noqa: F401  (this module's API)
from records.schema import AGE_MEAN, AGE_STD, NUM_AGES, round_age

Op = Callable[[tf.Tensor, dict, tf.Tensor], tuple]
OPS: dict[str, Op] = {}
MIN_CROP_SCALE = 0.85                # a crop keeps at least 85% of each side: "small" crop/scale


def register(name: str) -> Callable[[Op], Op]:
    def wrap(fn: Op) -> Op:
        if name in OPS:
            raise ValueError(f"augmentation op {name!r} registered twice")
        OPS[name] = fn
        return fn
    return wrap


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


@register("flip")
def flip(images: tf.Tensor, labels: dict, seed: tf.Tensor) -> tuple:
    mirror = tf.random.stateless_uniform([tf.shape(images)[0]], seed) < 0.5
    return tf.where(mirror[:, None, None, None], tf.reverse(images, axis=[2]), images), labels


@register("crop")
def crop(images: tf.Tensor, labels: dict, seed: tf.Tensor) -> tuple:
    # One crop_and_resize per batch; the box [0, 0, 1, 1] is an exact identity.
    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    s_scale, s_y, s_x = [tf.random.experimental.stateless_fold_in(seed, i) for i in range(3)]
    scale = tf.random.stateless_uniform([b], s_scale, MIN_CROP_SCALE, 1.0)
    y0 = tf.random.stateless_uniform([b], s_y) * (1.0 - scale)
    x0 = tf.random.stateless_uniform([b], s_x) * (1.0 - scale)
    boxes = tf.stack([y0, x0, y0 + scale, x0 + scale], axis=1)
    out = tf.image.crop_and_resize(tf.cast(images, tf.float32), boxes, tf.range(b), [h, w])
    return tf.ensure_shape(_to_uint8(out), images.shape), labels


@register("label_jitter")
def label_jitter(images: tf.Tensor, labels: dict, seed: tf.Tensor) -> tuple:
    if AGE_STD not in labels:                 # a source without spreads: unchanged
        return images, labels
    mean = tf.cast(labels[AGE_MEAN], tf.float32)
    std = tf.cast(labels[AGE_STD], tf.float32)
    drawn = mean + std * tf.random.stateless_normal(tf.shape(mean), seed)
    drawn = tf.cast(tf.clip_by_value(round_age(drawn), 0.0, NUM_AGES - 1.0), labels["age"].dtype)
    return images, {**labels, "age": tf.where(std > 0, drawn, labels["age"])}


def apply(names: Sequence[str], images: tf.Tensor, labels: dict, seed: tf.Tensor) -> tuple:
    """Run the named ops in order on one batch; op i gets fold_in(seed, i)."""
    for i, name in enumerate(names):
        images, labels = OPS[name](images, labels, tf.random.experimental.stateless_fold_in(seed, i))
    return images, labels


# The ops registered above are exactly the names the flags offer (records.augment_ops).
if set(OPS) != set(OP_NAMES):
    raise ImportError(f"records.augment registers {sorted(OPS)}; records.augment_ops names {sorted(OP_NAMES)}")
