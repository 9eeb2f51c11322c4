"""Q-scores of an atomic model in one or two maps: ``gmmrefine qscore`` and a run's report.

The numbers come from gmmrefine.reconstruct.qscore (per atom) and are averaged
per residue; the results are a CSV (io.qscore_table) and a per-chain plot
(report.qscore). With two maps (start and final) both columns and curves are
written, start first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.model import AtomicModel, residues_of
from ..io.mrc import read_map
from ..io.qscore_table import write_qscore_csv
from ..reconstruct.qscore import (
    SIGMA_A,
    atom_qscores,
    expected_protein_qscore,
    residue_means,
    shell_radii_A,
)
from ..report.progress import Progress
from ..report.qscore import plot_qscore_per_chain
from .inputs import read_model
from .options import _option, option_fields

log = logging.getLogger(__name__)

QSCORE_CSV = "qscore.csv"
QSCORE_PNG = "qscore.png"


@dataclass(frozen=True)
class QscoreOptions:
    """Options of ``gmmrefine qscore``, declared as RefineOptions' are (pipeline.options)."""

    start: str | None = _option(
        None, "start", str, "a second map of the same box, e.g. before refinement: scored too, "
        "and shown as start beside MAP as final", none="none", none_means="MAP only",
        metavar="FILE")
    res_A: float | None = _option(
        None, "res", float, "resolution of MAP: the log and plot give the Q a protein model "
        "is expected to reach there (MapQ's fit to EMDB entries; --sigma 0.6 or 0.4 only)",
        unit="A", above=0,
        none="none", none_means="no expectation shown")
    start_res_A: float | None = _option(
        None, "start-res", float, "resolution of the start map, as --res", unit="A", above=0,
        none="none", none_means="no expectation shown")
    sigma_A: float = _option(
        SIGMA_A, "sigma", float, "width of the reference Gaussian (Pintilie 2020: 0.6; MapQ "
        "offers 0.4 for maps finer than 1.5 A, giving Q about 0.1 lower)", unit="A", above=0)

    def __post_init__(self) -> None:
        for name, option, _ in option_fields(QscoreOptions):
            option.check(getattr(self, name))


@dataclass(frozen=True)
class MapQscores:
    """Q-scores of one model in one map.

    label        "start", "final", or "map" when there is one
    per_atom     (N,) Q of each atom (NaN: its sphere leaves the map)
    per_residue  (R,) mean over each residue's atoms
    res_A        the map's resolution when known
    sigma_A      the reference Gaussian's width the scores were made with
    """

    label: str
    per_atom: np.ndarray
    per_residue: np.ndarray
    res_A: float | None = None
    sigma_A: float = SIGMA_A

    @property
    def mean(self) -> float:
        """The model's Q: the mean over its scored atoms (as MapQ reports it)."""
        return float(np.nanmean(self.per_atom)) if np.isfinite(self.per_atom).any() else np.nan

    @property
    def expected(self) -> float | None:
        return None if self.res_A is None else expected_protein_qscore(self.res_A, self.sigma_A)

    def legend(self) -> str:
        """E.g. "final, 4.10 A: mean Q 0.521"."""
        res = "" if self.res_A is None else f", {self.res_A:.2f} A"
        return f"{self.label}{res}: mean Q {self.mean:.3f}"

    def describe(self) -> str:
        """The legend and, with a resolution, the Q expected there."""
        exp = "" if self.expected is None else f" (expected for a protein: {self.expected:.2f})"
        return self.legend() + exp


def score_maps(maps: dict[str, tuple[np.ndarray, float | None]], apix: float,
               atoms: AtomicModel, coords_A: np.ndarray,
               sigma_A: float = SIGMA_A) -> list[MapQscores]:
    """Q per atom and per residue of one model in each map (label -> (map, resolution or None)).

    ``coords_A`` are the atoms in the engine's frame (pipeline.inputs.read_model).
    """
    residues = residues_of(atoms)
    progress = Progress(len(maps) * len(shell_radii_A()), "Q-score", unit="shells")
    scores = []
    for label, (volume, res_A) in maps.items():
        per_atom = atom_qscores(volume, apix, coords_A, sigma_A=sigma_A, progress=progress.update)
        scores.append(MapQscores(label, per_atom,
                                 residue_means(per_atom, residues.of_atom, len(residues)), res_A,
                                 sigma_A))
    progress.finish(f"{len(coords_A)} atoms, {len(residues)} residues")
    unscored = int(np.sum(~np.isfinite(scores[0].per_atom)))
    if unscored:
        log.info(f"{unscored} of {len(coords_A)} atoms have no Q-score: within 2 A of the "
                 "map's edge or outside it, or in a flat region")
    return scores


def write_qscores(out_dir: Path, atoms: AtomicModel, scores: list[MapQscores],
                  title: str) -> None:
    """DIR/qscore.csv (a column q_<label> per map, or q for one) and DIR/qscore.png."""
    residues = residues_of(atoms)
    columns = ({"q": scores[0].per_residue} if len(scores) == 1 else
               {f"q_{s.label}": s.per_residue for s in scores})
    write_qscore_csv(Path(out_dir) / QSCORE_CSV, residues, columns)
    plot_qscore_per_chain(Path(out_dir) / QSCORE_PNG, residues,
                          {s.legend(): s.per_residue for s in scores},
                          expected={s.legend(): s.expected for s in scores
                                    if s.expected is not None},
                          title=title)


def run_qscore(map_path: Path, model_path: Path, out_dir: Path,
               options: QscoreOptions) -> list[MapQscores]:
    """``gmmrefine qscore``: read and check everything, score, then write the CSV and plot.

    Raises
    ------
    InputError
        One line, before any file is written: a map or model that cannot be
        read, a start map of another box or voxel size, a model that does not
        overlay the map.
    """
    volume, apix = read_map(map_path)
    maps = {"final" if options.start else "map": (volume, options.res_A)}
    if options.start is not None:
        start, start_apix = read_map(options.start)
        if start.shape != volume.shape or abs(start_apix - apix) > 1e-3 * apix:
            raise InputError(f"{options.start}: box {start.shape[0]}, {start_apix:.4g} A/px; "
                             f"expected box {volume.shape[0]} at {apix:.4g} A/px like {map_path}")
        maps = {"start": (start, options.start_res_A), **maps}
    atoms, coords = read_model(str(model_path), volume.shape[0], apix,
                               box_name=f"the box of {map_path}", overlays="the map")
    scores = score_maps(maps, apix, atoms, coords, options.sigma_A)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_qscores(out_dir, atoms, scores, f"Q-score per residue of {Path(model_path).name}")
    for s in scores:
        log.info(f"Q-score of {Path(model_path).name}, {s.describe()}")
    return scores
