"""FSC, resolution and mask correction against brute force and analytic expectations."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.fourier import filters
from gmmrefine.fourier.grids import fftnc, ifftnc, radius_grid, shell_index
from gmmrefine.reconstruct import fsc
from helpers_fourier import blob_map, voxels_per_shell


def brute_force_fsc(map1: np.ndarray, map2: np.ndarray) -> np.ndarray:
    """FSC by the textbook definition on the full centred transform, shell by shell."""
    box = map1.shape[0]
    f1, f2, shells = fftnc(map1), fftnc(map2), shell_index(box, 3)
    out = []
    for s in range(box // 2 + 1):
        a, b = f1[shells == s], f2[shells == s]
        out.append(np.sum(a * np.conj(b)).real / np.sqrt(np.sum(abs(a) ** 2) * np.sum(abs(b) ** 2)))
    return np.array(out)


@pytest.mark.parametrize("box", [16, 15])
def test_fsc_curve_matches_brute_force_on_full_transform(box):
    rng = np.random.default_rng(box)
    signal = rng.standard_normal((box,) * 3)
    map1 = signal + rng.standard_normal(signal.shape)
    map2 = signal + rng.standard_normal(signal.shape)
    mask = rng.uniform(0, 1, signal.shape)
    np.testing.assert_allclose(fsc.fsc_curve(map1, map2), brute_force_fsc(map1, map2), atol=1e-10)
    np.testing.assert_allclose(fsc.fsc_curve(map1, map2, mask),
                               brute_force_fsc(map1 * mask, map2 * mask), atol=1e-10)


def test_identical_maps_correlate_perfectly():
    vol = np.random.default_rng(0).standard_normal((24,) * 3)
    curve = fsc.fsc_curve(vol, vol)
    assert curve.shape == (13,)
    np.testing.assert_allclose(curve[1:], 1.0, atol=1e-12)
    assert fsc.resolution_at(curve, 24, 1.3) == pytest.approx(2 * 1.3)


def test_independent_noise_correlates_within_counting_statistics():
    rng = np.random.default_rng(1)
    box = 48
    curve = fsc.fsc_curve(rng.standard_normal((box,) * 3), rng.standard_normal((box,) * 3))
    n = voxels_per_shell(box)[2:]
    # Each shell holds n/2 independent complex pairs (Hermitian symmetry): std = 1/sqrt(n).
    z = curve[2:] * np.sqrt(n)
    assert np.all(np.abs(z) < 4)
    assert 0.6 < np.sqrt(np.mean(z ** 2)) < 1.4


def test_signal_plus_noise_gives_snr_over_one_plus_snr():
    rng = np.random.default_rng(2)
    box, sigma_noise = 48, 1.0
    radius = radius_grid(box, 3)
    amplitude = 40.0 * np.exp(-(radius / 9.0) ** 2)   # SNR from ~1600 at the centre to ~0 at Nyquist
    signal = ifftnc(fftnc(rng.standard_normal((box,) * 3)) * amplitude)
    map1 = signal + sigma_noise * rng.standard_normal(signal.shape)
    map2 = signal + sigma_noise * rng.standard_normal(signal.shape)

    shells, n = shell_index(box, 3), voxels_per_shell(box)
    power_signal = np.array([np.sum(np.abs(fftnc(signal)[shells == s]) ** 2) for s in range(box // 2 + 1)])
    power_noise = sigma_noise ** 2 * box ** 3 * n          # Parseval for white noise
    snr = power_signal / power_noise
    expected = snr / (1 + snr)
    curve = fsc.fsc_curve(map1, map2)
    tolerance = 4 * (1 - expected ** 2) / np.sqrt(n) + 0.01
    assert np.all(np.abs(curve - expected)[2:] < tolerance[2:])
    assert expected[3] > 0.95 and expected[-1] < 0.05      # the test spans the whole curve


def test_resolution_at_interpolates_between_the_shells_around_the_crossing():
    box, apix = 64, 1.2
    curve = np.clip(1 - np.arange(33) / 20, -1, 1)         # crosses 0.143 at shell 20 * 0.857
    assert fsc.resolution_at(curve, box, apix) == pytest.approx(box * apix / (20 * 0.857))
    assert fsc.resolution_at(curve, box, apix, threshold=0.5) == pytest.approx(box * apix / 10)

    dip = np.ones(33)
    dip[10:] = [0.2, 0.1] + [0.5] * 21                     # the first crossing counts, not a later rise
    assert fsc.crossing_shell(dip) == pytest.approx(10 + 0.057 / 0.1)
    dip[0] = -1.0                                          # shell 0 (the mean) is never the crossing
    assert fsc.crossing_shell(dip) == pytest.approx(10 + 0.057 / 0.1)


def test_resolution_at_when_never_or_immediately_below():
    assert fsc.resolution_at(np.full(33, 0.9), 64, 1.5) == 3.0
    early = np.array([1.0, 0.0] + [0.0] * 31)
    assert fsc.resolution_at(early, 64, 1.5) == pytest.approx(64 * 1.5 / (0.857))


def expected_masked_fsc(signal: np.ndarray, sigma_noise: float, mask: np.ndarray) -> np.ndarray:
    """FSC that masking legitimately reaches: the noise power shrinks by mean(mask^2), the signal stays."""
    box = signal.shape[0]
    shells, n = shell_index(box, 3), voxels_per_shell(box)
    power_signal = np.array([np.sum(np.abs(fftnc(signal)[shells == s]) ** 2) for s in range(box // 2 + 1)])
    power_noise = sigma_noise ** 2 * box ** 3 * n * np.mean(mask ** 2)
    return power_signal / (power_signal + power_noise)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tight_mask_inflates_the_masked_fsc_but_not_the_corrected_one(seed):
    rng = np.random.default_rng(seed)
    box, apix, sigma = 64, 1.0, 0.02
    signal = blob_map(box, 3000, 16, 2.0, rng)
    map1 = signal + sigma * rng.standard_normal(signal.shape)
    map2 = signal + sigma * rng.standard_normal(signal.shape)
    smooth = filters.lowpass(signal, apix, 8.0)
    mask = (smooth > 0.3 * smooth.max()).astype(float)     # binary, hugging the density
    truth = fsc.resolution_at(expected_masked_fsc(signal, sigma, mask), box, apix)

    result = fsc.masked_fsc_corrected(map1, map2, mask, apix, seed=seed)
    masked = fsc.resolution_at(result.masked, box, apix)
    corrected = fsc.resolution_at(result.corrected, box, apix)
    assert masked < 0.8 * truth                            # the sharp mask edge fakes resolution
    assert 0.95 * truth < corrected < 1.15 * truth         # the correction takes it out
    assert fsc.resolution_at(result.unmasked, box, apix) > truth   # masking still helps, legitimately


def test_correction_rule_and_randomisation_shell_follow_relion():
    rng = np.random.default_rng(6)
    box, apix, sigma = 48, 1.0, 0.05
    signal = blob_map(box, 1500, 12, 1.5, rng)
    map1 = signal + sigma * rng.standard_normal(signal.shape)
    map2 = signal + sigma * rng.standard_normal(signal.shape)
    mask = np.clip(1.2 - radius_grid(box, 3) / 16, 0, 1)
    result = fsc.masked_fsc_corrected(map1, map2, mask, apix)
    s = result.randomisation_shell
    assert result.unmasked[s] < 0.8 and np.all(result.unmasked[1:s] >= 0.8)
    np.testing.assert_allclose(result.unmasked, brute_force_fsc(map1, map2), atol=1e-10)
    np.testing.assert_allclose(result.masked, brute_force_fsc(map1 * mask, map2 * mask),
                               atol=1e-10)
    # Below the randomisation shell + 2 RELION keeps the masked curve unchanged.
    np.testing.assert_array_equal(result.corrected[1:s + 2], result.masked[1:s + 2])
    # Phase-randomised maps agree with the originals below the randomisation shell.
    np.testing.assert_allclose(result.phase_randomised_masked[1:s - 1], result.masked[1:s - 1], atol=0.02)
    beyond = slice(s + 2, None)
    fsc_n = result.phase_randomised_masked[beyond]
    np.testing.assert_allclose(result.corrected[beyond] * (1 - fsc_n) + fsc_n, result.masked[beyond], atol=1e-9)

    fixed = fsc.masked_fsc_corrected(map1, map2, mask, apix, randomise_at_A=8.0)
    assert fixed.randomisation_shell == int(box * apix / 8.0)


def test_identical_halves_are_refused():
    vol = np.random.default_rng(7).standard_normal((16,) * 3)
    with pytest.raises(InputError, match="never drops below 0.8"):
        fsc.masked_fsc_corrected(vol, vol, np.ones_like(vol), 1.0)
