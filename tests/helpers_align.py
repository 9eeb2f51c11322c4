"""Particles of known pose against a random blob GMM, for the aligners' tests."""

from __future__ import annotations

import numpy as np
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
