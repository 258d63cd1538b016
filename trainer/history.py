"""history.csv's columns: one row per completed epoch of a run (storage.run_dir writes the file),
derived from the metric table (model.metric_names)."""

from __future__ import annotations

from model import metric_names as metrics
from storage.run_dir import RunDir

TIMING_FIELDS = ("learning_rate", "epoch_seconds", "images_per_second")


def history_fields(table=metrics.METRICS) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the columns every history.csv has, the optional metric columns in their order)."""
    always, optional = metrics.history_columns(table)
    return ("epoch", *always, *TIMING_FIELDS), optional


HISTORY_FIELDS, OPTIONAL_FIELDS = history_fields()
GENDER_FIELDS = tuple(f for m in metrics.METRICS if m.when == metrics.WITH_GENDER
                      for f in (m.name, metrics.val(m.name)))


def columns(rows: list[dict], table=metrics.METRICS) -> list[str]:
    """The columns of a history.csv of `rows`: every optional metric column some row has
    (the gender head's are in every row or none; a training epoch of mixed sources may draw
    no face with a spread: its ε-error cell stays empty)."""
    fields, optional = history_fields(table)
    return list(fields) + [k for k in optional if any(k in row for row in rows)]


def write_history(run: RunDir, rows: list[dict]) -> None:
    """The whole history.csv of `run`."""
    run.write_history(rows, columns(rows))
