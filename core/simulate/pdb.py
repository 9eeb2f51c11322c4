"""PDB files of a :class:`Model`: written beside the truth map, read back to seed GMMs.

Coordinates inside gmmrefine are relative to the box centre; a PDB that
overlays the map in a viewer needs them relative to the map's first voxel,
so :func:`write_pdb` adds ``box_centre_A`` (= (B // 2) * apix for a map with
origin 0) and records it in a REMARK that :func:`read_pdb` subtracts again.
The domain label rides in the segment-id column (``CORE`` / ``DOM1``), the
hinge in a second REMARK, so a model written and read back is the same model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import write_text_atomic
from .model import CORE, DOMAIN, Model

_SEGMENT = {CORE: "CORE", DOMAIN: "DOM1"}
_CENTRE_TAG = "REMARK 250 GMMREFINE BOX_CENTRE_A"
_HINGE_TAG = "REMARK 250 GMMREFINE HINGE"


def write_pdb(path: str | os.PathLike, model: Model,
              box_centre_A: np.ndarray | float = 0.0) -> None:
    """Write ``model`` as PDB ATOM records, coordinates shifted by ``box_centre_A``."""
    if len(model) > 99999:
        raise InputError(f"{path}: {len(model)} atoms; PDB format holds at most 99999")
    centre = np.broadcast_to(np.asarray(box_centre_A, float), (3,))
    xyz = model.coords_A + centre
    lines = [f"{_CENTRE_TAG} {centre[0]:.4f} {centre[1]:.4f} {centre[2]:.4f}",
             f"{_HINGE_TAG} " + " ".join(f"{v:.4f}" for v in
                                         (*(model.hinge_point_A + centre), *model.hinge_axis))]
    for i in range(len(model)):
        name = model.atom_name[i]
        # PDB aligns one-letter elements' names from column 14 (" CA "), as viewers expect.
        name_field = f" {name:<3s}" if len(name) < 4 else name
        lines.append(
            f"ATOM  {i + 1:5d} {name_field:4s} {model.res_name[i]:3s} {model.chain[i]:1s}"
            f"{model.res_seq[i] % 10000:4d}    {xyz[i, 0]:8.3f}{xyz[i, 1]:8.3f}{xyz[i, 2]:8.3f}"
            f"{1.0:6.2f}{model.bfactor_A2[i]:6.2f}      {_SEGMENT[int(model.domain[i])]:4s}"
            f"{model.element[i]:>2s}")
    lines.append("END")
    write_text_atomic(path, "\n".join(lines) + "\n")


def read_pdb(path: str | os.PathLike) -> Model:
    """Read ATOM/HETATM records (hydrogens skipped) into a :class:`Model`.

    A file from :func:`write_pdb` comes back with coordinates relative to the
    box centre, its domain labels and hinge; any other PDB is read as one
    rigid core (domain 0) with coordinates as written and no hinge (zero axis).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: PDB file not found")
    centre = np.zeros(3)
    hinge = np.zeros(6)
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith(_CENTRE_TAG):
            centre = _floats(path, lineno, line[len(_CENTRE_TAG):], 3)
        elif line.startswith(_HINGE_TAG):
            hinge = _floats(path, lineno, line[len(_HINGE_TAG):], 6)
        elif line.startswith(("ATOM  ", "HETATM")):
            element = line[76:78].strip().upper() or line[12:16].strip()[:1].upper()
            if element in ("H", "D"):
                continue
            try:
                xyz = [float(line[30:38]), float(line[38:46]), float(line[46:54])]
                bfac = float(line[60:66]) if line[60:66].strip() else 0.0
                res_seq = int(line[22:26])
            except ValueError:
                raise InputError(f"{path}: line {lineno}: unreadable coordinates, B-factor "
                                 "or residue number; expected PDB fixed columns") from None
            domain = DOMAIN if line[72:76].strip() == _SEGMENT[DOMAIN] else CORE
            rows.append((element.capitalize() if len(element) > 1 else element, xyz, domain,
                         line[12:16].strip(), line[17:20].strip(), res_seq,
                         line[21:22], bfac))
    if not rows:
        raise InputError(f"{path}: no ATOM or HETATM records; expected a PDB model")
    return Model(
        element=np.array([r[0] for r in rows], dtype=object),
        coords_A=np.array([r[1] for r in rows], float) - centre,
        domain=np.array([r[2] for r in rows], np.int8),
        atom_name=np.array([r[3] for r in rows], dtype=object),
        res_name=np.array([r[4] for r in rows], dtype=object),
        res_seq=np.array([r[5] for r in rows], np.int64),
        chain=np.array([r[6] for r in rows], dtype=object),
        bfactor_A2=np.array([r[7] for r in rows], float),
        hinge_point_A=hinge[:3] - centre if hinge[3:].any() else np.zeros(3),
        hinge_axis=hinge[3:],
    )


def _floats(path: Path, lineno: int, text: str, count: int) -> np.ndarray:
    try:
        values = np.array([float(v) for v in text.split()], float)
    except ValueError:
        values = np.array([])
    if len(values) != count:
        raise InputError(f"{path}: line {lineno}: expected {count} numbers after the "
                         "GMMREFINE remark")
    return values
