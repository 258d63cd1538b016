"""The per-epoch line of training (trainer.reporter) in a log: with --task=age_gender it
carries the validation gender accuracy, whatever history.csv names the column."""

from __future__ import annotations

from model import metrics
from trainer.history import GENDER_FIELDS, HISTORY_FIELDS
from trainer.reporter import EpochReporter


def row(gender: bool) -> dict:
    out = {name: 0.5 for name in HISTORY_FIELDS}
    out.update(epoch=3, epoch_seconds=2.0, images_per_second=640.0)
    out[metrics.val(metrics.MAE)] = 6.25
    if gender:
        out.update({name: 0.875 for name in GENDER_FIELDS})
    return out


def test_the_epoch_line_shows_the_gender_accuracy_of_an_age_gender_run(capsys):
    reporter = EpochReporter(steps=10, epochs=5)
    reporter.tty = False
    reporter.end(row(gender=True))
    line = capsys.readouterr().out.strip()
    assert line.startswith("epoch 3/5 - ") and "val_mae 6.25" in line
    assert "val_gender_acc 0.875" in line
    reporter.end(row(gender=False))
    assert "gender" not in capsys.readouterr().out
    # every gender column history.csv has for validation is one the line shows
    assert metrics.val(metrics.GENDER_ACCURACY) in EpochReporter.SHOWN and metrics.val(metrics.GENDER_ACCURACY) in GENDER_FIELDS
