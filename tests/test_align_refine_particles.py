"""Refining a half's particles against its GMM: turns about a pivot, coarse passes first."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.align.gauss_newton import (
    GaussNewtonSettings,
    gauss_newton_batch,
    make_spectrum_and_jacobian,
)
from gmmrefine.align.kernel import apply_pose_moves
from gmmrefine.align.refine_particles import alignment_grid, origin_about_pivot, refine_particles
from gmmrefine.align.rings import gather_rings, ring_pixels_for_resolution
from gmmrefine.data.images import ParticleImages
from gmmrefine.data.rotations import angle_between_deg, perturb_rotations, random_rotations
from gmmrefine.gmm.fit import gmm_from_map
from gmmrefine.gmm.model import GMM
from gmmrefine.io.mrc import read_map
from gmmrefine.io.particles import read_particles
from gmmrefine.io.stack import StackReader
from gmmrefine.pipeline.options import RefineOptions
from helpers_align import fine_spectra, random_blobs


def test_a_pivot_lets_a_turn_about_the_region_through_a_tight_shift_prior():
    # A region 12 A off the box centre turns 3 deg about its own centre: about the
    # box centre that is also a slide, which a tight shift prior forbids; about
    # the pivot it is a pure turn, and the prior (on the pivot's image) allows it.
    rng = np.random.default_rng(5)
    pivot = np.array([10.0, -4.0, 5.0])
    blobs = random_blobs(rng, 200)
    gmm = GMM(blobs.centres_A + pivot, blobs.amplitudes, blobs.widths_A)
    box, apix, n = 64, 1.0, 6
    start, start_origin = random_rotations(n, rng), rng.normal(scale=1.0, size=(n, 2))
    turn = perturb_rotations(np.repeat(np.eye(3)[None], n, axis=0), 3.0, rng)
    truth = turn @ start
    origin = start_origin + np.einsum("nij,j->ni", truth - start, pivot)[:, :2]
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    data = gather_rings(fine_spectra(gmm, truth, origin, box, apix), pixels)
    settings, prior = GaussNewtonSettings(iterations=5), np.array([5.0] * 3 + [0.01] * 2)

    def refine(p):
        moved = GMM(gmm.centres_A - p, gmm.amplitudes, gmm.widths_A)
        o = origin_about_pivot(start, start_origin, p)
        result = gauss_newton_batch(make_spectrum_and_jacobian(moved, pixels, apix), start, o,
                                    data, apix, settings, prior_sd=prior,
                                    prior_rotation=start, prior_origin_A=o)
        r, s = apply_pose_moves(start, o, result.dtheta_deg, result.dshift_px, apix)
        return r, origin_about_pivot(r, s, -p)

    about_centre, _ = refine(np.zeros(3))
    about_pivot, shift = refine(pivot)
    assert angle_between_deg(about_pivot, truth).max() < 0.1
    assert np.median(angle_between_deg(about_centre, truth)) > 0.3
    assert np.abs(shift - origin).max() < 0.05


def correlation_with_projection(gmm: GMM, images: ParticleImages, rotation: np.ndarray,
                                shift_A: np.ndarray, res_A: float, low_cut_A: float) -> np.ndarray:
    """Each particle's correlation with its CTF-modulated projection at (rotation, shift_A),
    computed afresh on the aligner's grid and rings, not read from the aligner's record."""
    crop, crop_apix = alignment_grid(images.box, images.apix, res_A)
    pixels = ring_pixels_for_resolution(crop, crop_apix, max(res_A, 2 * crop_apix), low_cut_A)
    spectra, ctf, _ = images.spectra(np.arange(len(images)), box_out=crop, center=False)
    data, ctf = gather_rings(spectra, pixels), gather_rings(ctf, pixels).real
    model, _ = make_spectrum_and_jacobian(gmm, pixels, crop_apix)(
        np.asarray(rotation, np.float32), np.asarray(shift_A, np.float32))
    model = model.numpy().astype(np.complex128) * ctf
    cross = np.sum((model.conj() * data).real, axis=1)
    return cross / np.sqrt(np.sum(np.abs(model) ** 2, axis=1) * np.sum(np.abs(data) ** 2, axis=1))


@pytest.mark.slow
def test_coarse_passes_bring_back_poses_beyond_the_fine_rings_reach(refine_set):
    # Start ~10 deg off (median) against the truth's own GMM: fine rings alone
    # leave many particles outside their basin; two coarse passes first bring
    # them in, and the start pose stays a candidate, so none ends worse.
    truth = read_particles(refine_set / "truth.star")
    volume, apix = read_map(refine_set / "truth_map.mrc")
    gmm, _ = gmm_from_map(volume, apix, 6.0)
    start = perturb_rotations(truth.rotation, 12.0, np.random.default_rng(1))
    errors = {}
    with StackReader(refine_set) as reader:
        images = ParticleImages(truth.with_poses(start, truth.shift_A), reader)
        for passes in (0, 2):
            options = RefineOptions(prior_deg=None, prior_px=None, coarse_passes=passes)
            rotation, shift_A, _, _ = refine_particles(gmm, images, 5.0, options.alignment())
            before, after = (correlation_with_projection(gmm, images, r, s, 5.0,
                                                         options.low_cut_A)
                             for r, s in ((start, truth.shift_A), (rotation, shift_A)))
            assert np.all(after >= before - 1e-6), passes
            errors[passes] = np.median(angle_between_deg(rotation, truth.rotation))
    assert np.median(angle_between_deg(start, truth.rotation)) > 8.0
    assert errors[2] < 2.5 and errors[0] > 1.5 * errors[2]
