"""ParticleImages: centring, Fourier cropping, phase flipping, the crop box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gmmrefine.data.images import ParticleImages, crop_box_for_resolution
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.fourier.grids import ifft2c
from gmmrefine.io.mrc import write_stack
from gmmrefine.io.stack import StackReader


def _particle_set(tmp_path: Path, images: np.ndarray, apix: float, shift_A: np.ndarray) -> ParticleSet:
    n, box = len(images), images.shape[-1]
    write_stack(tmp_path / "p.mrcs", images, apix)
    kw = empty_like_arrays(n)
    kw.update(image_path=np.array(["p.mrcs"] * n, dtype=object), image_index=np.arange(n),
              defocus_u_A=np.full(n, 15000.0), defocus_v_A=np.full(n, 14000.0),
              shift_A=shift_A, half_set=(1 + np.arange(n) % 2).astype(np.int8))
    return ParticleSet(optics=[OpticsGroup("g", apix, box, 300.0, 2.7, 0.1)], root=tmp_path,
                       source=tmp_path / "p.star", **kw)


def _gaussian_images(box: int, centres_px: np.ndarray, sigma_px: float = 2.0) -> np.ndarray:
    x = np.arange(box) - box // 2
    yy, xx = np.meshgrid(x, x, indexing="ij")
    return np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma_px ** 2))
                     for cx, cy in centres_px]).astype(np.float32)


def test_centering_moves_the_particle_to_the_box_centre(tmp_path):
    # RELION: the particle centre sits at -origin in the image (I(x) = P(x + o)).
    apix, box = 2.0, 32
    shift_A = np.array([[6.0, -4.0], [-3.0, 8.0]])
    images = _gaussian_images(box, -shift_A / apix)
    ps = _particle_set(tmp_path, images, apix, shift_A)
    spectra, ctf, apix_out = ParticleImages(ps, StackReader(tmp_path)).spectra(np.arange(2))
    centred = ifft2c(spectra)
    assert apix_out == apix and ctf.shape == (2, box, box)
    for img in centred:
        assert np.unravel_index(np.argmax(img), img.shape) == (box // 2, box // 2)
    np.testing.assert_allclose(centred, _gaussian_images(box, np.zeros((2, 2))), atol=1e-4)


def test_fourier_crop_keeps_pixel_values_and_phase_flip_uses_ctf_sign(tmp_path):
    apix, box, small = 1.0, 32, 16
    images = _gaussian_images(box, np.zeros((3, 2)), sigma_px=3.0)
    ps = _particle_set(tmp_path, images, apix, np.zeros((3, 2)))
    source = ParticleImages(ps, StackReader(tmp_path), chunk=2)
    spectra, ctf, apix_out = source.spectra(np.arange(3), box_out=small)
    assert apix_out == pytest.approx(apix * box / small)
    # A band-limited Gaussian downsampled 2x: sigma 1.5 px, same peak value.
    np.testing.assert_allclose(ifft2c(spectra), _gaussian_images(small, np.zeros((3, 2)), 1.5),
                               atol=1e-4)
    flipped, _, _ = source.spectra(np.arange(3), box_out=small, phase_flip=True)
    np.testing.assert_allclose(flipped, spectra * np.sign(ctf), atol=1e-6)
    chunks = list(source.chunks(box_out=small))
    assert [len(c[0]) for c in chunks] == [2, 1]
    np.testing.assert_allclose(np.concatenate([c[1] for c in chunks]), spectra)


@pytest.mark.parametrize("box, apix, res, want", [
    (128, 1.0, 4.0, 64), (128, 1.0, 1.0, 128), (100, 1.1, 7.0, 32), (64, 3.54, 11.3, 42)])
def test_crop_box_for_resolution(box, apix, res, want):
    # ceil(box * apix * 2 / res), made even, capped at box.
    assert crop_box_for_resolution(box, apix, res) == want
    got = crop_box_for_resolution(box, apix, res)
    assert got % 2 == 0 and got <= box
    assert box * apix / (got / 2) <= res + 1e-9 or got == box


def test_centering_ramp_is_the_inverse_origin_shift():
    from gmmrefine.data.images import centering_ramp
    from gmmrefine.fourier.grids import freq_grid_2d

    # The separable ramp equals the full 2D phase factor exp(-2 pi i k . shift).
    shift_A = np.array([[3.1, -2.2], [0.0, 5.5]])
    kx, ky = freq_grid_2d(24, 1.7)
    direct = np.exp(-2j * np.pi * (kx[None] * shift_A[:, 0, None, None]
                                   + ky[None] * shift_A[:, 1, None, None]))
    np.testing.assert_allclose(centering_ramp(24, 1.7, shift_A), direct, atol=1e-6)
