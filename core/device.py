"""TensorFlow, imported once and quietly, for every module of the engine that computes with it.

TensorFlow's C++ runtime writes start-up lines to standard error (oneDNN,
CUDA driver probing, absl's "log messages before InitializeLog") that no
log level silences in current releases. Hosts read standard error as
"something went wrong" (RELION's run.err, a CryoSPARC job's log), so the
import and the first device probe run with file descriptor 2 pointed at
/dev/null; Python exceptions still surface as usual afterwards.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_silenced():
        import tensorflow

        # The first device probe is where CUDA's "failed call to cuInit" comes from.
        tensorflow.config.list_physical_devices()
    return tensorflow


tf = _import_tensorflow()
