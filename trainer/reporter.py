"""How training shows its progress: the project's progress bar (entry.progress, with the
running loss and MAE) per epoch on a terminal, one line
per epoch otherwise (logs, CI). `train.run_epochs` feeds it the running metrics of
each step and, as an end-of-epoch action, the epoch's history row."""

from __future__ import annotations

import sys

from entry.progress import Progress
from model import metric_names as metrics
from trainer import actions


class EpochReporter:
    """A progress bar per epoch on a terminal, one line per epoch otherwise (logs, CI)."""

    def __init__(self, steps: int, epochs: int):
        self.steps, self.epochs = steps, epochs
        self.tty = sys.stdout.isatty()
        self.bar = None

    def start(self, epoch: int) -> None:
        if self.tty:
            print(f"Epoch {epoch + 1}/{self.epochs}")
            self.bar = Progress(self.steps, "steps", stream=sys.stdout)

    def update(self, done: int, running: dict) -> None:
        """`done` steps of the epoch so far, with the running metrics."""
        if self.bar is not None:
            self.bar.update(done - self.bar.done, " ".join(
                f"{name} {float(running[name]):.4g}" for name in (metrics.LOSS, metrics.MAE)))

    # history column -> its name on the epoch line (the metric table's `line`)
    SHOWN = metrics.epoch_line()

    def end(self, row: dict) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        parts = [f"epoch {row['epoch']}/{self.epochs}"] + [
            f"{shown} {row[k]:.4g}" for k, shown in self.SHOWN.items() if k in row]
        parts.append(f"{row['epoch_seconds']:.1f}s {row['images_per_second']:.0f} img/s")
        print(" - ".join(parts), flush=True)

    def action(self, end: actions.EpochEnd) -> None:
        self.end(end.row)
