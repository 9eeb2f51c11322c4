"""Focusing a GMM on a mask: widths widened or amplitudes faded outside it, its centroid."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.gmm.focus import (
    fade_outside_mask,
    mask_centroid_A,
    mask_values_at,
    widen_outside_mask,
    width_factor,
)
from gmmrefine.gmm.model import GMM


def test_widths_outside_the_mask_follow_s_over_quarter_plus_three_quarters_m():
    box, apix = 16, 2.0
    mask = np.zeros((box, box, box), np.float32)
    # Voxel (x, y, z) = (10, 8, 8) holds 1, (4, 8, 8) holds 0.5, the rest 0.
    mask[8, 8, 10], mask[8, 8, 4] = 1.0, 0.5
    centres = np.array([[2, 0, 0], [-4, 0, 0], [0, 6, 0], [1, 0, 0]], float) * apix
    gmm = GMM(centres, [1.0, 2.0, 3.0, 4.0], [1.5, 1.5, 2.0, 1.0])
    out = widen_outside_mask(gmm, mask, apix)
    expected_m = np.array([1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(mask_values_at(mask, centres, apix), expected_m)
    np.testing.assert_allclose(out.widths_A, gmm.widths_A / (0.25 + 0.75 * expected_m))
    np.testing.assert_array_equal(out.amplitudes, gmm.amplitudes)
    np.testing.assert_array_equal(out.centres_A, gmm.centres_A)
    # Halfway between a voxel at 1 and one at 0 the trilinear mask reads 0.5.
    between = np.array([[1.5, 0, 0]]) * apix
    np.testing.assert_allclose(mask_values_at(mask, between, apix), [0.5])
    assert width_factor(np.array([0.0]))[0] == pytest.approx(4.0)


def test_fading_scales_amplitudes_by_the_mask_and_drops_what_lies_outside():
    box, apix = 16, 2.0
    mask = np.zeros((box, box, box), np.float32)
    mask[8, 8, 10], mask[8, 8, 4] = 1.0, 0.5
    centres = np.array([[2, 0, 0], [-4, 0, 0], [0, 6, 0]], float) * apix
    gmm = GMM(centres, [1.0, 2.0, 3.0], [1.5, 1.5, 2.0])
    out = fade_outside_mask(gmm, mask, apix)
    np.testing.assert_allclose(out.amplitudes, [1.0, 1.0])
    np.testing.assert_array_equal(out.widths_A, [1.5, 1.5])
    np.testing.assert_array_equal(out.centres_A, centres[:2])
    with pytest.raises(ValueError, match="inside the mask"):
        fade_outside_mask(gmm, np.zeros_like(mask), apix)


def test_the_mask_centroid_is_its_weighted_centre_in_angstrom():
    mask = np.zeros((16, 16, 16))
    mask[3, 10, 12] = 1.0      # z, y, x voxel: x = 4, y = 2, z = -5 from voxel 8
    mask[3, 10, 4] = 3.0       # x = -4
    np.testing.assert_allclose(mask_centroid_A(mask, 1.5), np.array([-2.0, 2.0, -5.0]) * 1.5)
    assert not np.any(mask_centroid_A(np.zeros((8, 8, 8)), 1.0))
