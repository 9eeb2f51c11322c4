"""RELION's optics columns beyond the plain CTF: read into OpticsGroup, written back.

The labels are RELION 3.1's (metadata_label.h): rlnBeamTiltX/Y (mrad),
rlnOddZernike / rlnEvenZernike (vectors, written "[c0,c1,...]"),
rlnMagMat00..11, rlnCtfDataAreCtfPremultiplied, rlnMtfFileName with
rlnMicrographOriginalPixelSize. Missing columns mean what they mean to
RELION: no tilt, no Zernike terms, the identity matrix, not premultiplied.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.optics import IDENTITY_2D
from ..data.particles import OpticsGroup
from ..errors import InputError

TILT_LABELS = ("rlnBeamTiltX", "rlnBeamTiltY")
ZERNIKE_LABELS = ("rlnOddZernike", "rlnEvenZernike")
MAG_LABELS = ("rlnMagMat00", "rlnMagMat01", "rlnMagMat10", "rlnMagMat11")
PREMULTIPLIED_LABEL = "rlnCtfDataAreCtfPremultiplied"
MTF_LABEL = "rlnMtfFileName"
ORIGINAL_APIX_LABEL = "rlnMicrographOriginalPixelSize"
MTF_COLUMNS = ("rlnResolutionInversePixel", "rlnMtfValue")


def parse_vector(text: object, path: Path, row: int, label: str) -> tuple[float, ...]:
    """RELION's vector text "[c0,c1,...]" (or "[]") as floats."""
    body = str(text).strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise InputError(f"{path}: data_optics row {row + 1} column _{label}: {text!r}; "
                         "expected a vector written [c0,c1,...]")
    try:
        values = tuple(float(v) for v in body[1:-1].split(",") if v.strip())
    except ValueError:
        raise InputError(f"{path}: data_optics row {row + 1} column _{label}: {text!r}; "
                         "expected numbers in [c0,c1,...]") from None
    if not all(np.isfinite(values)):
        raise InputError(f"{path}: data_optics row {row + 1} column _{label}: {text!r}; "
                         "expected finite numbers")
    return values


def format_vector(values) -> str:
    """Floats as RELION writes a vector: "[c0,c1,...]", 12 significant digits."""
    return "[" + ",".join(f"{float(v):.12g}" for v in values) + "]"


def _column(table: pd.DataFrame, label: str, path: Path, default: float) -> np.ndarray:
    if label not in table.columns:
        return np.full(len(table), float(default))
    values = pd.to_numeric(table[label], errors="coerce").to_numpy(float)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: data_optics row {row + 1} column _{label}: "
                         f"{table[label].iloc[row]}; expected a finite number")
    return values


