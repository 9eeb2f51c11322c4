"""Radial Fourier filters for 3D maps: low-pass, per-shell weights, phase randomisation.

Maps are indexed [z, y, x] (mrcfile's order). Filters work on the real-input
FFT (numpy's rfftn, half the memory of a full transform) because every filter
here depends only on the radius |k| in Fourier pixels, which is the same in
that layout as in the centred one of :mod:`gmmrefine.fourier.grids`; shells are
the rounded radius, as there and in RELION.
"""

from __future__ import annotations

import numpy as np

from .grids import cosine_edge, rfft_radius_px, rfft_shell_index


def lowpass_weights(radius_px: np.ndarray, cutoff_shell: float, edge_shells: float = 2) -> np.ndarray:
    """Raised-cosine low-pass profile evaluated at ``radius_px``.

    As RELION's lowPassFilterMap: 1 below ``cutoff_shell - edge_shells / 2``,
    0 beyond ``cutoff_shell + edge_shells / 2``, a half cosine in between
    (0.5 at the cutoff). RELION rounds the cutoff to an integer shell; here it
    stays fractional so that a resolution maps onto the grid exactly.
    """
    half = max(float(edge_shells), 0.0) / 2
    lo, hi = max(cutoff_shell - half, 0.0), cutoff_shell + half
    return cosine_edge(np.asarray(radius_px, float) - lo, hi - lo)


def lowpass(volume: np.ndarray, apix: float, res_A: float, *, edge_shells: float = 2) -> np.ndarray:
    """Low-pass filter a map to ``res_A`` with a soft cosine edge in Fourier space.

    Parameters
    ----------
    volume : (B, B, B) array
        Map indexed [z, y, x].
    apix : float
        Voxel size in Angstrom.
    res_A : float
        Resolution of the filter's half-height, in Angstrom. At or below
        Nyquist (2 * apix) the map comes back unfiltered.
    edge_shells : float
        Width of the cosine edge in Fourier shells (RELION's default is 2).

    Returns
    -------
    float32 array of the input's shape; the input is not modified.
    """
    volume = np.asarray(volume)
    if res_A <= 2 * apix:
        return volume.astype(np.float32, copy=True)
    box = volume.shape[-1]
    cutoff_shell = box * apix / res_A
    spectrum = np.fft.rfftn(volume)
    spectrum *= lowpass_weights(rfft_radius_px(volume.shape), cutoff_shell, edge_shells)
    return np.fft.irfftn(spectrum, s=volume.shape, axes=tuple(range(volume.ndim))).astype(np.float32)


def apply_shell_weights(volume: np.ndarray, per_shell: np.ndarray) -> np.ndarray:
    """Multiply a map's Fourier transform by a per-shell profile (e.g. an FSC weighting).

    Shells beyond the profile's length are set to 0. Returns float32; the
    input is not modified.
    """
    volume = np.asarray(volume)
    per_shell = np.asarray(per_shell, float)
    shells = rfft_shell_index(volume.shape)
    padded = np.concatenate([per_shell, [0.0]])
    spectrum = np.fft.rfftn(volume) * padded[np.minimum(shells, len(per_shell))]
    return np.fft.irfftn(spectrum, s=volume.shape, axes=tuple(range(volume.ndim))).astype(np.float32)


def randomise_phases_beyond(volume: np.ndarray, from_shell: int,
                            rng: np.random.Generator) -> np.ndarray:
    """Replace the Fourier phases at radius >= ``from_shell`` by random ones.

    Amplitudes are kept. As RELION's randomizePhasesBeyond, the test is on
    the exact radius (r >= shell), not the rounded shell. The random phases
    are those of the transform of real white noise, so they are uniform and
    Hermitian-symmetric and the result is exactly real.

    Returns a float64 array; the input is not modified.
    """
    volume = np.asarray(volume, float)
    spectrum = np.fft.rfftn(volume)
    noise_spectrum = np.fft.rfftn(rng.standard_normal(volume.shape))
    phase = noise_spectrum / np.maximum(np.abs(noise_spectrum), 1e-300)
    beyond = rfft_radius_px(volume.shape) >= from_shell
    spectrum = np.where(beyond, np.abs(spectrum) * phase, spectrum)
    return np.fft.irfftn(spectrum, s=volume.shape, axes=tuple(range(volume.ndim)))
