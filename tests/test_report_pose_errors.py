"""Pose errors against the Cramer-Rao bound: the ratio the figure reports, and the figure."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.report.pose_errors import plot_pose_errors_against_bound, rms_over_bound


def test_rms_over_bound_is_one_at_the_bound_and_scales_with_the_errors():
    rng = np.random.default_rng(0)
    bounds = rng.uniform(0.5, 2.0, size=400)
    assert rms_over_bound(bounds, bounds) == pytest.approx(1.0)
    assert rms_over_bound(2.5 * bounds, bounds) == pytest.approx(2.5)
    # Errors drawn at the bound (isotropic 3D Gaussian of rms = bound) average to ~1.
    draws = np.linalg.norm(rng.normal(size=(400, 3)), axis=1) / np.sqrt(3) * bounds
    assert rms_over_bound(draws, bounds) == pytest.approx(1.0, abs=0.1)


def test_the_figure_is_written_with_a_zero_error_among_the_particles(tmp_path):
    rng = np.random.default_rng(1)
    bound = rng.uniform(0.5, 2.0, size=50)
    start, refined = 4 * bound, 1.2 * bound
    refined[0] = 0.0               # a perfect particle: log axes must still draw it
    path = tmp_path / "pose_errors.png"
    plot_pose_errors_against_bound(path, (bound, start, refined), (bound / 5, start / 5,
                                                                   refined / 5), title="test")
    assert path.stat().st_size > 20_000
    assert not list(tmp_path.glob("*.tmp*"))
