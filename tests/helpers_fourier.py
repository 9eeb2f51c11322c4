"""Counting on Fourier shells, and a blob particle of known spectrum, for the FSC and filter tests."""

from __future__ import annotations

import numpy as np
from gmmrefine.fourier.grids import fftnc, ifftnc, radius_grid, shell_index


def voxels_per_shell(box: int) -> np.ndarray:
    shells = shell_index(box, 3)
    return np.array([np.count_nonzero(shells == s) for s in range(box // 2 + 1)])


def blob_map(box: int, n_atoms: int, radius_px: float, width_px: float, rng) -> np.ndarray:
    """Sum of Gaussian 'atoms' inside a sphere: a particle whose power falls with frequency."""
    points = rng.normal(size=(n_atoms, 3))
    points *= radius_px * rng.uniform(0, 1, (n_atoms, 1)) ** (1 / 3) / np.linalg.norm(points, axis=1, keepdims=True)
    grid = np.zeros((box,) * 3)
    idx = np.rint(points).astype(int) + box // 2
    np.add.at(grid, (idx[:, 2], idx[:, 1], idx[:, 0]), 1.0)
    # Gaussian of width w in real space = exp(-2 pi^2 w^2 k^2) in Fourier space (k in 1/px).
    k = radius_grid(box, 3) / box
    return ifftnc(fftnc(grid) * np.exp(-2 * np.pi ** 2 * width_px ** 2 * k ** 2))
