"""RELION's optics model in the data layer, against closed forms: Zernike terms and their
order, beam tilt as axial coma, even terms as defocus, magnification as a change of
scale, MTF interpolation, and demodulation of the images' odd phase."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from gmmrefine.data import optics
from gmmrefine.data.ctf import particle_ctfs
from gmmrefine.data.images import ParticleImages
from gmmrefine.data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from gmmrefine.fourier.grids import fft2c, freq_grid_2d, ifft2c

GROUP = OpticsGroup("g", 1.5, 32, 300.0, 2.7, 0.1)


def _particles(group: OpticsGroup, n: int = 3) -> ParticleSet:
    kw = empty_like_arrays(n)
    kw.update(defocus_u_A=np.linspace(9000, 20000, n), defocus_v_A=np.linspace(8500, 19000, n),
              defocus_angle_deg=np.linspace(10, 150, n), image_index=np.arange(n),
              image_path=np.array(["s.mrcs"] * n, dtype=object))
    return ParticleSet(optics=[group], **kw)


def test_zernike_order_is_relions():
    # RELION's wiki: odd Z1-1 Z11 Z3-3 Z3-1 Z31 Z33 ..., even Z00 Z2-2 Z20 Z22 Z4-4 ... Z44.
    assert [optics.odd_index_to_mn(i) for i in range(8)] == [
        (-1, 1), (1, 1), (-3, 3), (-1, 3), (1, 3), (3, 3), (-5, 5), (-3, 5)]
    assert [optics.even_index_to_mn(i) for i in range(10)] == [
        (0, 0), (-2, 2), (0, 2), (2, 2), (-4, 4), (-2, 4), (0, 4), (2, 4), (4, 4), (-6, 6)]


def test_zernike_terms_match_their_cartesian_forms():
    rng = np.random.default_rng(0)
    x, y = rng.normal(scale=0.3, size=(2, 50))
    r2 = x * x + y * y
    closed = {(1, 1): x, (-1, 1): y, (1, 3): 3 * r2 * x - 2 * x, (-3, 3): 3 * x * x * y - y ** 3,
              (3, 3): x ** 3 - 3 * x * y * y, (0, 2): 2 * r2 - 1, (2, 2): x * x - y * y,
              (-2, 2): 2 * x * y, (0, 4): 6 * r2 * r2 - 6 * r2 + 1,
              (-2, 4): (4 * r2 - 3) * 2 * x * y, (4, 4): x ** 4 - 6 * x * x * y * y + y ** 4}
    for (m, n), expected in closed.items():
        np.testing.assert_allclose(optics.zernike(m, n, x, y), expected, atol=1e-12,
                                   err_msg=f"Z_{n}^{m}")


def test_beam_tilt_is_axial_coma():
    # phi = -2 pi Cs lambda^2 |k|^2 (t . k), Cs in A and t in rad: the textbook coma,
    # independent of how RELION spreads it over Z_1 and Z_3.
    group = dataclasses.replace(GROUP, beam_tilt_mrad=(0.7, -1.3))
    kx, ky = freq_grid_2d(GROUP.box, GROUP.apix)
    lam = optics.electron_wavelength_A(300.0)
    expected = -2 * np.pi * 2.7e7 * lam ** 2 * (kx ** 2 + ky ** 2) * (0.7e-3 * kx - 1.3e-3 * ky)
    np.testing.assert_allclose(optics.odd_phase(group, kx, ky), expected, rtol=1e-8, atol=1e-12)


def test_tilt_adds_to_coma_already_in_the_odd_terms():
    both = dataclasses.replace(GROUP, beam_tilt_mrad=(0.5, 0.2), odd_zernike=(0, 0, 0, 3.0, -2.0))
    tilt = dataclasses.replace(GROUP, beam_tilt_mrad=(0.5, 0.2))
    coma = dataclasses.replace(GROUP, odd_zernike=(0, 0, 0, 3.0, -2.0))
    kx, ky = freq_grid_2d(GROUP.box, GROUP.apix)
    np.testing.assert_allclose(optics.odd_phase(both, kx, ky),
                               optics.odd_phase(tilt, kx, ky) + optics.odd_phase(coma, kx, ky),
                               atol=1e-12)


def test_even_z20_is_a_defocus_change_and_a_phase_shift():
    # c Z_2^0 = c (2|k|^2 - 1): gamma gains pi lambda (2c / (pi lambda)) |k|^2 - c, i.e. the
    # defocus falls by 2c / (pi lambda) and the phase shift grows by c.
    c = 0.8
    lam = float(optics.electron_wavelength_A(300.0))
    ps = _particles(dataclasses.replace(GROUP, even_zernike=(0.0, 0.0, c)))
    shifted = _particles(GROUP)
    shifted.defocus_u_A = shifted.defocus_u_A - 2 * c / (np.pi * lam)
    shifted.defocus_v_A = shifted.defocus_v_A - 2 * c / (np.pi * lam)
    shifted.phase_shift_deg = shifted.phase_shift_deg + np.degrees(c)
    index = np.arange(len(ps))
    np.testing.assert_allclose(particle_ctfs(ps, index, 32, 1.5),
                               particle_ctfs(shifted, index, 32, 1.5), atol=1e-9)


def test_isotropic_magnification_is_a_pixel_size_change():
    # CTF(M k) with M = s I equals the CTF on a grid of pixel size apix / s.
    s = 1.02
    ps = _particles(dataclasses.replace(GROUP, mag_matrix=((s, 0.0), (0.0, s)),
                                        even_zernike=(0, 0, 0, 0, 40.0)))
    plain = _particles(dataclasses.replace(GROUP, even_zernike=(0, 0, 0, 0, 40.0)))
    index = np.arange(len(ps))
    np.testing.assert_allclose(particle_ctfs(ps, index, 32, 1.5),
                               particle_ctfs(plain, index, 32, 1.5 / s), atol=1e-9)


def test_mtf_interpolation_follows_the_curve_inside_and_holds_its_ends():
    freq = np.linspace(0.0, 0.5, 11)
    curve = np.stack([freq, 1.0 - freq], axis=1)
    k = np.array([0.0, 0.02, 0.13, 0.31, 0.449, 0.6])
    values = optics.mtf_values(curve, k)
    # RELION's lookup: steps of (last - first) / rows; first entry below the second, last beyond.
    step = 0.5 / 11
    inner = (k >= step) & (k < 10 * step)
    np.testing.assert_allclose(values[inner], 1.0 - k[inner], atol=1e-12)
    assert values[0] == values[1] == 1.0 and values[-1] == 0.5


class _Memory:
    """An ImageReader over a stack in memory."""

    def __init__(self, stack: np.ndarray):
        self.stack = stack

    def read(self, paths, indices, *, rows, expected_box):
        assert self.stack.shape[-1] == expected_box
        return self.stack[np.asarray(indices)].astype(np.float32)


def test_spectra_demodulate_the_odd_phase_and_keep_plain_groups_as_they_are():
    rng = np.random.default_rng(1)
    plain_img = rng.normal(size=(3, 32, 32))
    group = dataclasses.replace(GROUP, beam_tilt_mrad=(1.0, 0.4), odd_zernike=(0, 0, 20.0))
    kx, ky = freq_grid_2d(32, 1.5)
    modulated = ifft2c(fft2c(plain_img) * np.exp(1j * optics.odd_phase(group, kx, ky))).real
    ps = _particles(group)
    spectra, _, _ = ParticleImages(ps, _Memory(modulated)).spectra(np.arange(3), center=False)
    # The Nyquist row and column have no Friedel mate on an even grid: compare inside them.
    np.testing.assert_allclose(spectra[:, 1:, 1:], fft2c(plain_img)[:, 1:, 1:], atol=2e-3)
    plain, _, _ = ParticleImages(_particles(GROUP), _Memory(plain_img)).spectra(
        np.arange(3), center=False)
    np.testing.assert_allclose(plain, fft2c(plain_img), atol=1e-3)


def test_frequency_maps_scale_by_the_grids_lengths_and_magnify():
    mag = ((1.01, 0.002), (-0.001, 0.99))
    small = OpticsGroup("b", 1.3, 28, 300.0, 2.7, 0.1, mag_matrix=mag)
    kw = empty_like_arrays(4)
    kw.update(optics_index=np.array([0, 1, 0, 1]), image_path=np.array(["a"] * 4, dtype=object))
    ps = ParticleSet(optics=[GROUP, small], **kw)
    images = ParticleImages(ps, _Memory(np.zeros((4, 32, 32))))
    assert (images.box, images.apix) == (32, 1.5)
    assert images.frequency_maps(np.array([0, 2])) is None
    maps = images.frequency_maps(np.arange(4))
    np.testing.assert_allclose(maps[1], (32 * 1.5) / (28 * 1.3) * np.array(mag))
    np.testing.assert_allclose(maps[0], np.eye(2))
    assert sorted(r.tolist() for r in images.by_image_grid(np.arange(4))) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="image grids"):
        images.image_grid(np.arange(4))
