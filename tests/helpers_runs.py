"""What a finished run reports, recomputed from the files it wrote (not read from its record)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gmmrefine.io.mrc import read_map
from gmmrefine.reconstruct.fsc import fsc_curve, masked_fsc_corrected, resolution_at


def resolution_of(directory: Path, mask: np.ndarray | None = None) -> float:
    """FSC-0.143 resolution (A) of half1.mrc and half2.mrc in ``directory``; with ``mask``,
    of the masked FSC corrected for the mask, as a focused run reports it."""
    half1, apix = read_map(directory / "half1.mrc")
    half2, _ = read_map(directory / "half2.mrc")
    curve = (fsc_curve(half1, half2) if mask is None
             else masked_fsc_corrected(half1, half2, mask, apix).corrected)
    return resolution_at(curve, half1.shape[0], apix)
