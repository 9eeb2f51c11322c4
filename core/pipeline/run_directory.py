"""A refinement run's directory: every path a run writes, and the records that let it resume.

DIR/run.json records the input, the options and every finished iteration's
figures; DIR/iter_NNN/ holds that iteration's maps, FSC, GMMs and poses.
The directory only records and resumes: the loop passes its state from one
iteration to the next in memory, and reads an iteration back only when a
stopped run is resumed. An iteration counts as finished once its
iteration.json exists, which is written last, so a run stopped at any point
resumes from the last finished iteration and never recomputes one. What is
saved is exact (maps are float32 as computed, poses and FSC curves float64
in state.npz), so a resumed run continues exactly as an uninterrupted one.

Every file name a run writes is spelled here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gmm.model import GMM
from ..io.atomic import atomic_path, write_text_atomic
from ..io.gmm_files import read_gmm, write_gmm, write_pdb
from ..io.mrc import read_map, write_map
from ..io.tables import write_fsc_csv

RECORD = "run.json"
LOG = "run.log"
PARTICLES_STAR = "particles.star"
PARTICLES_CS = "particles.cs"
HALF_MAPS = ("half1.mrc", "half2.mrc")
FULL_MAP = "map.mrc"
FSC_CSV = "fsc.csv"
FSC_PNG = "fsc.png"
POSE_CHANGES_PNG = "pose_changes.png"
_ITERATION_RECORD = "iteration.json"
_STATE = "state.npz"



@dataclass(frozen=True)
class Maps:
    """Half maps, the full map and their FSC: what an iteration leaves for the next.

    fsc          unmasked gold-standard FSC per shell, float64
    fsc_masked   RELION's corrected FSC within the run's mask, or None
    """

    half1: np.ndarray
    half2: np.ndarray
    full: np.ndarray
    fsc: np.ndarray
    fsc_masked: np.ndarray | None = None

    @property
    def halves(self) -> tuple[np.ndarray, np.ndarray]:
        return self.half1, self.half2


@dataclass(frozen=True)
class IterationState:
    """Poses of every particle (input order) after an iteration, its maps and its figures."""

    rotation: np.ndarray
    shift_A: np.ndarray
    score_start: np.ndarray
    score_end: np.ndarray
    maps: Maps
    summary: dict


@dataclass(frozen=True)
class RunFiles:
    """Where a finished run's outputs are."""

    particles_star: Path
    particles_cs: Path
    half1: Path
    half2: Path
    map: Path
    fsc_csv: Path


class RunLayout:
    """Where everything of the run in ``path`` is (a finished run's, or one in progress)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def iteration_dir(self, it: int) -> Path:
        return self.path / f"iter_{it:03d}"

    def gmm_path(self, it: int, half: int) -> Path:
        return self.iteration_dir(it) / f"gmm_half{half}.npz"

    def load_gmm(self, it: int, half: int) -> GMM:
        return read_gmm(self.gmm_path(it, half))

    def iteration_map(self, it: int) -> np.ndarray:
        """The full map iteration ``it`` reconstructed (0: at the imported poses)."""
        return read_map(self.iteration_dir(it) / FULL_MAP)[0]

    @property
    def files(self) -> RunFiles:
        return run_files(self.path)


class RunDirectory(RunLayout):
    """Persistence of one refinement run in a directory it owns (pipeline.ownership): each
    finished iteration, and the run's record."""

    def __init__(self, out_dir: Path, record: dict):
        super().__init__(out_dir)
        self.record = record

    # --- iterations --------------------------------------------------------------------
    def is_done(self, it: int) -> bool:
        return (self.iteration_dir(it) / _ITERATION_RECORD).exists()

    def save_gmm(self, it: int, half: int, gmm: GMM, box: int, apix: float) -> None:
        """The GMM exactly (.npz), and as pseudo-atoms to look at over the maps (.pdb)."""
        path = self.gmm_path(it, half)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_gmm(gmm, path)
        write_pdb(gmm, path.with_suffix(".pdb"), box=box, apix=apix)

    def save_iteration(self, it: int, state: IterationState, apix: float) -> None:
        """Maps, curves and poses first, the iteration.json marker last."""
        d = self.iteration_dir(it)
        d.mkdir(parents=True, exist_ok=True)
        write_maps(d, state.maps, apix)
        arrays = {"rotation": state.rotation, "shift_A": state.shift_A,
                  "score_start": state.score_start, "score_end": state.score_end,
                  "fsc": state.maps.fsc}
        if state.maps.fsc_masked is not None:
            arrays["fsc_masked"] = state.maps.fsc_masked
        with atomic_path(d / _STATE) as tmp:
            np.savez(tmp, **arrays)
        write_text_atomic(d / _ITERATION_RECORD, json.dumps(state.summary, indent=2) + "\n")

    def load_iteration(self, it: int) -> IterationState:
        d = self.iteration_dir(it)
        with np.load(d / _STATE) as f:
            arrays = {k: f[k] for k in f.files}
        half1, half2, full = (read_map(d / name)[0] for name in (*HALF_MAPS, FULL_MAP))
        maps = Maps(half1, half2, full, arrays.pop("fsc"), arrays.pop("fsc_masked", None))
        summary = json.loads((d / _ITERATION_RECORD).read_text())
        return IterationState(maps=maps, summary=summary, **arrays)

    # --- the run's record -----------------------------------------------------------------
    def write_record(self, summaries: list[dict], extra: dict | None = None) -> None:
        self.record["iterations"] = summaries
        self.record.update(extra or {})
        self.path.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.path / RECORD, json.dumps(self.record, indent=2) + "\n")


def run_files(path: Path) -> RunFiles:
    """The output paths of the run (or patch run) in ``path``."""
    path = Path(path)
    return RunFiles(path / PARTICLES_STAR, path / PARTICLES_CS, path / HALF_MAPS[0],
                    path / HALF_MAPS[1], path / FULL_MAP, path / FSC_CSV)


def write_maps(directory: Path, maps: Maps, apix: float) -> None:
    """half1.mrc, half2.mrc, map.mrc and fsc.csv (with the masked curve when there is one)."""
    for name, volume in zip((*HALF_MAPS, FULL_MAP), (maps.half1, maps.half2, maps.full)):
        write_map(directory / name, volume, apix)
    box = maps.half1.shape[0]
    extra = {} if maps.fsc_masked is None else {"fsc_masked_corrected": maps.fsc_masked}
    write_fsc_csv(directory / FSC_CSV, maps.fsc, box, apix, extra=extra)


def read_final_maps(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The half maps and full map a finished run (or patch run) wrote in ``path``."""
    files = run_files(path)
    return tuple(read_map(p)[0] for p in (files.half1, files.half2, files.map))
