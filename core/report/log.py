"""Logging: one logger per module under "gmmrefine", handlers attached by whoever runs the engine.

The engine only logs (``logging.getLogger(__name__)``); it never prints. The
CLI, the RELION adapter and the CryoSPARC adapter decide where lines go by
attaching a handler for the length of a run: standard output (RELION's
run.out), a CryoSPARC job's event log, and always the run directory's own
log file with times. Progress lines are log records too, so everything a
user sees arrives on one stream, in order.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Iterator

ROOT = "gmmrefine"


class LineHandler(logging.Handler):
    """Hands each record's message, one line, to a callable (print, click.echo, job.log)."""

    def __init__(self, emit_line: Callable[[str], None], level: int = logging.INFO):
        super().__init__(level)
        self.emit_line = emit_line

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.emit_line(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never stop a run
            self.handleError(record)


@contextlib.contextmanager
def attached(handler: logging.Handler) -> Iterator[logging.Handler]:
    """Attach ``handler`` to the engine's root logger for the block, at INFO or above."""
    logger = logging.getLogger(ROOT)
    previous = logger.level
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
        handler.close()


def lines_to(emit_line: Callable[[str], None]):
    """Context manager: every engine log line also goes to ``emit_line``."""
    return attached(LineHandler(emit_line))


def to_file(path: Path):
    """Context manager: the engine's log lines, with times, appended to ``path``.

    Appended, so a resumed run's log continues the first one's.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    return attached(handler)


class _Held(logging.Handler):
    """Keeps records until a handler that could not exist yet (a run's log file) takes them."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def replay(self, handler: logging.Handler) -> None:
        """Hand every record held so far to ``handler``, and keep no more."""
        for record in self.records:
            handler.handle(record)
        self.records.clear()
        logging.getLogger(ROOT).removeHandler(self)


def held():
    """Context manager: keep the engine's log records, for :meth:`_Held.replay` into a log
    file opened once the run may write."""
    return attached(_Held())
