"""The references a refinement aligns against: Wiener-weighted half maps."""

from __future__ import annotations

import numpy as np
from gmmrefine.pipeline import references


def test_wiener_weighting_is_the_least_squares_estimate_of_the_truth():
    # Per shell, the scale w minimising |w H - T|^2 for a half map H = T + noise
    # is Re<H, T> / |H|^2, computed here from the truth; wiener_weighted
    # must scale each shell by it, knowing only the two halves' FSC.
    from gmmrefine.fourier.filters import apply_shell_weights
    from gmmrefine.fourier.grids import rfft_shell_index
    from gmmrefine.reconstruct.fsc import fsc_curve

    rng = np.random.default_rng(7)
    box = 48
    truth = apply_shell_weights(rng.normal(size=(box,) * 3),
                                np.exp(-np.arange(box // 2 + 1) / 6.0))
    noise_sd = truth.std() * 0.6
    half1, half2 = (truth + rng.normal(scale=noise_sd, size=truth.shape) for _ in range(2))
    fsc = fsc_curve(half1, half2)
    shells = rfft_shell_index(truth.shape)
    h, t = np.fft.rfftn(half1), np.fft.rfftn(truth)
    w = np.fft.rfftn(references.wiener_weighted(half1, fsc))
    for shell in range(3, box // 2 - 2):
        on = shells == shell
        least_squares = np.sum((h[on] * t[on].conj()).real) / np.sum(np.abs(h[on]) ** 2)
        applied = np.sum((w[on] * h[on].conj()).real) / np.sum(np.abs(h[on]) ** 2)
        assert abs(applied - least_squares) < 0.06, shell
