"""entry.progress: in a log (not a terminal) a line every N items or every minute,
whichever comes first, and a last line; on a terminal a bar redrawn in place."""

from __future__ import annotations

import io

from entry import progress
from entry.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def counts(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines()]


def test_a_log_gets_a_line_every_n_items_or_every_minute_and_a_last_line():
    clock, log = Clock(), io.StringIO()
    bar = Progress(100, "files", stream=log, clock=clock, every=10)
    for _ in range(25):
        clock.now += 0.5
        bar.update()
    assert counts(log.getvalue()) == ["10/100", "20/100"]       # by count
    clock.now += progress.LOG_EVERY_SECONDS - 3.0                # 59.5 s after the last line: none yet
    bar.update()
    assert counts(log.getvalue()) == ["10/100", "20/100"]
    clock.now += 0.5                                             # a minute: a line, though only 7 items
    bar.update()
    assert counts(log.getvalue()) == ["10/100", "20/100", "27/100"]
    bar.update(3)
    bar.close()
    assert counts(log.getvalue()) == ["10/100", "20/100", "27/100", "30/100"]   # the last line


def test_the_defaults_are_the_module_constants_and_a_close_right_after_a_line_adds_none():
    clock, log = Clock(), io.StringIO()
    bar = Progress(2 * progress.LOG_EVERY_ITEMS, stream=log, clock=clock)
    bar.update(progress.LOG_EVERY_ITEMS - 1)
    assert log.getvalue() == ""
    bar.update()
    bar.close()
    assert counts(log.getvalue()) == [f"{progress.LOG_EVERY_ITEMS}/{2 * progress.LOG_EVERY_ITEMS}"]
    assert progress.LOG_EVERY_SECONDS == 60.0


def test_a_terminal_redraws_in_place_and_a_note_clears_the_bar_first():
    clock, tty = Clock(), Terminal()
    bar = Progress(50, "files", stream=tty, clock=clock, every=1)
    bar.update()                                                  # within 0.5 s of the start: no redraw
    assert tty.getvalue() == ""
    clock.now += 1
    bar.update()
    assert tty.getvalue().startswith("\r  2/50 files") and "\n" not in tty.getvalue()
    bar.note("error: x.jpg: empty file")
    assert tty.getvalue().endswith("\r\x1b[Kerror: x.jpg: empty file\n")
    bar.update()                                                  # redrawn at once below the note
    assert tty.getvalue().endswith("\r  3/50 files  3/s  ETA 0:00:15")
    bar.close()
    assert tty.getvalue().endswith("\n")


def test_the_training_epoch_bar_is_this_bar_with_the_running_loss():
    from trainer.reporter import EpochReporter

    terminal = Terminal()
    reporter = EpochReporter(steps=8, epochs=2)
    reporter.bar = Progress(8, "steps", stream=terminal, clock=Clock())
    reporter.bar._last = float("-inf")
    reporter.update(3, {"loss": 2.5, "mae": 7.125})
    reporter.update(8, {"loss": 2.25, "mae": 6.5})
    reporter.bar.close()
    last = terminal.getvalue().split("\r")[-1]
    assert reporter.bar.done == 8 and "8/8 steps" in last and last.rstrip().endswith("loss 2.25 mae 6.5")
    assert "3/8 steps" in terminal.getvalue() and "loss 2.5 mae 7.125" in terminal.getvalue()
