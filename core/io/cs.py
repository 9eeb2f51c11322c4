"""CryoSPARC ``.cs`` particle files <-> ParticleSet.

A ``.cs`` file is a NumPy ``.npy`` structured array (fields "blob/path",
"alignments3D/pose", ...), so ``np.load`` reads it, large many-class headers
(format 2.0/3.0) included. The conventions are pyem's, which cryoDRGN shares
(../shared/realcs/README.md, docs/conventions.md):

- RELION matrix A = Rodrigues(alignments3D/pose)^T;
- origin (A) = alignments3D/shift (pixels) * alignments3D/psize_A, no sign
  change; blob/psize_A only where the alignment has no pixel size of its own
  (pyem PR #125: shifts of downsampled refinements are in the smaller grid);
- half set = alignments3D/split + 1; blob/idx is 0-based; a leading ">" on
  blob/path marks a path relative to the project and is not part of it.
"""

from __future__ import annotations

import os
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from ..data.rotations import matrix_to_rotvec, rotvec_to_matrix
from ..errors import InputError, quoted
from .atomic import atomic_path
from .cs_optics import aberration_columns, aberration_fields, group_aberrations
from .cs_passthrough import with_passthrough
from .npy import read_npy_file

POSE_FIELDS = ("alignments3D/pose", "alignments3D/shift")
# Fields whose meaning ParticleSet holds; a writer regenerates them from it.
_CANONICAL = frozenset({
    "uid", "blob/path", "blob/idx", "blob/shape", "blob/psize_A",
    "ctf/exp_group_id", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast", "ctf/df1_A",
    "ctf/df2_A", "ctf/df_angle_rad", "ctf/phase_shift_rad", "ctf/bfactor", "ctf/scale",
    "alignments3D/split",
})
OPTICS_NAME_FIELD = "rlnOptics/rlnOpticsGroupName"
# Dtype kinds and element shapes of the fields read_cs interprets (a damaged
# header can turn a path into floats or a pose into four numbers).
_NUMBER = "iuf"
_FIELD_TYPES = {
    "uid": ("iu", ()), "blob/path": ("SU", ()), "blob/idx": ("iu", ()),
    "blob/shape": ("iu", (2,)), "blob/psize_A": (_NUMBER, ()),
    "ctf/exp_group_id": ("iu", ()), "ctf/accel_kv": (_NUMBER, ()), "ctf/cs_mm": (_NUMBER, ()),
    "ctf/amp_contrast": (_NUMBER, ()), "ctf/df1_A": (_NUMBER, ()), "ctf/df2_A": (_NUMBER, ()),
    "ctf/df_angle_rad": (_NUMBER, ()), "ctf/phase_shift_rad": (_NUMBER, ()),
    "ctf/bfactor": (_NUMBER, ()), "ctf/scale": (_NUMBER, ()), "alignments3D/split": ("iu", ()),
    "alignments3D/pose": (_NUMBER, (3,)), "alignments3D/shift": (_NUMBER, (2,)),
    "alignments3D/psize_A": (_NUMBER, ()), OPTICS_NAME_FIELD: ("SU", ()),
}

# What CryoSPARC's own Import Particles writes besides the canonical fields
# (realcs/empiar_10076_7.cs), with its dtypes and values for a RELION import.
_IMPORT_DEFAULTS = (
    ("blob/sign", "<f4", (), -1.0),       # RELION stacks: protein dark
    ("ctf/type", "S9", (), b"imported"),
    ("ctf/scale_const", "<f4", (), 0.0),
    ("ctf/shift_A", "<f4", (2,), 0.0),
    ("ctf/tilt_A", "<f4", (2,), 0.0),
    ("ctf/trefoil_A", "<f4", (2,), 0.0),
    ("ctf/tetra_A", "<f4", (4,), 0.0),
    ("ctf/anisomag", "<f4", (4,), 0.0),
)


# CryoSPARC's field order (realcs files), used for arrays gmmrefine starts itself.
_ORDER = ("uid", "blob/path", "blob/idx", "blob/shape", "blob/psize_A", "blob/sign", "ctf/type",
          "ctf/exp_group_id", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast", "ctf/df1_A",
          "ctf/df2_A", "ctf/df_angle_rad", "ctf/phase_shift_rad", "ctf/scale",
          "ctf/scale_const", "ctf/shift_A", "ctf/tilt_A", "ctf/trefoil_A", "ctf/tetra_A",
          "ctf/anisomag", "ctf/bfactor", "alignments3D/split", "alignments3D/shift",
          "alignments3D/pose", "alignments3D/psize_A", "alignments3D/class")


