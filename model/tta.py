"""Test-time augmentation: the choices `model.age_outputs` offers (flip: the mean of the
softmax of a face and of its mirror image) and their flag, --tta of trainer.evaluate
and serving.predict (serving.export's says it runs inside the export)."""

from __future__ import annotations

from absl import flags

TTA = ("none", "flip")


def define_tta_flag() -> None:
    """--tta, shared by trainer.evaluate and serving.predict (the same meaning)."""
    flags.DEFINE_enum("tta", TTA[0], list(TTA),
                      "Test-time augmentation: flip scores each face as the mean of the softmax of "
                      "the image and of its mirror image.")
