"""The training augmentation ops by name, and what `--augment`/`--augment_ops` mean:
the facts the flags check before TensorFlow loads (records.augment registers the ops
themselves under these names)."""

from __future__ import annotations

from typing import Sequence

OP_NAMES = ("flip", "crop", "label_jitter")
DEFAULT_OPS = ("flip", "crop")       # what --augment means


def check_ops(names: Sequence[str]) -> tuple[str, ...]:
    """The names, checked against OP_NAMES (ValueError naming the unknown one)."""
    for name in names:
        if name not in OP_NAMES:
            raise ValueError(f"unknown augmentation op {name!r}; known: {', '.join(sorted(OP_NAMES))}")
    return tuple(names)


def resolve(augment: bool | Sequence[str] | None) -> tuple[str, ...]:
    """The ops an `augment` setting means, in order: True -> DEFAULT_OPS; a sequence
    of op names -> those (checked); False, None or () -> none."""
    return DEFAULT_OPS if augment is True else check_ops(augment or ())
