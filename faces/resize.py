"""The one resize of the pixel contract (Keras ops, so every backend runs it)."""

from __future__ import annotations

from keras import ops


def resize_pixels(images, size: int):
    """uint8 (or 0..255 numeric) RGB images [..., H, W, 3] of any size -> uint8
    [..., size, size, 3]: bilinear, antialiased (a no-op filter when enlarging), rounded.

    The one resize of the pixel contract: the training stream (records.reader, when
    the shards' stored size is not the model's), the `Resize` layer inside the age
    model, and batch prediction on each crop before batching (the layer then sees
    its own size and is an identity) all run it."""
    out = ops.image.resize(ops.cast(images, "float32"), (size, size), interpolation="bilinear",
                           antialias=True)
    return ops.cast(ops.clip(ops.round(out), 0.0, 255.0), "uint8")
