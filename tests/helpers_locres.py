"""Half maps of one band-limited signal with known noise, for the local-resolution tests."""

from __future__ import annotations

import numpy as np
from gmmrefine.fourier.grids import fftnc, ifftnc, radius_grid

BOX, APIX = 48, 2.0
WINDOW_A, STEP_PX = 24.0, 4


def shared_signal(box: int = BOX, seed: int = 0) -> np.ndarray:
    """A band-limited random map that fills the box, unit standard deviation."""
    rng = np.random.default_rng(seed)
    envelope = np.exp(-(radius_grid(box, 3) / (0.35 * box / 2)) ** 2)
    signal = ifftnc(fftnc(rng.standard_normal((box,) * 3)) * envelope)
    return (signal / signal.std()).astype(np.float32)


def half_maps(noise_sd: np.ndarray | float, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The shared signal plus independent noise of standard deviation ``noise_sd`` (per voxel or one value)."""
    signal = shared_signal()
    rng = np.random.default_rng(seed)
    return tuple((signal + noise_sd * rng.standard_normal(signal.shape)).astype(np.float32) for _ in range(2))


def left_right_noise(low: float = 0.3, high: float = 1.5) -> np.ndarray:
    """Noise sd: ``low`` for x < box/2, ``high`` from there on (broadcasts over [z, y, x])."""
    return np.where(np.arange(BOX) < BOX // 2, low, high)[None, None, :]