def with_optics_columns(groups: list[OpticsGroup], table: pd.DataFrame,
                        path: Path) -> list[OpticsGroup]:
    """The groups (one per row of the 3.1 optics table) with their aberrations read."""
    tilt = np.stack([_column(table, label, path, 0.0) for label in TILT_LABELS], axis=1)
    mag = np.stack([_column(table, label, path, IDENTITY_2D[i // 2][i % 2])
                    for i, label in enumerate(MAG_LABELS)], axis=1)
    premultiplied = _column(table, PREMULTIPLIED_LABEL, path, 0.0) != 0
    out = []
    for row, group in enumerate(groups):
        odd, even = ((parse_vector(table[label].iloc[row], path, row, label)
                      if label in table.columns else ()) for label in ZERNIKE_LABELS)
        out.append(dataclasses.replace(
            group, beam_tilt_mrad=tuple(float(t) for t in tilt[row]), odd_zernike=odd,
            even_zernike=even, mag_matrix=tuple(map(tuple, mag[row].reshape(2, 2).tolist())),
            ctf_premultiplied=bool(premultiplied[row]),
            mtf_name=str(table[MTF_LABEL].iloc[row]) if MTF_LABEL in table.columns else ""))
    return out


def beam_tilt_30(particles: pd.DataFrame, path: Path) -> np.ndarray:
    """(N, 2) per-particle beam tilt of a RELION 3.0 table (zeros where absent)."""
    if not any(label in particles.columns for label in TILT_LABELS):
        return np.zeros((len(particles), 2))
    return np.stack([_column(particles, label, path, 0.0).astype(float)
                     for label in TILT_LABELS], axis=1)


def write_optics_columns(table: pd.DataFrame, groups: list[OpticsGroup]) -> None:
    """Write the groups' aberrations into a 3.1 optics table (in place).

    A column is written where the table has it already or where a group
    needs it; a table without any stays as RELION would write it.
    """
    tilt = np.array([g.beam_tilt_mrad for g in groups], float)
    if np.any(tilt != 0) or any(label in table.columns for label in TILT_LABELS):
        table[TILT_LABELS[0]], table[TILT_LABELS[1]] = tilt[:, 0], tilt[:, 1]
    for label, attr in zip(ZERNIKE_LABELS, ("odd_zernike", "even_zernike")):
        if label in table.columns or any(len(getattr(g, attr)) for g in groups):
            table[label] = [format_vector(getattr(g, attr)) for g in groups]
    mag = np.array([np.ravel(g.mag_matrix) for g in groups], float)
    if not np.allclose(mag, np.ravel(IDENTITY_2D)) or any(label in table.columns
                                                          for label in MAG_LABELS):
        for i, label in enumerate(MAG_LABELS):
            table[label] = mag[:, i]
    if PREMULTIPLIED_LABEL in table.columns or any(g.ctf_premultiplied for g in groups):
        table[PREMULTIPLIED_LABEL] = np.array([int(g.ctf_premultiplied) for g in groups])


def load_mtfs(groups: list[OpticsGroup], optics: pd.DataFrame | None, root: Path,
              path: Path, read_tables) -> None:
    """Read each group's MTF (in place) where the groups' MTF files differ.

    RELION's reconstruction evens out MTFs only then (each group divided by
    its own, multiplied by their mean); with one MTF for all it does
    nothing, and neither does gmmrefine, so the files are not even read.
    The curve is stored against frequency in 1/A: rlnResolutionInversePixel
    over rlnMicrographOriginalPixelSize, as RELION converts it.
    """
    names = {g.mtf_name for g in groups}
    if optics is None or len(names) < 2:
        return
    if "" in names:
        raise InputError(f"{path}: data_optics column _{MTF_LABEL} is empty for some groups; "
                         "expected an MTF file for every group")
    original = _column(optics, ORIGINAL_APIX_LABEL, path, np.nan)
    for row, group in enumerate(groups):
        if not np.isfinite(original[row]) or original[row] <= 0:
            raise InputError(f"{path}: data_optics row {row + 1} column _{ORIGINAL_APIX_LABEL}: "
                             "missing or not positive; expected the movies' pixel size (A), "
                             "which RELION needs to read the MTF")
        mtf_path = Path(group.mtf_name)
        mtf_path = mtf_path if mtf_path.is_absolute() else root / mtf_path
        group.mtf = read_mtf(mtf_path, read_tables) / np.array([original[row], 1.0])


def read_mtf(path: Path, read_tables) -> np.ndarray:
    """An MTF STAR file as (m, 2): [resolution in 1/pixel, value], values > 0."""
    for table in read_tables(path).values():
        if all(label in table.columns for label in MTF_COLUMNS):
            curve = np.stack([pd.to_numeric(table[label], errors="coerce").to_numpy(float)
                              for label in MTF_COLUMNS], axis=1)
            bad = ~np.isfinite(curve).all(axis=1) | (curve[:, 1] < 1e-10)
            if bad.any() or len(curve) < 2 or curve[-1, 0] <= curve[0, 0]:
                row = int(np.flatnonzero(bad)[0]) + 1 if bad.any() else len(curve)
                raise InputError(f"{path}: row {row} of the MTF table; expected at least two "
                                 "rows of increasing resolution with values > 0")
            return curve
    raise InputError(f"{path}: no table with columns _{MTF_COLUMNS[0]} and _{MTF_COLUMNS[1]}; "
                     "expected an MTF STAR file")
