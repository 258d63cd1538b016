"""FullyConnectedConv2D (fc6/fc7/fc8/predictions) computes exactly what Conv2D does."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from model import FullyConnectedConv2D


@pytest.mark.parametrize("kernel, size, activation", [(3, 3, "relu"), (1, 1, None), (3, 5, "relu")])
def test_matches_conv2d_with_the_same_weights(kernel, size, activation):
    # size == kernel: the matmul path; size 5 > kernel 3: the convolution fallback
    rng = np.random.default_rng(kernel * 10 + size)
    x = rng.normal(size=(4, size, size, 6)).astype("float32")
    reference = keras.layers.Conv2D(7, kernel, activation=activation)
    fc = FullyConnectedConv2D(7, kernel, activation=activation)
    expected = reference(x)
    fc.build(x.shape)
    fc.set_weights(reference.get_weights())
    assert fc.kernel.shape == (kernel, kernel, 6, 7)           # the Conv2D kernel layout (h5 files)
    out = fc(x)
    assert tuple(out.shape) == tuple(expected.shape)
    np.testing.assert_allclose(np.asarray(out), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_gradients_match_conv2d():
    import tensorflow as tf
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 2, 2, 5)).astype("float32"))
    reference, fc = keras.layers.Conv2D(4, 2), FullyConnectedConv2D(4, 2)
    reference.build(x.shape)
    fc.build(x.shape)
    fc.set_weights(reference.get_weights())
    grads = []
    for layer in (reference, fc):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(x) ** 2)
        grads.append(tape.gradient(loss, layer.trainable_variables))
    for a, b in zip(*grads):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
