"""RELION's CTF against the textbook form written independently."""

import numpy as np
import pytest
from gmmrefine.data import ctf
from gmmrefine.fourier.grids import freq_grid_2d


def textbook_ctf(k, defocus_A, voltage_kv, cs_mm, q0, phase_rad=0.0):
    """CTF = -(sqrt(1-Q0^2) sin(chi) + Q0 cos(chi)) with
    chi = -pi lambda df k^2 + pi/2 Cs lambda^3 k^4 - phase (underfocus positive)."""
    v = voltage_kv * 1e3
    # h / sqrt(2 m e V (1 + e V / 2 m c^2)), in Angstrom
    h, m, e, c = 6.62607015e-34, 9.1093837e-31, 1.602176634e-19, 2.99792458e8
    lam = h / np.sqrt(2 * m * e * v * (1 + e * v / (2 * m * c * c))) * 1e10
    chi = -np.pi * lam * defocus_A * k ** 2 + 0.5 * np.pi * cs_mm * 1e7 * lam ** 3 * k ** 4 - phase_rad
    return -(np.sqrt(1 - q0 ** 2) * np.sin(chi) - q0 * np.cos(chi))


def test_wavelength_matches_physics():
    assert ctf.electron_wavelength_A(300) == pytest.approx(0.019687, rel=1e-4)
    assert ctf.electron_wavelength_A(200) == pytest.approx(0.025079, rel=1e-4)


@pytest.mark.parametrize("voltage,cs,q0,phase_deg", [(300, 2.7, 0.1, 0.0), (200, 1.4, 0.07, 40.0)])
def test_isotropic_ctf_matches_textbook(voltage, cs, q0, phase_deg):
    k = np.linspace(0, 0.4, 200)
    got = ctf.ctf_value(k, 0 * k, 15000, 15000, 0.0, voltage, cs, q0, phase_shift_deg=phase_deg)
    want = textbook_ctf(k, 15000, voltage, cs, q0, np.radians(phase_deg))
    np.testing.assert_allclose(got, want, atol=2e-3)


def test_ctf_is_positive_at_low_frequency_for_underfocus():
    assert ctf.ctf_value(0.0, 0.0, 20000, 20000, 0, 300, 2.7, 0.1) == pytest.approx(0.1, rel=1e-9)
    assert ctf.ctf_value(0.01, 0.0, 20000, 20000, 0, 300, 2.7, 0.1) > 0.1


def test_astigmatism_direction():
    # Along the defocus angle the defocus is U, perpendicular to it V.
    ang = 30.0
    k = 0.2
    kx, ky = k * np.cos(np.radians(ang)), k * np.sin(np.radians(ang))
    along = ctf.ctf_value(kx, ky, 12000, 18000, ang, 300, 2.7, 0.1)
    perp = ctf.ctf_value(-ky, kx, 12000, 18000, ang, 300, 2.7, 0.1)
    assert along == pytest.approx(textbook_ctf(k, 12000, 300, 2.7, 0.1), abs=1e-3)
    assert perp == pytest.approx(textbook_ctf(k, 18000, 300, 2.7, 0.1), abs=1e-3)


def test_bfactor_envelope_and_phase_flip():
    kx, ky = freq_grid_2d(32, 2.0)
    c0 = ctf.ctf_value(kx, ky, 10000, 10000, 0, 300, 2.7, 0.1)
    c1 = ctf.ctf_value(kx, ky, 10000, 10000, 0, 300, 2.7, 0.1, bfactor_A2=100.0)
    np.testing.assert_allclose(c1, c0 * np.exp(-100.0 * (kx ** 2 + ky ** 2) / 4), atol=1e-12)
    flipped = ctf.phase_flip(c0.astype(complex), c0)
    np.testing.assert_allclose(flipped.real, np.abs(c0), atol=1e-12)