def canonical_fields(has_pose: bool) -> frozenset[str]:
    """Fields regenerated from ParticleSet; all others are passthrough."""
    return _CANONICAL | set(POSE_FIELDS) if has_pose else _CANONICAL


def load_cs(path: str | os.PathLike) -> np.ndarray:
    """The structured array of a ``.cs`` file, with one-line errors for non-``.cs`` input.

    The fields read_cs interprets must have the dtype kind and element shape
    it relies on; every other field is carried as it is.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: .cs file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty; expected a CryoSPARC .cs (NumPy) array")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic == b"\x95CSDAT":
        return _load_csdat(path)
    # Many-class jobs write headers far over numpy's 10 kB default limit
    # (pyem #131); read_npy_file bounds a header by its file instead.
    arr = read_npy_file(path, ".cs file")
    if arr.dtype.names is None or arr.ndim != 1:
        raise InputError(f"{path}: not a CryoSPARC .cs table; expected a 1-D structured array")
    _check_field_types(arr, path)
    return arr


def _check_field_types(arr: np.ndarray, path: Path) -> None:
    for name in arr.dtype.names:
        if name not in _FIELD_TYPES:
            continue
        kinds, shape = _FIELD_TYPES[name]
        field = arr.dtype[name]
        if field.base.kind not in kinds or field.shape != shape:
            wanted = {"SU": "text", "iu": "integers"}.get(kinds, "numbers")
            shown = f"{field.base.str}{' x ' + str(field.shape) if field.shape else ''}"
            raise InputError(f"{path}: field {name} has dtype {shown}; expected {wanted}"
                             f"{' of shape ' + str(shape) if shape else ''}")


def _load_csdat(path: Path) -> np.ndarray:
    """cryosparc-tools' compressed stream format (CSDAT), which only it reads."""
    from cryosparc.dataset import Dataset

    try:
        return Dataset.load(path).to_records(fixed=True)
    except Exception as err:  # its errors have no common base class
        raise InputError(f"{path}: not a readable CSDAT .cs file "
                         f"({type(err).__name__}: {quoted(str(err), 80)})") from None


