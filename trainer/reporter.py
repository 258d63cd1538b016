"""How training shows its progress: the project's progress bar (entry.progress, with the
running loss and MAE) within each epoch, and one line per epoch. On a terminal the bar
redraws in place on stdout; in a log (stdout not a terminal) the bar writes a line to
stderr every LOG_SECONDS, so a long epoch shows it is alive. `train.run_epochs` feeds
it the running metrics of each step and, as an end-of-epoch action, the epoch's
history row."""

from __future__ import annotations

import sys
import time

from entry.progress import Progress
from model import metric_names as metrics
from trainer import actions

LOG_SECONDS = 30.0     # not a terminal: a progress line at least this often within an epoch


class EpochReporter:
    """A progress bar within each epoch and one line per epoch (logs, CI)."""

    def __init__(self, steps: int, epochs: int, log_stream=None, clock=time.monotonic):
        self.steps, self.epochs = steps, epochs
        self.tty = sys.stdout.isatty()
        self.log_stream, self.clock = log_stream, clock     # None: sys.stderr when it is needed
        self.bar = None

    def start(self, epoch: int) -> None:
        if self.tty:
            print(f"Epoch {epoch + 1}/{self.epochs}")
            self.bar = Progress(self.steps, "steps", stream=sys.stdout, clock=self.clock)
        else:      # a line every LOG_SECONDS (never by count: the epoch line closes the epoch)
            self.bar = Progress(self.steps, f"steps of epoch {epoch + 1}/{self.epochs}",
                                stream=self.log_stream or sys.stderr, clock=self.clock,
                                every=self.steps + 1, seconds=LOG_SECONDS)

    def update(self, done: int, running: dict) -> None:
        """`done` steps of the epoch so far, with the running metrics."""
        if self.bar is not None:
            self.bar.update(done - self.bar.done, " ".join(
                f"{name} {float(running[name]):.4g}" for name in (metrics.LOSS, metrics.MAE)))

    # history column -> its name on the epoch line (the metric table's `line`)
    SHOWN = metrics.epoch_line()

    def end(self, row: dict) -> None:
        if self.bar is not None and (self.tty or self.bar.stream.isatty()):
            self.bar.close()          # clears the bar; in a log the epoch line says the rest
        self.bar = None
        parts = [f"epoch {row['epoch']}/{self.epochs}"] + [
            f"{shown} {row[k]:.4g}" for k, shown in self.SHOWN.items() if k in row]
        parts.append(f"{row['epoch_seconds']:.1f}s {row['images_per_second']:.0f} img/s")
        print(" - ".join(parts), flush=True)

    def action(self, end: actions.EpochEnd) -> None:
        self.end(end.row)
