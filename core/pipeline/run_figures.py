"""What a finished run shows of its maps: central slices of the start and final maps and,
with a model, the model's Q-scores in both.

Both maps are low-passed to their own gold-standard resolution first, as a
user would look at them: beyond it a map holds mostly noise, which would
darken the slices and lower every Q-score alike.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..fourier.filters import lowpass
from ..io.model import AtomicModel
from ..report.slices import plot_map_slices
from .qscore import score_maps, write_qscores

log = logging.getLogger(__name__)

SLICES_PNG = "slices.png"


def write_run_figures(out_dir: Path, apix: float, start: tuple[np.ndarray, float],
                      final: tuple[np.ndarray, float],
                      model: tuple[AtomicModel, np.ndarray] | None = None) -> None:
    """DIR/slices.png, and with a model DIR/qscore.csv and DIR/qscore.png.

    Parameters
    ----------
    out_dir : Path
        The run directory.
    apix : float
        Voxel size in Angstrom.
    start, final : (map, resolution in A)
        The full map at the imported poses (iteration 0) and the run's final
        map, each with its FSC 0.143 resolution.
    model : (AtomicModel, (N, 3) coordinates in the engine's frame), optional
        The run's --model (pipeline.inputs.read_model).
    """
    out_dir = Path(out_dir)
    maps = {label: (lowpass(volume, apix, res_A), res_A)
            for label, (volume, res_A) in (("start", start), ("final", final))}
    rows = {f"{label} ({res_A:.2f} Å)": volume for label, (volume, res_A) in maps.items()}
    plot_map_slices(out_dir / SLICES_PNG, rows, apix,
                    title="central slices, each map low-passed to its own resolution")
    if model is None:
        return
    atoms, coords = model
    scores = score_maps(maps, apix, atoms, coords)
    write_qscores(out_dir, atoms, scores, "Q-score per residue of the model, each map "
                  "low-passed to its own resolution")
    start_q, final_q = scores
    log.info(f"Q-score of the model: {start_q.describe()} -> {final_q.describe()}")
