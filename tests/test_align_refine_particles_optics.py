"""The alignment's model of a particle seen through an optics group's magnification:
the projection at M k against a direct sum, its Jacobian against finite differences,
poses recovered with M modelled (and not without); end to end, a refinement of particles
made with beam tilt, Zernike terms, a magnification and two pixel sizes gets better with
them modelled than without."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gmmrefine.align.gauss_newton import (
    GaussNewtonSettings,
    gauss_newton_batch,
    make_spectrum_and_jacobian,
)
from gmmrefine.align.kernel import apply_pose_moves, make_pose_objective
from gmmrefine.align.rings import ring_pixels_for_resolution
from gmmrefine.data.particles import OpticsGroup
from gmmrefine.data.rotations import angle_between_deg, perturb_rotations, random_rotations
from gmmrefine.io.particles import read_particles, write_particles
from gmmrefine.pipeline import run as refine_module
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.simulate.dataset import simulate_dataset
from helpers_align import check_jacobian_by_finite_differences, random_blobs

MAG = np.array([[1.03, 0.012], [-0.008, 0.975]])


def _direct(gmm, rotation, origin, pixels, apix, mag, exact_decay=False):
    """sum_j a_j decay(M k) exp(-2 pi i (M k . (A c_j)_xy - k . o)) at the ring pixels, by brute
    force; the decay isotropic as the kernel takes it unless ``exact_decay``."""
    length = pixels.box * apix
    k = np.stack([pixels.kx, pixels.ky], axis=1) / length                    # (M, 2) 1/A
    mk = k @ mag.T
    m2 = np.trace(mag.T @ mag) / 2.0
    k2 = np.sum(mk * mk, axis=1) if exact_decay else m2 * np.sum(k * k, axis=1)
    decay = np.exp(-2 * np.pi ** 2 * gmm.widths_A[None, :] ** 2 * k2[:, None])   # (M, N)
    out = []
    for a, o in zip(rotation, origin):
        v = gmm.centres_A @ a.T
        phase = mk @ v[:, :2].T - (k @ o)[:, None]
        out.append(np.sum(gmm.amplitudes * decay * np.exp(-2j * np.pi * phase), axis=1))
    return np.array(out)


def test_magnified_projection_matches_a_direct_sum():
    rng = np.random.default_rng(3)
    gmm, box, apix = random_blobs(rng, 60), 40, 1.2
    rotation, origin = random_rotations(3, rng), rng.normal(size=(3, 2))
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    model, _ = make_spectrum_and_jacobian(gmm, pixels, apix, MAG)(
        rotation.astype(np.float32), origin.astype(np.float32))
    expected = _direct(gmm, rotation, origin, pixels, apix, MAG)
    assert np.abs(model.numpy() - expected).max() < 2e-3 * np.abs(expected).max()
    # The FRC path's projection sees the same positions.
    objective = make_pose_objective(gmm, pixels, apix, mag=MAG)
    frc, _, _ = objective(rotation.astype(np.float32), origin.astype(np.float32),
                          expected.real.astype(np.float32), expected.imag.astype(np.float32),
                          np.zeros((3, 3), np.float32), np.zeros((3, 2), np.float32))
    assert np.all(frc.numpy() > 0.999)


def test_magnified_jacobian_matches_finite_differences():
    check_jacobian_by_finite_differences(MAG)


def test_poses_come_back_with_the_magnification_modelled_and_not_without():
    rng = np.random.default_rng(0)
    gmm, box, apix = random_blobs(rng, 200), 48, 1.0
    truth, origin = random_rotations(8, rng), rng.normal(scale=1.5, size=(8, 2))
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    # Data with the exact anisotropic decay, which the kernel only approximates.
    data = _direct(gmm, truth, origin, pixels, apix, MAG, exact_decay=True)
    start = perturb_rotations(truth, 2.0, rng)
    errors = {}
    for name, mag in (("modelled", MAG), ("ignored", None)):
        result = gauss_newton_batch(make_spectrum_and_jacobian(gmm, pixels, apix, mag), start,
                                    origin, data, apix, GaussNewtonSettings(iterations=4))
        rotation, _ = apply_pose_moves(start, origin, result.dtheta_deg, result.dshift_px, apix)
        errors[name] = np.median(angle_between_deg(rotation, truth))
    # What remains is the kernel's isotropic decay (an amplitude, not a phase, error).
    assert errors["modelled"] < 0.1, errors
    assert errors["ignored"] > 5 * errors["modelled"] and errors["ignored"] > 0.3, errors


@pytest.mark.slow
def test_refinement_gets_better_with_the_optics_modelled(tmp_path):
    # Aberrations far beyond a real scope's, so that they cost much already at the
    # 6-7 A this small set reaches in one iteration.
    groups = (OpticsGroup("g1", 2.0, 48, 300.0, 2.7, 0.1, beam_tilt_mrad=(5.0, -4.0),
                          odd_zernike=(0.0, 0.0, 400.0, 0.0, 0.0, -300.0),
                          even_zernike=(0.0, 0.0, 0.0, 0.0, 1500.0),
                          mag_matrix=((1.03, 0.01), (-0.01, 0.975))),
              OpticsGroup("g2", 2.2, 44, 300.0, 2.7, 0.1, beam_tilt_mrad=(-4.0, 5.0),
                          odd_zernike=(0.0, 0.0, -350.0, 0.0, 0.0, 380.0),
                          mag_matrix=((0.975, -0.012), (0.008, 1.03))))
    data = tmp_path / "data"
    simulate_dataset(data, n=240, box=48, apix=2.0, snr=3.0, angle_rms_deg=3.0, crb_sample=0,
                     seed=2, optics_groups=groups)
    start = read_particles(data / "particles.star")
    plain = [dataclasses.replace(g, beam_tilt_mrad=(0.0, 0.0), odd_zernike=(), even_zernike=(),
                                 mag_matrix=((1.0, 0.0), (0.0, 1.0))) for g in start.optics]
    write_particles(dataclasses.replace(start, optics=plain, star_optics=None),
                    data / "plain.star")
    truth = read_particles(data / "truth.star")
    outcome = {}
    for name in ("particles", "plain"):
        result = refine_module.run_refinement(data / f"{name}.star", tmp_path / name,
                                              RefineOptions(iterations=1, steps=3),
                                              log=lambda s: None)
        refined = read_particles(result.particles_star, root=data)
        outcome[name] = (result.resolution_A,
                         float(np.median(angle_between_deg(refined.rotation, truth.rotation))))
    (res_modelled, err_modelled), (res_plain, err_plain) = outcome["particles"], outcome["plain"]
    print(f"modelled: {res_modelled:.2f} A, {err_modelled:.2f} deg; "
          f"ignored: {res_plain:.2f} A, {err_plain:.2f} deg")
    assert res_modelled < 0.9 * res_plain, outcome
    assert err_modelled < err_plain, outcome
