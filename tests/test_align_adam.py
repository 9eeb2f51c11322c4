"""Adam on the FRC (the paper's path): particles pulled back, none ends worse."""

from __future__ import annotations

import numpy as np
from gmmrefine.align.adam import align_batch
from gmmrefine.align.kernel import apply_pose_moves, make_pose_objective
from gmmrefine.align.options import AlignSettings
from gmmrefine.align.rings import gather_rings, ring_pixels_for_resolution
from gmmrefine.data.rotations import angle_between_deg, random_rotations
from gmmrefine.fourier.grids import fft2c
from gmmrefine.gmm.model import projected_gmm_image
from helpers_align import perturbed_case, random_blobs


def frc_at(objective, rotation, origin_A, data, dtheta_deg, dshift_px) -> np.ndarray:
    """Each particle's FRC at the given moves, evaluated afresh by the objective (not
    taken from the aligner's record of the scores it saw)."""
    args = (rotation, origin_A, data.real, data.imag, dtheta_deg, dshift_px)
    return objective(*(np.asarray(x, np.float32) for x in args))[0].numpy()


def test_adam_pulls_particles_back_on_the_frc():
    case = perturbed_case()
    gmm, apix, pixels, data = case["gmm"], case["apix"], case["pixels"], case["data"]
    truth, origin, start, start_origin = case["truth"], case["origin"], case["start"], case["start_origin"]
    objective = make_pose_objective(gmm, pixels, apix)
    result = align_batch(objective, start, start_origin, data,
                         AlignSettings(steps=100, step_deg=0.5, step_px=0.25))
    rotation, shift = apply_pose_moves(start, start_origin, result.dtheta_deg, result.dshift_px, apix)
    assert np.median(angle_between_deg(start, truth)) > 1.0
    assert angle_between_deg(rotation, truth).max() < 0.2
    assert np.abs(shift - origin).max() < 0.05
    no_move = np.zeros((len(start), 5))
    before = frc_at(objective, start, start_origin, data, no_move[:, :3], no_move[:, 3:])
    after = frc_at(objective, start, start_origin, data, result.dtheta_deg, result.dshift_px)
    assert np.all(after >= before)


def test_no_particle_ends_worse_than_it_started():
    rng = np.random.default_rng(1)
    gmm, box, apix = random_blobs(rng), 32, 1.5
    truth = random_rotations(16, rng)
    clean = np.array([projected_gmm_image(gmm, a, np.zeros(2), box, apix) for a in truth])
    noisy = clean + rng.normal(scale=3 * clean.std(), size=clean.shape)
    pixels = ring_pixels_for_resolution(box, apix, 4.0, 25.0)
    objective = make_pose_objective(gmm, pixels, apix)
    # Steps far too large for the landscape: many moves make things worse.
    data = gather_rings(fft2c(noisy), pixels)
    result = align_batch(objective, truth, np.zeros((16, 2)), data,
                         AlignSettings(steps=4, step_deg=8.0, step_px=3.0))
    origin, no_move = np.zeros((16, 2)), np.zeros((16, 5))
    before = frc_at(objective, truth, origin, data, no_move[:, :3], no_move[:, 3:])
    again = frc_at(objective, truth, origin, data, result.dtheta_deg, result.dshift_px)
    assert np.all(again >= before - 1e-6)
    np.testing.assert_allclose(again, result.score_best, atol=1e-5)
