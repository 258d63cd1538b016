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


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_in_a_log_a_progress_line_every_30_seconds_within_an_epoch(capsys):
    import io
    from trainer import reporter as reporter_lib
    log, clock = io.StringIO(), Clock()
    reporter = EpochReporter(steps=100, epochs=3, log_stream=log, clock=clock)
    reporter.tty = False
    reporter.start(1)
    for done, now in [(20, 10.0), (40, 29.0), (60, reporter_lib.LOG_SECONDS + 1), (80, 45.0), (100, 62.0)]:
        clock.now = now
        reporter.update(done, {metrics.LOSS: 4.5, metrics.MAE: 12.25})
    lines = log.getvalue().splitlines()
    assert len(lines) == 2, lines                   # at 31 s and 62 s, none by count
    assert lines[0].startswith("  60/100 steps of epoch 2/3") and "loss 4.5 mae 12.25" in lines[0]
    assert lines[1].startswith("  100/100 steps of epoch 2/3")
    reporter.end(row(gender=False))
    assert log.getvalue().splitlines() == lines     # the epoch line goes to stdout, not the log
    assert capsys.readouterr().out.startswith("epoch 3/3 - ")
