"""``gmmrefine refine`` from a shell: every line on one stream (stdout), the same lines with
times in DIR/run.log, progress during the GMM fits, the device said at the start."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from gmmrefine.simulate.dataset import simulate_dataset


@pytest.mark.slow
def test_one_stream_and_a_log_with_times(tmp_path):
    simulate_dataset(tmp_path / "sim", n=200, box=32, apix=3.2, snr=0.1, crb_sample=0)
    run = subprocess.run([str(Path(sys.executable).parent / "gmmrefine"), "refine",
                          "sim/particles.star", "--out", "runs/one", "--iter", "1"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""                      # stderr carries errors only
    lines = run.stdout.splitlines()
    assert lines[0].startswith("computing on ")
    assert any(re.match(r"iteration 1, half 1: GMM fit: \d+/80 steps", line) for line in lines)
    logged = (tmp_path / "runs" / "one" / "run.log").read_text().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
    assert all(re.match(stamp, line) for line in logged)
    # What the terminal showed, but for the command's own two closing lines.
    assert [re.sub(stamp, "", line) for line in logged] == lines[:-2]
    assert (tmp_path / "runs" / "one" / "logfile.pdf").is_file()
