"""Running one cached benchmark step: shared by the bench scripts that chain gmmrefine commands."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def run_step(cmd: list[str], log: Path, done: Path) -> float:
    """Run ``cmd`` (output appended to ``log``) unless ``done`` exists; wall seconds (0 when cached).

    A failing step stops the benchmark with one line naming the command and its log.
    """
    if done.exists():
        return 0.0
    t0 = time.perf_counter()
    with open(log, "a") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        sys.exit(f"{Path(sys.argv[0]).name}: {' '.join(cmd)} failed (exit {code}); see {log}")
    return time.perf_counter() - t0
