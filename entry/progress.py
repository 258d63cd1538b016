"""A one-line progress bar (count, rate, ETA) on stderr, without a dependency.
Redraws in place on a terminal; prints a line every 10% when logged to a file."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "images", stream=sys.stderr):
        self.total, self.label, self.stream = total, label, stream
        self.done = 0
        self.start = self._last = time.monotonic()
        self._tty = stream.isatty()
        self._next_tenth = 1
        self._end = None

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self._tty and now - self._last >= 0.5:
            self._last = now
            self.stream.write("\r" + self.line())
            self.stream.flush()
        elif not self._tty and self.total and self.done * 10 >= self._next_tenth * self.total:
            self._next_tenth = self.done * 10 // self.total + 1
            self.stream.write(self.line() + "\n")

    @property
    def rate(self) -> float:
        return self.done / max((self._end or time.monotonic()) - self.start, 1e-9)

    def line(self) -> str:
        eta = (self.total - self.done) / self.rate if self.rate > 0 else 0.0
        m, s = divmod(int(eta), 60)
        return (f"  {self.done}/{self.total} {self.label}  {self.rate:.0f}/s  "
                f"ETA {m // 60}:{m % 60:02d}:{s:02d}")

    def close(self) -> None:
        self._end = time.monotonic()
        if self._tty:
            self.stream.write("\r" + self.line() + "\n")
