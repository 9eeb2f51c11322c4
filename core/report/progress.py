"""Progress of long loops as plain lines: done / total, rate, time left.

Plain lines, never carriage returns or terminal codes: RELION appends a job's
stdout to run.out and CryoSPARC shows it in an event log, where control codes
turn into garbage. Lines are throttled (one per ``interval_s`` at most) so a
loop over millions of particles does not flood the log; what was done is kept
in :attr:`Progress.messages` for a summary. Lines are log records of the
``gmmrefine.report.progress`` logger (gmmrefine.report.log), so they reach the same
places, in order, as every other line of a run.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, TextIO

_log = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """Seconds as '42s', '3m05s' or '2h07m'."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


class Progress:
    """Report ``done / total`` particles with rate and time left, throttled.

    Parameters
    ----------
    total
        Number of items the loop will process.
    label
        What the loop does (starts every line).
    stream
        Where lines go; None: the ``gmmrefine.report.progress`` logger.
    interval_s
        Least time between two progress lines (the last one always prints).
    clock
        Seconds counter; replaceable in tests.
    unit
        Name of the items counted.
    """

    def __init__(self, total: int, label: str = "", *, stream: TextIO | None = None,
                 interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 unit: str = "particles"):
        self.total = int(total)
        self.label = label
        self.stream = stream
        self.interval_s = float(interval_s)
        self.clock = clock
        self.unit = unit
        self.done = 0
        self.messages: list[str] = []
        self._start = clock()
        self._last_line = self._start

    def start(self) -> None:
        """Restart the clock now: work before (a k-means seeding, say) does not count
        towards the rate or the time left."""
        self._start = self._last_line = self.clock()

    def _write(self, line: str) -> None:
        if self.stream is None:
            _log.info(line)
        else:
            print(line, file=self.stream, flush=True)

    def line(self) -> str:
        """The current progress line."""
        elapsed = self.clock() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label}: " if self.label else ""
        text += f"{self.done}/{self.total} {self.unit}"
        if rate > 0:
            left = (self.total - self.done) / rate
            text += f", {rate:.0f}/s, {format_duration(left)} left"
        return text

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items done; print a line if the last was long enough ago."""
        self.done += int(n)
        now = self.clock()
        if now - self._last_line >= self.interval_s or self.done >= self.total:
            self._last_line = now
            self._write(self.line())

    def log(self, message: str) -> None:
        """Print ``message`` now and keep it in :attr:`messages`."""
        self.messages.append(message)
        self._write(message)

    def finish(self, message: str | None = None) -> float:
        """Log the total time (and ``message``); return elapsed seconds."""
        elapsed = self.clock() - self._start
        text = f"{self.label + ': ' if self.label else ''}{self.done} {self.unit} in " \
               f"{format_duration(elapsed)}"
        self.log(text if message is None else f"{text}; {message}")
        return elapsed
