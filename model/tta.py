"""Test-time augmentation: the choices `model.age_outputs` offers (flip: the mean of the
softmax of a face and of its mirror image) and their flag, --tta of trainer.evaluate
and serving.predict (serving.export's says it runs inside the export)."""

from __future__ import annotations

from absl import flags

TTA = ("none", "flip")


def define_tta_flag(default: str | None = TTA[0]) -> None:
    """--tta, shared by trainer.evaluate and serving.predict (the same meaning); default
    None: the run's own (`run_tta`)."""
    own = " Default: the one the run's intervals were calibrated with (run.json), else none." if default is None else ""
    flags.DEFINE_enum("tta", default, list(TTA),
                      "Test-time augmentation: flip scores each face as the mean of the softmax of "
                      "the image and of its mirror image." + own)


def run_tta(info: dict) -> str:
    """The TTA a run's intervals were calibrated with (run.json's calibration record, whose
    coverage holds for that way of scoring), else none."""
    from model.uncertainty import RUN_KEY   # (Keras: only where a model is loaded anyway)

    record = info.get(RUN_KEY)
    tta = record.get("tta") if isinstance(record, dict) else None
    return tta if tta in TTA else TTA[0]
