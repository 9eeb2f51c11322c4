"""GMM files: an exact round-trip format (.npz) and a PDB export for viewing.

The .npz file holds float64 arrays ``centres_A`` (N, 3), ``amplitudes`` (N,),
``widths_A`` (N,) and an integer ``format_version``; numpy stores the arrays'
bytes verbatim, so reading gives back bit-identical numbers.

The PDB export is for looking, not for reading back: one pseudo-atom per
Gaussian, B-factor = 8 pi^2 s^2 (s the width in Angstrom), which is the
crystallographic isotropic B whose Fourier factor exp(-B |k|^2 / 4) equals
the Gaussian's exp(-2 pi^2 s^2 |k|^2); occupancy = amplitude / max|amplitude|.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError, quoted
from ..gmm.model import GMM, check_gmm_arrays
from .atomic import atomic_path, write_text_atomic
from .model import engine_to_model_frame
from .npy import read_npz

FORMAT_VERSION = 1
_ARRAYS = ("centres_A", "amplitudes", "widths_A")


def write_gmm(gmm: GMM, path: str | os.PathLike) -> None:
    """Write ``gmm`` to a .npz file (exact, float64) through a temporary file."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"{path}: GMM file name must end in .npz")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, format_version=np.int64(FORMAT_VERSION),
                     centres_A=gmm.centres_A, amplitudes=gmm.amplitudes, widths_A=gmm.widths_A)


def read_gmm(path: str | os.PathLike) -> GMM:
    """Read a GMM written by :func:`write_gmm`; InputError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: GMM file not found")
    contents = read_npz(path, ".npz GMM file")
    version = contents.get("format_version")
    if version is None or version.shape != () or version.dtype.kind not in "iu" \
            or int(version) != FORMAT_VERSION:
        shown = "missing" if version is None else quoted(version.tolist())
        raise InputError(f"{path}: format_version {shown}; expected {FORMAT_VERSION}")
    missing = [key for key in _ARRAYS if key not in contents]
    if missing:
        raise InputError(f"{path}: array {missing[0]} missing; expected {', '.join(_ARRAYS)}")
    for key in _ARRAYS:
        if contents[key].dtype != np.float64:
            raise InputError(f"{path}: {key} has dtype {contents[key].dtype}; expected float64")
    check_gmm_arrays(*(contents[key] for key in _ARRAYS), where=str(path))
    return GMM(*(contents[key] for key in _ARRAYS))


def bfactor_from_width(widths_A: np.ndarray) -> np.ndarray:
    """Isotropic B-factor (A^2) equivalent to a Gaussian of standard deviation s: 8 pi^2 s^2."""
    return 8.0 * np.pi ** 2 * np.asarray(widths_A, float) ** 2


def _fixed(value: float, width: int) -> str:
    """Right-aligned number in ``width`` columns, dropping decimals before overflowing."""
    for decimals in (2, 1, 0):
        text = f"{value:{width}.{decimals}f}"
        if len(text) <= width:
            return text
    raise InputError(f"write_pdb: value {value} does not fit a {width}-column PDB field")


def write_pdb(gmm: GMM, path: str | os.PathLike, box: int | None = None,
              apix: float | None = None) -> None:
    """Write one HETATM pseudo-atom per Gaussian, for ChimeraX and friends.

    Coordinates are the centres in Angstrom; with ``box`` and ``apix`` they are
    moved by (box // 2) * apix so they overlay an MRC map of that box written
    by gmmrefine (origin 0, voxel B // 2 at the centre). B-factor column:
    8 pi^2 s^2 in A^2 (printed with fewer decimals when it would overflow 6
    columns); occupancy column: amplitude / max|amplitude|. Atom serials and
    residue numbers wrap at the PDB's 5- and 4-digit limits.
    """
    if (box is None) != (apix is None):
        raise InputError("write_pdb: give both box and apix, or neither")
    xyz = gmm.centres_A if box is None else engine_to_model_frame(gmm.centres_A, box, apix)
    if np.abs(xyz).max() >= 1e4 or xyz.min() <= -1e3:
        raise InputError(f"{path}: coordinates beyond the PDB's 8.3f columns; "
                         "expected centres within -999 .. 9999 A")
    occupancy = gmm.amplitudes / max(np.abs(gmm.amplitudes).max(), np.finfo(float).tiny)
    bfactor = bfactor_from_width(gmm.widths_A)
    lines = ["REMARK   1 gmmrefine GMM: one pseudo-atom per Gaussian",
             "REMARK   1 occupancy = amplitude / max|amplitude|; B = 8 pi^2 width_A^2"]
    for i in range(len(gmm)):
        serial, resseq = (i + 1) % 100000, (i + 1) % 10000
        x, y, z = xyz[i]
        lines.append(f"HETATM{serial:5d}  CA  GMM A{resseq:4d}    "
                     f"{x:8.3f}{y:8.3f}{z:8.3f}{_fixed(occupancy[i], 6)}"
                     f"{_fixed(bfactor[i], 6)}           C")
    lines.append("END")
    write_text_atomic(path, "\n".join(lines) + "\n")