def save_cs(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write a structured array as ``.cs`` through a temporary file."""
    with atomic_path(path) as tmp:
        # A file handle, because np.save appends ".npy" to a name.
        with open(tmp, "wb") as f, warnings.catch_warnings():
            # Headers over 64 KiB need format 2.0, which numpy warns about;
            # CryoSPARC writes the same.
            warnings.filterwarnings("ignore", message="Stored array in format")
            np.save(f, arr, allow_pickle=False)


def decode_strings(column: np.ndarray, name: str = "", path: Path | None = None) -> np.ndarray:
    """Fixed-bytes field -> object array of str; InputError at the first row not UTF-8."""
    if column.dtype.kind == "U":
        return column.astype(object)
    try:
        return pd.Series(column).str.decode("utf-8").to_numpy(object)
    except UnicodeDecodeError:
        for row, value in enumerate(column):
            try:
                value.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputError(f"{path}: row {row + 1} field {name}: {quoted(bytes(value))} "
                                 f"holds byte 0x{value[err.start]:02x}; expected UTF-8 text") \
                    from None
        raise


def _field(arr: np.ndarray, name: str, path: Path, what: str) -> np.ndarray:
    if name not in arr.dtype.names:
        raise InputError(f"{path}: field {name} is missing; expected {what}")
    return arr[name]


def _finite(values: np.ndarray, name: str, path: Path) -> np.ndarray:
    values = np.asarray(values, float)
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{path}: row {row + 1} field {name}: {values[row]}; "
                         "expected finite numbers")
    return values


def _image_index(idx: np.ndarray, path: Path) -> np.ndarray:
    bad = np.flatnonzero((idx < 0) | (idx >= 2 ** 31))
    if bad.size:
        raise InputError(f"{path}: row {bad[0] + 1} field blob/idx: {idx[bad[0]]}; expected a "
                         "0-based image index within its stack")
    return idx.astype(np.int64)


def _shortest(value: float) -> float:
    """The decimal a float32 field was written from (2.95, not 2.950000048)."""
    return float(str(np.float32(value)))


def _optics_groups(arr: np.ndarray, apix: np.ndarray, box: np.ndarray, path: Path):
    """Optics groups: one per exposure group and distinct pixel size, box and optics."""
    n = len(arr)
    exp_group = arr["ctf/exp_group_id"].astype(np.int64) if "ctf/exp_group_id" in arr.dtype.names \
        else np.zeros(n, np.int64)
    kv = _finite(_field(arr, "ctf/accel_kv", path, "the voltage in kV"), "ctf/accel_kv", path)
    if np.any(kv <= 0):
        row = int(np.flatnonzero(kv <= 0)[0])
        raise InputError(f"{path}: row {row + 1} field ctf/accel_kv: {kv[row]:g}; expected a "
                         "positive voltage in kV")
    cs = _finite(_field(arr, "ctf/cs_mm", path, "the spherical aberration in mm"),
                 "ctf/cs_mm", path)
    q0 = _finite(_field(arr, "ctf/amp_contrast", path, "the amplitude contrast"),
                 "ctf/amp_contrast", path)
    # A STAR carried through CryoSPARC brings its group names back.
    names = decode_strings(arr[OPTICS_NAME_FIELD], OPTICS_NAME_FIELD, path) \
        if OPTICS_NAME_FIELD in arr.dtype.names \
        else np.array([f"opticsGroup{g + 1}" for g in exp_group], object)
    name_code, name_values = pd.factorize(names)
    values = np.concatenate([np.stack([exp_group, apix, box, kv, cs, q0, name_code], axis=1),
                             aberration_columns(arr, path)], axis=1)
    # Group on rounded values, but keep each group's exact (float32) values.
    _, first, index = np.unique(np.round(values, 6), axis=0, return_index=True,
                                return_inverse=True)
    groups = [OpticsGroup(str(name_values[int(values[i, 6])]), _shortest(values[i, 1]),
                          int(values[i, 2]), _shortest(values[i, 3]), _shortest(values[i, 4]),
                          _shortest(values[i, 5]),
                          **group_aberrations(values[i, 7:], _shortest(values[i, 4]),
                                              arr[i], path))
              for i in first]
    return groups, index.reshape(-1).astype(np.int64), [int(values[i, 0]) for i in first]


def read_cs(path: str | os.PathLike, apix: float | None = None) -> ParticleSet:
    """Read a CryoSPARC particle ``.cs`` into a ParticleSet.

    Parameters
    ----------
    path : the ``.cs`` file (its stacks need not exist); a passthrough file
        beside it, as CryoSPARC exports a job, is joined by uid
        (gmmrefine.io.cs_passthrough).
    apix : pixel size in Angstrom overriding blob/psize_A (needed when absent).

    Returns
    -------
    ParticleSet with ``cs`` holding the array as read (and joined) and ``root`` unset.
    Without alignments3D/pose, ``has_pose`` is False; without
    alignments3D/split, ``half_set`` is 0.
    """
    path = Path(path)
    arr = with_passthrough(load_cs(path), path, load_cs)
    n = len(arr)
    if n == 0:
        raise InputError(f"{path}: the .cs table has no rows; expected particles")
    names = arr.dtype.names
    arrays = empty_like_arrays(n)
    blob_path = decode_strings(_field(arr, "blob/path", path, "the particle stack of each row"),
                               "blob/path", path)
    # ">" marks a project-relative path in exported jobs; it is not part of the path.
    arrays["image_path"] = pd.Series(blob_path).str.replace(r"^>", "", regex=True).to_numpy(object)
    arrays["image_index"] = _image_index(_field(arr, "blob/idx", path, "the 0-based image index"),
                                         path)
    if apix is not None:
        particle_apix = np.full(n, float(apix))
    elif "blob/psize_A" in names:
        particle_apix = _finite(arr["blob/psize_A"], "blob/psize_A", path)
    else:
        raise InputError(f"{path}: field blob/psize_A is missing; expected the pixel size "
                         "(or give it with --apix)")
    if np.any(particle_apix <= 0):
        row = int(np.flatnonzero(particle_apix <= 0)[0])
        raise InputError(f"{path}: row {row + 1} field blob/psize_A: {particle_apix[row]}; "
                         "expected a positive pixel size in A")
    box = arr["blob/shape"].reshape(n, -1)[:, -1].astype(np.int64) if "blob/shape" in names \
        else np.zeros(n, np.int64)
    groups, arrays["optics_index"], exp_groups = _optics_groups(arr, particle_apix, box, path)

    ctf = (("defocus_u_A", "ctf/df1_A", 1.0), ("defocus_v_A", "ctf/df2_A", 1.0),
           ("defocus_angle_deg", "ctf/df_angle_rad", 180 / np.pi))
    for key, name, factor in ctf:
        arrays[key] = _finite(_field(arr, name, path, "the CTF of each particle"), name, path) \
            * factor
    optional = (("phase_shift_deg", "ctf/phase_shift_rad", 180 / np.pi),
                ("bfactor_A2", "ctf/bfactor", 1.0), ("ctf_scale", "ctf/scale", 1.0))
    for key, name, factor in optional:
        if name in names:
            arrays[key] = _finite(arr[name], name, path) * factor

    has_pose = "alignments3D/pose" in names
    if has_pose:
        pose = _finite(arr["alignments3D/pose"], "alignments3D/pose", path)
        arrays["rotation"] = rotvec_to_matrix(pose)
        shift_px = _finite(_field(arr, "alignments3D/shift", path, "shifts with the poses"),
                           "alignments3D/shift", path)
        arrays["shift_A"] = shift_px * alignment_psize(arr, particle_apix)[:, None]
    if "alignments3D/split" in names:
        split = arr["alignments3D/split"].astype(np.int64)
        bad = (split != 0) & (split != 1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: row {row + 1} field alignments3D/split: {split[row]}; "
                             "expected 0 or 1")
        arrays["half_set"] = (split + 1).astype(np.int8)
    if "uid" in names:
        arrays["uid"] = arr["uid"].astype(np.uint64)
    return ParticleSet(optics=groups, has_pose=has_pose, source=path, cs=arr,
                       meta={"cs_exp_group_ids": exp_groups}, **arrays)


def alignment_psize(arr: np.ndarray, blob_apix: np.ndarray) -> np.ndarray:
    """Pixel size of the alignment's grid: alignments3D/psize_A, else the blob's (pyem #125)."""
    if arr is not None and "alignments3D/psize_A" in arr.dtype.names:
        psize = np.asarray(arr["alignments3D/psize_A"], float)
        return np.where(psize > 0, psize, blob_apix)
    return np.asarray(blob_apix, float)


def fresh_uids(ps: ParticleSet) -> np.ndarray:
    """Deterministic uids for particles that never had one.

    Seeded by a CRC of the image references, so converting the same STAR twice
    gives the same uids; redrawn until unique and non-zero.
    """
    refs = "\n".join(f"{i}@{p}" for i, p in zip(ps.image_index, ps.image_path))
    rng = np.random.default_rng(zlib.crc32(refs.encode()))
    uid = rng.integers(1, np.iinfo(np.uint64).max, size=len(ps), dtype=np.uint64)
    while len(np.unique(uid)) < len(uid):
        uid = rng.integers(1, np.iinfo(np.uint64).max, size=len(ps), dtype=np.uint64)
    return uid


def encode_strings(values: np.ndarray) -> np.ndarray:
    """str values -> fixed-bytes array as wide as the longest (UTF-8)."""
    encoded = pd.Series(values, dtype=object).str.encode("utf-8")
    width = max(1, int(encoded.str.len().max() or 1))
    return encoded.to_numpy().astype(f"S{width}")


def _blob_paths(ps: ParticleSet, base: dict) -> np.ndarray:
    new = encode_strings(ps.image_path)
    if "blob/path" not in base:
        return new
    old = base["blob/path"]
    # Keep the input's spelling (with its ">") where it names the same stack.
    same = pd.Series(decode_strings(old)).str.replace(r"^>", "", regex=True).to_numpy(object) \
        == ps.image_path
    width = max(old.dtype.itemsize, new.dtype.itemsize)
    return np.where(same, old.astype(f"S{width}"), new.astype(f"S{width}"))


def particles_to_cs_array(ps: ParticleSet) -> np.ndarray:
    """The ``.cs`` array for ``ps``: its passthrough fields with canonical fields overwritten.

    ``ps.cs`` (a CryoSPARC file, or the fields particles_io carries from a
    STAR) supplies every field gmmrefine does not own, in its order and
    dtypes. A base without blob/path is not CryoSPARC's own, so the fields
    CryoSPARC's import writes are added (realcs/empiar_10076_7.cs).
    """
    n = len(ps)
    base = {name: ps.cs[name] for name in ps.cs.dtype.names} \
        if ps.cs is not None and len(ps.cs) == n else {}
    from_cryosparc = "blob/path" in base
    fields: dict[str, np.ndarray] = {}
    apix = ps.apix

    def optics(attr: str) -> np.ndarray:
        return np.array([getattr(o, attr) for o in ps.optics], float)[ps.optics_index]

    def f4(values: np.ndarray, name: str) -> np.ndarray:
        return _float32(values, name, ps.source)

    uid = ps.uid.astype(np.uint64)
    if np.any(uid == 0):
        uid = np.where(uid == 0, fresh_uids(ps), uid)
    fields["uid"] = uid
    fields["blob/path"] = _blob_paths(ps, base)
    fields["blob/idx"] = ps.image_index.astype("<u4")
    fields["blob/shape"] = np.repeat(ps.box.astype("<u4")[:, None], 2, axis=1)
    fields["blob/psize_A"] = f4(apix, "blob/psize_A")
    fields["ctf/exp_group_id"] = base.get("ctf/exp_group_id", ps.optics_index.astype("<u4"))
    fields["ctf/accel_kv"] = f4(optics("voltage_kv"), "ctf/accel_kv")
    fields["ctf/cs_mm"] = f4(optics("cs_mm"), "ctf/cs_mm")
    fields["ctf/amp_contrast"] = f4(optics("amp_contrast"), "ctf/amp_contrast")
    fields["ctf/df1_A"] = f4(ps.defocus_u_A, "ctf/df1_A")
    fields["ctf/df2_A"] = f4(ps.defocus_v_A, "ctf/df2_A")
    fields["ctf/df_angle_rad"] = f4(np.radians(ps.defocus_angle_deg), "ctf/df_angle_rad")
    fields["ctf/phase_shift_rad"] = f4(np.radians(ps.phase_shift_deg), "ctf/phase_shift_rad")
    fields["ctf/scale"] = f4(ps.ctf_scale, "ctf/scale")
    if "ctf/bfactor" in base or not from_cryosparc or np.any(ps.bfactor_A2 != 0):
        fields["ctf/bfactor"] = f4(ps.bfactor_A2, "ctf/bfactor")
    if not from_cryosparc:
        fields.update({name: values for name, values in aberration_fields(ps).items()
                       if name not in base})
        for name, dtype, shape, value in _IMPORT_DEFAULTS:
            if name not in base and name not in fields:
                fields[name] = np.full((n, *shape), value, dtype=dtype)
    if np.all((ps.half_set == 1) | (ps.half_set == 2)):
        fields["alignments3D/split"] = (ps.half_set - 1).astype("<u4")
    if ps.has_pose:
        psize = alignment_psize(ps.cs if base else None, apix)
        fields["alignments3D/pose"] = f4(matrix_to_rotvec(ps.rotation), "alignments3D/pose")
        fields["alignments3D/shift"] = f4(ps.shift_A / psize[:, None], "alignments3D/shift")
        fields["alignments3D/psize_A"] = f4(psize, "alignments3D/psize_A")
    if from_cryosparc:
        merged = {**base, **fields}     # CryoSPARC's own order, new fields last
    else:
        merged = {**base, **fields}
        leading = [k for k in _ORDER if k in merged]
        merged = {k: merged[k] for k in leading + [k for k in merged if k not in leading]}
    return structured_array(merged)


def _float32(values: np.ndarray, name: str, source) -> np.ndarray:
    """``values`` as the float32 of a .cs field; InputError at a row float32 cannot hold."""
    values = np.asarray(values, float)
    with np.errstate(over="ignore", invalid="ignore"):
        out = values.astype("<f4")
    lost = (np.isfinite(values) & ~np.isfinite(out)).reshape(len(values), -1).any(axis=1)
    if lost.any():
        row = int(np.flatnonzero(lost)[0])
        shown = ", ".join(f"{v:g}" for v in np.ravel(values[row]))
        raise InputError(f"{source}: row {row + 1}: {name} would be {shown} (from the input's "
                         "values), beyond float32; expected |x| <= 3.4e38")
    return out


def structured_array(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Assemble named columns (first axis = rows) into one structured array."""
    n = len(next(iter(columns.values())))
    dtype = [(name, values.dtype, values.shape[1:]) for name, values in columns.items()]
    out = np.zeros(n, dtype=dtype)
    for name, values in columns.items():
        out[name] = values
    return out


def write_cs(ps: ParticleSet, path: str | os.PathLike) -> None:
    """Write ``ps`` as a CryoSPARC ``.cs`` file (atomic); every passthrough field survives."""
    save_cs(path, particles_to_cs_array(ps))
