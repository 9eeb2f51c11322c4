"""Gauss-Newton pose refinement: particles pulled back in a few steps, a prior's centre,
the analytic Jacobian against finite differences."""

from __future__ import annotations

import numpy as np
from gmmrefine.align.gauss_newton import (
    GaussNewtonSettings,
    gauss_newton_batch,
    make_spectrum_and_jacobian,
)
from gmmrefine.align.kernel import apply_pose_moves
from gmmrefine.data.rotations import angle_between_deg
from helpers_align import check_jacobian_by_finite_differences, perturbed_case


def test_gauss_newton_pulls_particles_back_in_a_few_steps():
    case = perturbed_case()
    gmm, apix, pixels, data = case["gmm"], case["apix"], case["pixels"], case["data"]
    truth, origin, start, start_origin = case["truth"], case["origin"], case["start"], case["start_origin"]
    jacobian = make_spectrum_and_jacobian(gmm, pixels, apix)
    result = gauss_newton_batch(jacobian, start, start_origin, data, apix,
                                GaussNewtonSettings(iterations=3))
    rotation, shift = apply_pose_moves(start, start_origin, result.dtheta_deg, result.dshift_px, apix)
    assert np.median(angle_between_deg(start, truth)) > 1.0
    assert angle_between_deg(rotation, truth).max() < 0.05
    assert np.abs(shift - origin).max() < 0.01


def test_prior_centre_away_from_the_start_pulls_the_poses_to_it():
    # A prior far tighter than the data's information puts the MAP pose on
    # the prior's centre: here the truth, ~2 deg / 0.5 px from the start.
    case = perturbed_case()
    gmm, apix, pixels = case["gmm"], case["apix"], case["pixels"]
    truth, origin, start, start_origin = case["truth"], case["origin"], case["start"], case["start_origin"]
    rng = np.random.default_rng(3)
    data = case["data"] + rng.normal(scale=np.abs(case["data"]).std(), size=case["data"].shape)
    jacobian = make_spectrum_and_jacobian(gmm, pixels, apix)
    result = gauss_newton_batch(jacobian, start, start_origin, data, apix,
                                GaussNewtonSettings(iterations=4),
                                prior_sd=np.array([0.005] * 3 + [0.002] * 2),
                                prior_rotation=truth, prior_origin_A=origin)
    rotation, shift = apply_pose_moves(start, start_origin, result.dtheta_deg, result.dshift_px, apix)
    assert angle_between_deg(rotation, truth).max() < 0.05
    assert np.abs(shift - origin).max() < 0.02


def test_pose_jacobian_matches_finite_differences():
    check_jacobian_by_finite_differences()
