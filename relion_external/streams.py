"""Keep RELION's run.err for errors: native libraries' lines and Python warnings go to run.out.

RELION appends a job's standard error to run.err and the GUI shows any text
there as a problem. TensorFlow, CUDA and XLA write informational lines
straight to file descriptor 2 from C++ (``I0000 ...``, ``E0000 ... failed
call to cuInit`` on a node without a GPU), and Python warnings go to
sys.stderr too. For the length of a job, descriptor 2 is pointed at standard
output (run.out) and warnings become log lines, while Python's sys.stderr
keeps the original descriptor: gmmrefine's own error lines and tracebacks
are then all that reaches run.err.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from typing import Iterator

log = logging.getLogger(__name__)


def _uses_descriptor_2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False      # replaced (pytest's capture, say): it has no descriptor to keep


@contextlib.contextmanager
def errors_only_on_stderr() -> Iterator[None]:
    """For the block: C-level writes to descriptor 2 land on standard output, Python
    warnings are logged (``gmmrefine.relion_external.streams``), sys.stderr is unchanged."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fd = os.dup(2)
    saved_stream = sys.stderr
    if _uses_descriptor_2(sys.stderr):
        sys.stderr = open(saved_fd, "w", buffering=1, encoding=sys.stderr.encoding,
                          errors=sys.stderr.errors, closefd=False)
    os.dup2(1, 2)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _log_warning
            yield
    finally:
        sys.stdout.flush()
        if sys.stderr is not saved_stream:
            sys.stderr.flush()
            sys.stderr.close()
            sys.stderr = saved_stream
        os.dup2(saved_fd, 2)
        os.close(saved_fd)


def _log_warning(message, category, filename, lineno, file=None, line=None) -> None:
    log.warning(f"warning: {category.__name__}: {message} ({os.path.basename(filename)}:{lineno})")
