"""``--outside hold``: the region's share of the GMM moves with the pose while the rest
stays where the particle's held pose puts it."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.align.gauss_newton import (
    GaussNewtonSettings,
    gauss_newton_batch,
    make_spectrum_and_jacobian,
)
from gmmrefine.align.kernel import apply_pose_moves, direct_spectrum, held_spectrum
from gmmrefine.align.rings import gather_rings, ring_pixels_for_resolution
from gmmrefine.data.rotations import angle_between_deg, random_rotations, turn_matrix
from gmmrefine.device import tf
from gmmrefine.gmm.focus import split_region
from gmmrefine.gmm.model import GMM
from helpers_align import fine_spectra


def _two_bodies(rng):
    """A still body left of the centre and a region right of it, 150 Gaussians each."""
    rest = rng.normal(scale=4.0, size=(150, 3)) + [-9.0, 0.0, 0.0]
    region = rng.normal(scale=4.0, size=(150, 3)) + [9.0, 0.0, 0.0]
    gmm = GMM(np.vstack([rest, region]), rng.uniform(0.5, 1.5, 300), rng.uniform(1.2, 2.0, 300))
    return gmm, np.r_[np.zeros(150), np.ones(150)]


def test_split_region_shares_each_gaussian_between_the_region_and_the_rest():
    rng = np.random.default_rng(0)
    gmm = GMM(rng.normal(size=(5, 3)), np.arange(1.0, 6.0), np.ones(5))
    moving, held = split_region(gmm, np.array([0.0, 0.25, 1.0, 0.5, 1.0]))
    np.testing.assert_allclose(moving.amplitudes, [0.5, 3.0, 2.0, 5.0])
    np.testing.assert_allclose(held.amplitudes, [1.0, 1.5, 2.0])
    np.testing.assert_allclose(moving.centres_A, gmm.centres_A[[1, 2, 3, 4]])
    assert split_region(gmm, np.ones(5))[1] is None
    with pytest.raises(ValueError, match="inside the mask"):
        split_region(gmm, np.zeros(5))


def test_held_spectrum_is_the_brute_force_sum_of_the_held_part_at_its_pose():
    rng = np.random.default_rng(1)
    gmm, weight = _two_bodies(rng)
    _, held = split_region(gmm, weight)
    box, apix = 48, 1.0
    rotation, origin = random_rotations(3, rng), rng.normal(scale=1.5, size=(3, 2))
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    # One term per Gaussian and pixel, at the centres projected by hand: p = (A c)_xy - o.
    centres_2d = np.einsum("nij,mj->nmi", rotation[:, :2], held.centres_A) - origin[:, None]
    re, im = direct_spectrum(tf.constant(centres_2d, tf.float32),
                             tf.constant(held.amplitudes, tf.float32),
                             tf.constant(held.widths_A, tf.float32), pixels, apix)
    brute = re.numpy() + 1j * im.numpy()
    ours = held_spectrum(held, rotation, origin, pixels, apix, batch=2)
    assert np.abs(ours - brute).max() < 1e-4 * np.abs(brute).max()


def test_a_region_turned_against_a_still_rest_is_followed_only_when_the_rest_is_held():
    rng = np.random.default_rng(2)
    gmm, weight = _two_bodies(rng)
    moving, held = split_region(gmm, weight)
    box, apix = 48, 1.0
    n = 6
    pose, origin = random_rotations(n, rng), rng.normal(scale=1.0, size=(n, 2))
    # The region seen 4 deg away from the rest, in the camera frame (A' = R A).
    turns = rng.normal(size=(n, 3))
    turns *= 4.0 / np.linalg.norm(turns, axis=1, keepdims=True)
    region_pose = turn_matrix(turns) @ pose
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    data = gather_rings(fine_spectra(held, pose, origin, box, apix)
                        + fine_spectra(moving, region_pose, origin, box, apix), pixels)
    settings = GaussNewtonSettings(iterations=6)

    held_part = held_spectrum(held, pose, origin, pixels, apix)
    result = gauss_newton_batch(make_spectrum_and_jacobian(moving, pixels, apix), pose, origin,
                                data, apix, settings, held=held_part)
    found, _ = apply_pose_moves(pose, origin, result.dtheta_deg, result.dshift_px, apix)
    assert angle_between_deg(found, region_pose).max() < 0.1

    # The whole GMM moved as one lands between the two bodies' poses.
    whole = gauss_newton_batch(make_spectrum_and_jacobian(gmm, pixels, apix), pose, origin,
                               data, apix, settings)
    found, _ = apply_pose_moves(pose, origin, whole.dtheta_deg, whole.dshift_px, apix)
    assert np.median(angle_between_deg(found, region_pose)) > 1.0


@pytest.mark.slow
def test_the_aligner_follows_a_hinged_domain_in_images_on_disk(tmp_path):
    # The simulator's flexible particles: each one's domain turned about a hinge by its own
    # angle. Aligned from the true (core) poses with the domain's share moving and the rest
    # held there, every domain pose should land on the true pose composed with its turn.
    from gmmrefine.align.refine_particles import ParticleAligner
    from gmmrefine.data.images import ParticleImages
    from gmmrefine.data.rotations import axis_angle_matrix
    from gmmrefine.gmm.fit import gmm_from_map
    from gmmrefine.gmm.focus import mask_centroid_A, mask_values_at
    from gmmrefine.io.mrc import read_map
    from gmmrefine.io.particles import read_particles
    from gmmrefine.io.stack import StackReader
    from gmmrefine.pipeline.options import RefineOptions
    from gmmrefine.simulate.dataset import simulate_dataset
    from gmmrefine.simulate.pdb import read_pdb

    sim = tmp_path / "sim"
    info = simulate_dataset(sim, n=40, box=48, apix=2.0, snr=50.0, angle_rms_deg=0.0,
                            shift_rms_px=0.0, crb_sample=0, flexible=True,
                            flex_amplitude_A=12.0, n_conformation_maps=3)
    truth = read_particles(sim / "truth.star")
    model = read_pdb(sim / "model.pdb")
    turn = axis_angle_matrix(model.hinge_axis, np.load(sim / "truth_conformation.npy"))
    ideal_rotation = truth.rotation @ turn
    neutral = min(info["flexible"]["conformation_maps_hinge_deg"].items(),
                  key=lambda item: abs(item[1]))[0]
    volume, apix = read_map(sim / neutral)
    mask, _ = read_map(sim / "domain_mask.mrc")
    gmm, _ = gmm_from_map(volume, apix, 6.0, seed=1)
    options = RefineOptions(prior_deg=None, prior_px=None, steps=6).alignment()
    aligner = ParticleAligner(gmm, 6.0, options, pivot_A=mask_centroid_A(mask, apix),
                              region_weight=mask_values_at(mask, gmm.centres_A, apix))
    with StackReader(sim) as reader:
        rotation, *_ = aligner.align(ParticleImages(truth, reader), np.arange(len(truth)),
                                     held_poses=(truth.rotation, truth.shift_A))
    before = np.median(angle_between_deg(truth.rotation, ideal_rotation))
    after = np.median(angle_between_deg(rotation, ideal_rotation))
    assert before > 2.0 and after < 0.25 * before, (before, after)
