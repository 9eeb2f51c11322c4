"""CryoSPARC's higher-order aberration fields <-> RELION's optics (OpticsGroup).

What maps exactly (docs/conventions.md, "Optics"):

- ``ctf/tilt_A`` (2,): beam tilt as Cs sin(tilt) in Angstrom, pyem's
  csparc2star reading: tilt_mrad = 1e3 arcsin(tilt_A / (1e7 Cs_mm)).
- ``ctf/anisomag`` (4,): the magnification matrix minus the identity, row by
  row (CryoSPARC's own description): M = I + anisomag.reshape(2, 2).

What has no exact RELION counterpart is carried untouched and reported as
not applied (``OpticsGroup.unmodelled``): ``ctf/trefoil_A``, ``ctf/tetra_A``
(units and polynomial basis undocumented) and ``ctf/shift_A``.
RELION's Zernike vectors and CTF premultiplication carried from a STAR
(``rlnOptics/rlnOddZernike``, ...) are read back, so STAR -> .cs -> refine
loses nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.particles import ParticleSet
from ..errors import InputError
from .star_optics import PREMULTIPLIED_LABEL, ZERNIKE_LABELS, parse_vector

TILT, ANISOMAG = ("ctf/tilt_A", 2), ("ctf/anisomag", 4)
UNMODELLED = (("ctf/trefoil_A", 2), ("ctf/tetra_A", 4), ("ctf/shift_A", 2))
CARRIED = "rlnOptics/"


def aberration_columns(arr: np.ndarray, path: Path) -> np.ndarray:
    """(N, 14): tilt_A, anisomag and the unmodelled fields, zeros where a field is absent."""
    columns = []
    for name, size in (TILT, ANISOMAG, *UNMODELLED):
        if name not in arr.dtype.names:
            columns.append(np.zeros((len(arr), size)))
            continue
        values = np.asarray(arr[name], float).reshape(len(arr), -1)[:, :size]
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: row {row + 1} field {name}: {values[row]}; "
                             "expected finite numbers")
        columns.append(values)
    return np.concatenate(columns, axis=1)


def group_aberrations(values: np.ndarray, cs_mm: float, member: np.void, path: Path) -> dict:
    """OpticsGroup keyword values from a group's :func:`aberration_columns` row and one of
    its members (for the RELION fields a STAR carried)."""
    tilt_A, anisomag = values[0:2], values[2:6]
    unmodelled, start = [], 6
    for name, size in UNMODELLED:
        value = values[start:start + size]
        start += size
        if np.any(value != 0):
            unmodelled.append((name, tuple(float(v) for v in value)))
    tilt_mrad = (0.0, 0.0)
    if np.any(tilt_A != 0):
        ratio = tilt_A / (cs_mm * 1e7) if cs_mm > 0 else np.full(2, np.inf)
        if np.all(np.abs(ratio) <= 1):
            tilt_mrad = tuple(float(v) for v in np.arcsin(ratio) * 1e3)
        else:
            unmodelled.append((TILT[0], tuple(float(v) for v in tilt_A)))
    mag = np.eye(2) + anisomag.reshape(2, 2)
    return {"beam_tilt_mrad": tilt_mrad, "mag_matrix": tuple(map(tuple, mag.tolist())),
            "unmodelled": tuple(unmodelled), **_carried_relion(member, path)}


def _carried_relion(member: np.void, path: Path) -> dict:
    """Zernike terms and premultiplication of a STAR carried as rlnOptics/ fields."""
    names = member.dtype.names
    out = {}
    for label, attr in zip(ZERNIKE_LABELS, ("odd_zernike", "even_zernike")):
        if CARRIED + label in names:
            text = member[CARRIED + label]
            text = text.decode() if isinstance(text, bytes) else str(text)
            out[attr] = parse_vector(text, path, 0, CARRIED + label)
    if CARRIED + PREMULTIPLIED_LABEL in names:
        out["ctf_premultiplied"] = bool(member[CARRIED + PREMULTIPLIED_LABEL])
    return out


def aberration_fields(ps: ParticleSet) -> dict[str, np.ndarray]:
    """ctf/tilt_A and ctf/anisomag per particle from the set's optics groups (CryoSPARC's
    dtypes), for a .cs written from a set that did not come from CryoSPARC."""
    tilt = np.array([np.sin(np.asarray(g.beam_tilt_mrad) * 1e-3) * g.cs_mm * 1e7
                     for g in ps.optics]).reshape(-1, 2)
    aniso = np.array([np.ravel(g.mag_matrix) - np.ravel(np.eye(2)) for g in ps.optics])
    return {TILT[0]: tilt[ps.optics_index].astype("<f4"),
            ANISOMAG[0]: aniso.reshape(-1, 4)[ps.optics_index].astype("<f4")}
