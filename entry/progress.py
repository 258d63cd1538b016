"""The project's one progress bar: a line (count, rate, ETA, and what the caller adds,
e.g. training's running loss) on stderr or stdout, without a dependency.
Redraws in place on a terminal; in a log (not a terminal) prints a line every
LOG_EVERY_ITEMS items or LOG_EVERY_SECONDS seconds, whichever comes first, and a
last line at the end."""

from __future__ import annotations

import sys
import time

# Not a terminal: a line at least this often, so a long job's log shows it is alive
# (a minute) without a line per item on a fast one (ingest decodes ~1000 images/s:
# a line every ~10 s; prediction, tens of files/s: a line a minute).
LOG_EVERY_ITEMS = 10_000
LOG_EVERY_SECONDS = 60.0
REDRAW_SECONDS = 0.5   # a terminal's bar is redrawn at most this often


class Progress:
    def __init__(self, total: int, label: str = "images", stream=sys.stderr, clock=time.monotonic,
                 every: int = LOG_EVERY_ITEMS, seconds: float = LOG_EVERY_SECONDS):
        self.total, self.label, self.stream, self.clock = total, label, stream, clock
        self.every, self.seconds = every, seconds
        self.done = 0
        self.start = self._last = clock()
        self._logged = 0          # `done` at the last line written (not a terminal)
        self._tty = stream.isatty()
        self._end = None
        self.status = ""          # appended to the line (training: the running loss and MAE)

    def update(self, n: int = 1, status: str | None = None) -> None:
        self.done += n
        if status is not None:
            self.status = status
        now = self.clock()
        if self._tty:
            if now - self._last >= REDRAW_SECONDS:
                self._last = now
                self.stream.write("\r" + self.line())
                self.stream.flush()
        elif self.done - self._logged >= self.every or now - self._last >= self.seconds:
            self._log(now)

    def note(self, text: str) -> None:
        """A message line (e.g. one file's error) that does not break the bar: on a
        terminal the bar is cleared first and redrawn on the next update."""
        if self._tty:
            self.stream.write("\r\x1b[K")
            self._last = float("-inf")   # redraw on the next update
        self.stream.write(text + "\n")
        self.stream.flush()

    def _log(self, now: float) -> None:
        self._last, self._logged = now, self.done
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    @property
    def rate(self) -> float:
        return self.done / max((self._end or self.clock()) - self.start, 1e-9)

    def line(self) -> str:
        eta = (self.total - self.done) / self.rate if self.rate > 0 else 0.0
        m, s = divmod(int(eta), 60)
        return (f"  {self.done}/{self.total} {self.label}  {self.rate:.0f}/s  "
                f"ETA {m // 60}:{m % 60:02d}:{s:02d}" + (f"  {self.status}" if self.status else ""))

    def close(self) -> None:
        self._end = self.clock()
        if self._tty:
            self.stream.write("\r\x1b[K" + self.line() + "\n")
            self.stream.flush()
        elif self.done != self._logged:
            self._log(self._end)
