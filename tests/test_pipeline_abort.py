"""A stop request (RELION's abort button) is honoured in every long step of a run, not only
between alignment batches, and the finished work is kept for the next run."""

from __future__ import annotations

import re
import sys

import pytest
from gmmrefine.errors import Aborted
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.pipeline.run import run_refinement
from gmmrefine.simulate.dataset import simulate_dataset

OPTIONS = RefineOptions(iterations=1, steps=1)


@pytest.fixture(scope="module")
def star(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=200, box=32, apix=3.2, snr=0.1, crb_sample=0)
    return out / "particles.star"


def _asked_within(function: str):
    """should_abort that says yes when polled from inside ``function`` (and counts polls)."""
    def should_abort() -> bool:
        should_abort.polls += 1
        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        return False

    should_abort.polls = 0
    return should_abort


def _finished(out, it: int) -> bool:
    return (out / f"iter_{it:03d}" / "iteration.json").exists()


@pytest.mark.slow
def test_stops_during_the_first_reconstruction(star, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Aborted):
        run_refinement(star, out, OPTIONS, should_abort=_asked_within("reconstruct_start"))
    assert not _finished(out, 0) and not (out / "particles.star").exists()


@pytest.mark.slow
def test_stops_during_a_gmm_fit(star, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(Aborted):
        run_refinement(star, out, OPTIONS, should_abort=_asked_within("fit_gmm"))
    assert _finished(out, 0) and not _finished(out, 1)
    # No alignment batch ran: the stop came from inside the fit.
    assert not any((out / "iter_001").glob("gmm_half*.npz"))


@pytest.mark.slow
def test_stops_after_the_last_iteration_and_a_rerun_finishes(star, tmp_path):
    out = tmp_path / "run"

    def after_the_last_iteration() -> bool:
        # Polled by run_all itself (through check_abort) once every iteration is done.
        return sys._getframe(2).f_code.co_name == "run_all"

    with pytest.raises(Aborted):
        run_refinement(star, out, OPTIONS, should_abort=after_the_last_iteration)
    assert _finished(out, 1) and not (out / "particles.star").exists()
    lines = []
    result = run_refinement(star, out, OPTIONS, log=lines.append)
    assert any("iteration 1: already done" in line for line in lines)
    assert result.particles_star.exists()
    # The table, the FSC curves, the iteration's pose changes and the total change.
    assert len(re.findall(rb"/Type\s*/Page(?!s)", result.logfile_pdf.read_bytes())) == 4
