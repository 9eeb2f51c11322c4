"""Counting on Fourier shells, for the FSC and filter tests."""

from __future__ import annotations

import numpy as np
from gmmrefine.fourier.grids import shell_index


def voxels_per_shell(box: int) -> np.ndarray:
    shells = shell_index(box, 3)
    return np.array([np.count_nonzero(shells == s) for s in range(box // 2 + 1)])
