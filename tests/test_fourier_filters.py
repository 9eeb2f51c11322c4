"""Fourier filters: the low-pass profile, shell weights, phase randomisation."""

from __future__ import annotations

import numpy as np
from gmmrefine.fourier import filters
from gmmrefine.fourier.grids import fftnc, ifftnc, radius_grid, shell_index
from gmmrefine.reconstruct import fsc
from helpers_fourier import voxels_per_shell


def test_lowpass_profile_is_a_raised_cosine_around_the_cutoff():
    rng = np.random.default_rng(3)
    box, apix, res_A = 32, 1.5, 6.0                        # cutoff at shell 8
    vol = rng.standard_normal((box,) * 3).astype(np.float32)
    before = vol.copy()
    out = filters.lowpass(vol, apix, res_A)
    np.testing.assert_array_equal(vol, before)
    ratio = np.abs(fftnc(out)) / np.abs(fftnc(vol))
    radius = radius_grid(box, 3)
    expected = np.where(radius < 7, 1.0, np.where(radius > 9, 0.0, 0.5 + 0.5 * np.cos(np.pi * (radius - 7) / 2)))
    np.testing.assert_allclose(ratio, expected, atol=1e-4)
    assert filters.lowpass(vol, apix, 2.0) is not vol      # at Nyquist: an unfiltered copy
    np.testing.assert_array_equal(filters.lowpass(vol, apix, 2.0), vol)


def test_shell_weights_agree_between_half_and_centred_transforms():
    rng = np.random.default_rng(4)
    box = 20
    vol = rng.standard_normal((box,) * 3)
    profile = rng.uniform(0, 1, box // 2 + 1)
    # The profile spread on the full centred grid; the corners beyond it get 0.
    padded = np.concatenate([profile, [0.0]])
    by_centred = ifftnc(fftnc(vol) * padded[np.minimum(shell_index(box, 3), len(profile))])
    np.testing.assert_allclose(filters.apply_shell_weights(vol, profile), by_centred, atol=1e-5)
    np.testing.assert_allclose(filters.apply_shell_weights(vol, np.ones(box)), vol, atol=1e-5)


def test_phase_randomisation_keeps_amplitudes_and_low_shells():
    rng = np.random.default_rng(5)
    box, from_shell = 32, 6
    vol = rng.standard_normal((box,) * 3)
    out = filters.randomise_phases_beyond(vol, from_shell, np.random.default_rng(0))
    f_in, f_out = fftnc(vol), fftnc(out)
    np.testing.assert_allclose(np.abs(f_out), np.abs(f_in), rtol=1e-8, atol=1e-8)
    inside = radius_grid(box, 3) < from_shell
    np.testing.assert_allclose(f_out[inside], f_in[inside], atol=1e-8)
    curve = fsc.fsc_curve(vol, out)
    n = voxels_per_shell(box)
    np.testing.assert_allclose(curve[:from_shell], 1.0, atol=1e-10)
    assert np.all(np.abs(curve[from_shell + 1:]) < 4 / np.sqrt(n[from_shell + 1:]))
