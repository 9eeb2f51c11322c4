"""Particles of known pose against a random blob GMM, for the aligners' tests."""

from __future__ import annotations

import numpy as np
from gmmrefine.align.gauss_newton import make_spectrum_and_jacobian
from gmmrefine.align.kernel import apply_pose_moves
from gmmrefine.align.rings import gather_rings, ring_pixels_for_resolution
from gmmrefine.data.rotations import perturb_rotations, random_rotations
from gmmrefine.fourier.grids import fft2c, fourier_crop_2d
from gmmrefine.gmm.model import GMM, projected_gmm_image


def random_blobs(rng, n=300):
    return GMM(rng.normal(scale=6.0, size=(n, 3)), rng.uniform(0.5, 1.5, n), rng.uniform(1.2, 2.0, n))


def fine_spectra(gmm, rotations, origins, box, apix, oversample=4):
    """Centred spectra of images rendered on a 4x finer grid and Fourier-cropped,
    so the pixel-integration blur of the data is negligible (the kernel has none)."""
    fine = np.array([projected_gmm_image(gmm, a, o, box * oversample, apix / oversample)
                     for a, o in zip(rotations, origins)])
    return fourier_crop_2d(fft2c(fine), box)


def perturbed_case() -> dict:
    """Eight noise-free particles of known pose, and start poses ~2 deg / 0.5 px off."""
    rng = np.random.default_rng(0)
    gmm, box, apix = random_blobs(rng), 48, 1.0
    truth = random_rotations(8, rng)
    origin = rng.normal(scale=1.5, size=(8, 2))
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    data = gather_rings(fine_spectra(gmm, truth, origin, box, apix), pixels)
    return dict(gmm=gmm, apix=apix, pixels=pixels, data=data, truth=truth, origin=origin,
                start=perturb_rotations(truth, 2.0, rng),
                start_origin=origin + rng.normal(scale=0.5, size=origin.shape))


def check_jacobian_by_finite_differences(mag=None) -> None:
    """Gauss-Newton's analytic pose Jacobian (with magnification ``mag``, or none) against
    central differences of its own spectrum, move by move, on four random particles."""
    rng = np.random.default_rng(5)
    gmm, box, apix = random_blobs(rng, 100), 40, 1.2
    rotation, origin = random_rotations(4, rng), rng.normal(size=(4, 2))
    pixels = ring_pixels_for_resolution(box, apix, 3.0, 25.0)
    jacobian = make_spectrum_and_jacobian(gmm, pixels, apix, mag)
    _, jac = (x.numpy() for x in jacobian(rotation.astype(np.float32), origin.astype(np.float32)))
    eps = 0.02
    for a in range(5):
        move = np.zeros((4, 5))
        move[:, a] = eps
        plus = apply_pose_moves(rotation, origin, move[:, :3], move[:, 3:], apix)
        minus = apply_pose_moves(rotation, origin, -move[:, :3], -move[:, 3:], apix)
        f_plus, f_minus = (jacobian(r.astype(np.float32), o.astype(np.float32))[0].numpy()
                           for r, o in (plus, minus))
        numeric = (f_plus - f_minus) / (2 * eps)
        assert np.abs(numeric - jac[..., a]).max() < 1e-2 * np.abs(jac[..., a]).max(), a
