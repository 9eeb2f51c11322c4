"""Masks: soft spheres against the analytic integral, auto masks on shapes with known geometry."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.fourier import masks
from scipy import integrate, ndimage


def test_soft_sphere_centre_axis_order_and_edge():
    box, radius, edge = 40, 8.0, 5.0
    centre = (3, -2, 5)                                   # (x, y, z) relative to the box centre
    m = masks.soft_sphere(box, centre, radius, edge)
    c = box // 2
    z0, y0, x0 = c + 5, c - 2, c + 3                      # arrays are [z, y, x]
    assert m[z0, y0, x0] == 1.0
    np.testing.assert_allclose(ndimage.center_of_mass(m), (z0, y0, x0), atol=1e-6)
    assert m[z0, y0, x0 + 8] == 1.0                       # on the radius
    assert m[z0, y0 + 13, x0] == 0.0                      # radius + edge
    # Halfway through the edge the raised cosine is 0.5: distance 10.5 along z.
    half = masks.soft_sphere(box, (0, 0, 0.5), radius, edge)
    assert half[c + 11, c, c] == pytest.approx(0.5, abs=1e-6)
    assert m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1


def test_soft_sphere_volume_matches_the_radial_integral():
    box, radius, edge = 64, 12.0, 5.0
    m = masks.soft_sphere(box, (0.3, -0.2, 0.1), radius, edge)
    shell = integrate.quad(lambda r: 4 * np.pi * r * r * (0.5 + 0.5 * np.cos(np.pi * (r - radius) / edge)),
                           radius, radius + edge)[0]
    expected = 4 / 3 * np.pi * radius ** 3 + shell
    assert m.sum() == pytest.approx(expected, rel=0.005)


def cube(box: int, lo: int, hi: int) -> np.ndarray:
    v = np.zeros((box,) * 3, np.float32)
    v[lo:hi, lo:hi, lo:hi] = 1.0
    return v


def test_auto_mask_extends_and_softens_by_exact_distances():
    box = 48
    vol = cube(box, 18, 30)                               # faces at indices 18 and 29
    vol[2:4, 2:4, 2:4] = 1.0                              # a detached speck: not the largest component
    m = masks.auto_mask(vol, 1.0, threshold=0.5, extend_px=3, edge_px=6, lowpass_A=None)
    row = m[24, 24, :]
    assert np.all(row[18:30] == 1)
    assert row[29 + 2] == 1.0                             # within the extension
    assert row[29 + 3 + 3] == pytest.approx(0.5)          # extension, then half the cosine edge
    assert row[29 + 3 + 6] == 0.0
    assert row[29 + 3 + 1] == pytest.approx(0.5 + 0.5 * np.cos(np.pi / 6))
    assert m[3, 3, 3] == 0.0


def test_auto_mask_default_threshold_finds_a_noisy_particle():
    rng = np.random.default_rng(0)
    box, apix = 48, 2.0
    k = np.arange(box) - box // 2
    z, y, x = np.meshgrid(k, k, k, indexing="ij")
    particle = np.exp(-((x - 3) ** 2 + y ** 2 + z ** 2) / (2 * 5.0 ** 2))
    vol = (particle + 0.05 * rng.standard_normal(particle.shape)).astype(np.float32)
    before = vol.copy()
    m = masks.auto_mask(vol, apix)
    np.testing.assert_array_equal(vol, before)
    assert np.all(m[particle > 0.3] == 1.0)               # the particle is inside
    assert m[0, 0, 0] == 0.0 and m[:, :, :4].max() == 0.0 # solvent far away is not
    assert 0.01 < m.mean() < 0.3
    with pytest.raises(ValueError, match="threshold"):
        masks.auto_mask(vol, apix, threshold=10.0)
