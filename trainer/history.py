"""history.csv's columns: one row per completed epoch of a run (storage.run_dir writes the file)."""

from __future__ import annotations

from model import metric_names as metrics
from storage.run_dir import RunDir

HISTORY_FIELDS = ("epoch", *metrics.RATES, *map(metrics.val, metrics.RATES),
                  "learning_rate", "epoch_seconds", "images_per_second")
GENDER_FIELDS = (metrics.GENDER_ACCURACY, metrics.val(metrics.GENDER_ACCURACY))
EPSILON_FIELDS = (metrics.EPSILON_ERROR, metrics.val(metrics.EPSILON_ERROR))   # data with apparent-age spreads


def write_history(run: RunDir, rows: list[dict]) -> None:
    """The whole history.csv of `run`: the gender columns when the rows have them, the
    ε-error ones when any row has them (a training epoch of mixed sources may draw no face
    with a spread: its cell stays empty)."""
    fields = list(HISTORY_FIELDS) + [k for k in GENDER_FIELDS if rows and k in rows[0]] + [
        k for k in EPSILON_FIELDS if any(k in row for row in rows)]
    run.write_history(rows, fields)
