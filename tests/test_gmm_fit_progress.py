"""A GMM fit says how far it is (a large one runs for minutes) and stops when asked to."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from gmmrefine.errors import Aborted
from gmmrefine.gmm.fit import gmm_from_map
from gmmrefine.report.progress import Progress
from gmmrefine.simulate.model import build_model
from gmmrefine.simulate.render import atom_amplitude, atom_sigma_A, render_map


@pytest.fixture(scope="module")
def small_map():
    model = build_model(seed=3, n_residues=120)
    return render_map(model.coords_A, atom_amplitude(model.element),
                      atom_sigma_A(model.element, 40.0), 32, 2.0), 2.0


class Clock:
    """A clock that moves one second per reading: every update is a line (interval 0)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def test_every_step_is_counted_and_lines_reach_the_log(small_map, caplog):
    volume, apix = small_map
    progress = Progress(12, "half 1: GMM fit", unit="steps", interval_s=3.0, clock=Clock())
    with caplog.at_level(logging.INFO, logger="gmmrefine"):
        gmm_from_map(volume, apix, 8.0, steps=12, progress=progress)
    assert progress.done == 12
    lines = [r.getMessage() for r in caplog.records if r.name == "gmmrefine.report.progress"]
    assert lines[-1].startswith("half 1: GMM fit: 12/12 steps, ")
    assert 3 <= len(lines) <= 6          # throttled: one per 3 s of the (fake) clock, and the last


def test_time_before_the_steps_does_not_count_towards_the_rate(small_map):
    volume, apix = small_map
    clock = Clock()
    progress = Progress(5, "fit", unit="steps", clock=clock)
    clock.t += 1000.0                    # a long seeding before the first step
    gmm_from_map(volume, apix, 8.0, steps=5, progress=progress)
    # Restarted when the steps began: a few (fake) seconds elapsed, not a thousand.
    assert progress.finish() < 20


def test_an_abort_request_stops_the_fit_between_steps(small_map):
    volume, apix = small_map
    polls = []

    def should_abort() -> bool:
        polls.append(1)
        return len(polls) > 3

    progress = Progress(50, "fit", unit="steps")
    with pytest.raises(Aborted):
        gmm_from_map(volume, apix, 8.0, steps=50, progress=progress,
                     should_abort=should_abort)
    assert progress.done == 3 and len(polls) == 4
    np.testing.assert_equal(progress.total, 50)
