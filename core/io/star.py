"""RELION STAR particle files <-> ParticleSet.

Both families are read: RELION 3.1+ (``data_optics`` + ``data_particles``,
origins in Angstrom) and the single-table RELION 3.0 layout (origins in
pixels, optics columns on every particle). A file is written back in the
family it came from; anything converted from CryoSPARC is written as 3.1.

Tables go through the ``starfile`` package with two precautions: it turns
numeric-looking strings into numbers (a micrograph called ``0001`` would
become 1), so every string label is read as ``str``; and its default float
format (6 decimals) is replaced by 10 significant digits, enough for angles
to round-trip to 1e-6 degree. Reading goes through :mod:`.star_tables`,
which checks the text first and keeps starfile's line cache from serving a
file as it was (a malformed file is one line naming its line).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from .. import __version__
from ..data.particles import OpticsGroup, ParticleSet, empty_like_arrays
from ..data.rotations import euler_to_matrix, matrix_to_euler
from ..errors import InputError, quoted
from . import star_tables
from .atomic import atomic_path
from .star_optics import beam_tilt_30, with_optics_columns, write_optics_columns

# Labels RELION stores as strings (metadata_label.h, EMDL_STRING) that users
# meet in particle files; anything named ...Name is treated the same way.
STRING_LABELS = frozenset({
    "rlnImageName", "rlnMicrographName", "rlnGroupName", "rlnOpticsGroupName",
    "rlnOriginalParticleName", "rlnMicrographMovieName", "rlnCtfImage",
    "rlnReferenceImage", "rlnMicrographMetadata", "rlnMtfFileName",
    "rlnMicrographGainName", "rlnMicrographDefectFile", "rlnCtfPowerSpectrum",
    "rlnMaskName", "rlnTomoName", "rlnTomoParticleName", "rlnOddZernike", "rlnEvenZernike",
})

# CryoSPARC fields carried through a STAR file (particles_io, docs/conventions.md)
# live in columns named "cs:<field>:<dtype>[:<shape>:<flat index>]"; their
# text must reach the decoder untouched.
CS_LABEL_PREFIX = "cs:"
UID_LABEL = "cs:uid:u8"

ANGLE_LABELS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
ORIGIN_A_LABELS = ("rlnOriginXAngst", "rlnOriginYAngst")
ORIGIN_PX_LABELS = ("rlnOriginX", "rlnOriginY")
# Optics columns as 3.1 keeps them per group and 3.0 per particle.
OPTICS_LABELS = ("rlnOpticsGroup", "rlnOpticsGroupName", "rlnImagePixelSize", "rlnImageSize",
                 "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast")
PIXEL_SIZE_30_LABELS = ("rlnPixelSize", "rlnMagnification", "rlnDetectorPixelSize")
_CTF_LABELS = ("rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle", "rlnPhaseShift",
               "rlnCtfBfactor", "rlnCtfScalefactor")

FLOAT_FORMAT = "%.10g"
# Column order for tables gmmrefine starts itself (RELION's habitual order).
_LEADING = ("rlnImageName", "rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY",
            *ANGLE_LABELS, *ORIGIN_A_LABELS, *ORIGIN_PX_LABELS, *_CTF_LABELS,
            "rlnOpticsGroup", "rlnRandomSubset", "rlnClassNumber", "rlnGroupName")


def canonical_particle_labels(has_pose: bool) -> frozenset[str]:
    """Particle-table labels whose meaning ParticleSet holds (all others are passthrough).

    Angles and origins count only when the set has a pose; otherwise (e.g. a
    2D classification with psi only) they are carried untouched.
    """
    labels = {"rlnImageName", "rlnRandomSubset", UID_LABEL, *_CTF_LABELS,
              *OPTICS_LABELS, *PIXEL_SIZE_30_LABELS}
    if has_pose:
        labels |= {*ANGLE_LABELS, *ORIGIN_A_LABELS, *ORIGIN_PX_LABELS}
    return frozenset(labels)


def is_string_label(label: str) -> bool:
    """Whether a column must be read as text, never as a number."""
    return label in STRING_LABELS or label.endswith("Name") or label.startswith(CS_LABEL_PREFIX)


# --- tables ---------------------------------------------------------------------------

def read_star_tables(path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Every data block of a STAR file as a DataFrame, string labels kept as ``str``.

    Key-value blocks come back as one-row DataFrames; a malformed file is one
    InputError naming its line (:mod:`.star_tables`).
    """
    return star_tables.read_star_tables(Path(path), as_string=is_string_label)


def write_star_tables(path: str | os.PathLike, tables: dict[str, pd.DataFrame]) -> None:
    """Write data blocks as loops, through a temporary file.

    The same tables give the same bytes: the STAR library's first line names
    the time of writing, so it is replaced by one naming the writer. A resumed
    run that writes its outputs again then leaves files (and the content
    hashes later stages record of them) unchanged.
    """
    with atomic_path(path) as tmp:
        starfile.write(tables, tmp, float_format=FLOAT_FORMAT, sep="\t")
        text = tmp.read_text()
        first, _, rest = text.partition("\n")
        if first.startswith("# Created by the starfile"):
            tmp.write_text(f"# Written by gmmrefine {__version__}\n{rest}")


# --- reading particles ----------------------------------------------------------------

def parse_image_names(names: pd.Series, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """"N@stack" -> (stack path, N - 1); a bare path is image 0 of a single-image file."""
    # starfile reads "nan" as a missing value, whatever the column's type.
    missing = names.isna().to_numpy()
    text = names.astype(object).where(~missing, "").astype(str)
    before, at, after = (text.str.partition("@")[i] for i in range(3))
    has_at = (at == "@").to_numpy()
    number = pd.to_numeric(before.where(has_at, "1"), errors="coerce").to_numpy(float)
    stack = np.where(has_at, after.to_numpy(object), before.to_numpy(object))
    with np.errstate(invalid="ignore"):
        bad = ~((number >= 1) & (number < 2 ** 31) & (number == np.round(number))) \
            | (pd.Series(stack).str.len().to_numpy() == 0) | missing
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = "nan (starfile reads it as a missing value)" if missing[row] \
            else _shown(names.iloc[row])
        raise InputError(f"{path}: row {row + 1} column _rlnImageName: {shown}; expected "
                         "'N@stack' with N >= 1 (or a bare image path)")
    return stack.astype(object), number.astype(np.int64) - 1


# What a column must hold: a test on its float64 values and the words for it.
# Numbers beyond float32's range are corruption, not data: .cs fields and
# every image computation are float32.
_F32_MAX = float(np.finfo(np.float32).max)
_KINDS = {
    "number": (lambda v: np.abs(v) <= _F32_MAX, "a finite number"),
    "positive": (lambda v: (v > 0) & (v <= _F32_MAX), "a positive number"),
    "integer": (lambda v: (v == np.round(v)) & (np.abs(v) < 2 ** 31), "a whole number"),
    "count": (lambda v: (v == np.round(v)) & (v >= 0) & (v < 2 ** 31), "a whole number >= 0"),
}


def _shown(raw) -> str:
    if isinstance(raw, str):
        return quoted(raw)
    text = str(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _numeric(df: pd.DataFrame, label: str, path: Path, default=None,
             table: str = "the particle table", kind: str = "number") -> np.ndarray:
    """A numeric column as float64, with the first bad row named in the error.

    ``kind`` is what every value must be: "number" (finite), "positive",
    "integer" or "count" (a whole number >= 0).
    """
    if label not in df.columns:
        if default is None:
            raise InputError(f"{path}: column _{label} is missing; expected it in {table}")
        return np.full(len(df), float(default))
    values = pd.to_numeric(df[label], errors="coerce").to_numpy(float)
    test, expected = _KINDS[kind]
    with np.errstate(invalid="ignore"):
        bad = ~test(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        where = "" if table == "the particle table" else f"{table} "
        if kind in ("number", "positive") and np.isfinite(values[row]) \
                and abs(values[row]) > _F32_MAX:
            expected += " within float32's range (|x| <= 3.4e38)"
        raise InputError(f"{path}: {where}row {row + 1} column _{label}: "
                         f"{_shown(df[label].iloc[row])}; expected {expected}")
    return values


def _particle_table(tables: dict[str, pd.DataFrame], path: Path) -> tuple[str, pd.DataFrame]:
    if "particles" in tables:
        return "particles", tables["particles"]
    for name, table in tables.items():
        if name != "optics" and "rlnImageName" in table.columns:
            return name, table
    raise InputError(f"{path}: no particle table; expected a data_particles block "
                     "(RELION 3.1) or a loop with _rlnImageName (RELION 3.0)")


def _optics_31(optics: pd.DataFrame, particles: pd.DataFrame, path: Path):
    """Optics groups from a 3.1 optics table and each particle's index into it."""
    def column(label: str, default=None, kind: str = "number") -> np.ndarray:
        return _numeric(optics, label, path, default, table="data_optics", kind=kind)

    numbers = column("rlnOpticsGroup", kind="integer").astype(np.int64)
    apix = column("rlnImagePixelSize", kind="positive")
    box = column("rlnImageSize", default=0, kind="count").astype(np.int64)
    kv = column("rlnVoltage", kind="positive")
    cs = column("rlnSphericalAberration")
    q0 = column("rlnAmplitudeContrast")
    names = (optics["rlnOpticsGroupName"].astype(str).to_numpy() if "rlnOpticsGroupName"
             in optics.columns else [f"opticsGroup{n}" for n in numbers])
    groups = with_optics_columns(
        [OpticsGroup(str(names[i]), float(apix[i]), int(box[i]), float(kv[i]), float(cs[i]),
                     float(q0[i])) for i in range(len(optics))], optics, path)
    lookup = pd.Series(np.arange(len(numbers)), index=numbers)
    if lookup.index.has_duplicates:
        raise InputError(f"{path}: data_optics column _rlnOpticsGroup repeats a number; "
                         "expected one row per group")
    particle_groups = _numeric(particles, "rlnOpticsGroup", path, kind="integer") \
        .astype(np.int64)
    index = lookup.reindex(particle_groups).to_numpy()
    unknown = pd.isna(index)
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise InputError(f"{path}: row {row + 1} column _rlnOpticsGroup: group "
                         f"{particle_groups[row]} is not in data_optics (groups "
                         f"{sorted(numbers.tolist())})")
    return groups, index.astype(np.int64)


def _apix_30(particles: pd.DataFrame, path: Path) -> np.ndarray:
    for label in ("rlnImagePixelSize", "rlnPixelSize"):
        if label in particles.columns:
            return _numeric(particles, label, path, kind="positive")
    if "rlnDetectorPixelSize" in particles.columns and "rlnMagnification" in particles.columns:
        # RELION 3.0: pixel size = detector pixel (micrometre) / magnification.
        detector = _numeric(particles, "rlnDetectorPixelSize", path, kind="positive")
        magnification = _numeric(particles, "rlnMagnification", path, kind="positive")
        with np.errstate(over="ignore", under="ignore"):
            apix = 1e4 * detector / magnification
        bad = np.flatnonzero(~((apix > 0) & (apix <= _F32_MAX)))
        if bad.size:
            raise InputError(f"{path}: row {bad[0] + 1}: pixel size 1e4 * _rlnDetectorPixelSize "
                             f"/ _rlnMagnification = {apix[bad[0]]:g} A; expected a positive "
                             "number within float32's range")
        return apix
    raise InputError(f"{path}: no pixel size; expected _rlnImagePixelSize, _rlnPixelSize or "
                     "_rlnDetectorPixelSize with _rlnMagnification (RELION 3.0 STAR)")


def _optics_30(particles: pd.DataFrame, path: Path):
    """Optics groups of a 3.0 table: one per distinct set of per-particle optics values."""
    apix = _apix_30(particles, path)
    box = _numeric(particles, "rlnImageSize", path, default=0, kind="count")
    kv = _numeric(particles, "rlnVoltage", path, kind="positive")
    cs = _numeric(particles, "rlnSphericalAberration", path)
    q0 = _numeric(particles, "rlnAmplitudeContrast", path)
    # 3.0 kept beam tilt per particle; 3.1 makes it a property of the optics group.
    values = np.concatenate([np.stack([apix, box, kv, cs, q0], axis=1),
                             beam_tilt_30(particles, path)], axis=1)
    # Group on rounded values (text noise), but keep each group's exact values.
    _, first, index = np.unique(np.round(values, 6), axis=0, return_index=True,
                                return_inverse=True)
    groups = [OpticsGroup(f"opticsGroup{g + 1}", float(values[i, 0]), int(values[i, 1]),
                          float(values[i, 2]), float(values[i, 3]), float(values[i, 4]),
                          beam_tilt_mrad=(float(values[i, 5]), float(values[i, 6])))
              for g, i in enumerate(first)]
    return groups, index.reshape(-1).astype(np.int64)


def read_star(path: str | os.PathLike) -> ParticleSet:
    """Read a RELION 3.0 or 3.1+ particle STAR file into a ParticleSet.

    Parameters
    ----------
    path : STAR file.

    Returns
    -------
    ParticleSet with ``star_particles`` / ``star_optics`` holding the tables as
    read, ``meta["star_style"]`` "3.1" or "3.0", and ``root`` left unset (the
    caller decides where image paths resolve). A group without
    rlnImageSize gets box 0.
    """
    path = Path(path)
    tables = read_star_tables(path)
    block, particles = _particle_table(tables, path)
    if len(particles) == 0:
        raise InputError(f"{path}: data_{block} has no particle rows")
    if "rlnImageName" not in particles.columns:
        raise InputError(f"{path}: column _rlnImageName is missing; expected it in data_{block}")
    short = particles[particles.columns[-1]].isna().to_numpy()
    if short.any():
        row = int(np.flatnonzero(short)[0])
        raise InputError(f"{path}: row {row + 1} of data_{block} has no value for its last "
                         f"column _{particles.columns[-1]}; expected "
                         f"{len(particles.columns)} values per row")
    style = "3.1" if "optics" in tables else "3.0"
    if style == "3.1":
        optics_table = tables["optics"]
        groups, optics_index = _optics_31(optics_table, particles, path)
    else:
        optics_table = None
        groups, optics_index = _optics_30(particles, path)
    apix = np.array([g.apix for g in groups])[optics_index]

    arrays = empty_like_arrays(len(particles))
    arrays["image_path"], arrays["image_index"] = parse_image_names(particles["rlnImageName"], path)
    arrays["optics_index"] = optics_index
    arrays["defocus_u_A"] = _numeric(particles, "rlnDefocusU", path)
    arrays["defocus_v_A"] = _numeric(particles, "rlnDefocusV", path)
    arrays["defocus_angle_deg"] = _numeric(particles, "rlnDefocusAngle", path, default=0)
    arrays["phase_shift_deg"] = _numeric(particles, "rlnPhaseShift", path, default=0)
    arrays["bfactor_A2"] = _numeric(particles, "rlnCtfBfactor", path, default=0)
    arrays["ctf_scale"] = _numeric(particles, "rlnCtfScalefactor", path, default=1)

    has_pose = all(label in particles.columns for label in ANGLE_LABELS)
    if has_pose:
        angles = [_numeric(particles, label, path) for label in ANGLE_LABELS]
        arrays["rotation"] = euler_to_matrix(*angles)
        if all(label in particles.columns for label in ORIGIN_A_LABELS):
            arrays["shift_A"] = np.stack([_numeric(particles, lab, path)
                                          for lab in ORIGIN_A_LABELS], axis=1)
        elif all(label in particles.columns for label in ORIGIN_PX_LABELS):
            arrays["shift_A"] = np.stack([_numeric(particles, lab, path) * apix
                                          for lab in ORIGIN_PX_LABELS], axis=1)
    if "rlnRandomSubset" in particles.columns:
        half = _numeric(particles, "rlnRandomSubset", path)
        bad = (half != 1) & (half != 2)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: row {row + 1} column _rlnRandomSubset: {half[row]:g}; "
                             "expected 1 or 2")
        arrays["half_set"] = half.astype(np.int8)
    if UID_LABEL in particles.columns:
        try:
            arrays["uid"] = particles[UID_LABEL].astype(np.uint64).to_numpy()
        except (ValueError, OverflowError):
            raise InputError(f"{path}: column _{UID_LABEL} holds a value that is not a "
                             "64-bit unsigned integer") from None
    return ParticleSet(optics=groups, has_pose=has_pose, source=path,
                       star_particles=particles, star_optics=optics_table,
                       meta={"star_style": style, "star_block": block}, **arrays)


# --- writing particles ----------------------------------------------------------------

def _image_names(ps: ParticleSet, original: pd.Series | None) -> np.ndarray:
    names = np.array([f"{i + 1:06d}@{p}" for i, p in zip(ps.image_index, ps.image_path)],
                     dtype=object)
    if original is not None:
        # Keep the user's own spelling ("1@x.mrcs", a bare path) where it means the same image.
        try:
            old_path, old_index = parse_image_names(original, ps.source or Path("?"))
        except InputError:
            return names
        same = (old_index == ps.image_index) & (old_path == ps.image_path)
        names[same] = original.to_numpy(object)[same]
    return names


def _optics_table(ps: ParticleSet) -> tuple[pd.DataFrame, np.ndarray]:
    g = len(ps.optics)
    opt = ps.star_optics
    if opt is not None and len(opt) == g:
        opt = opt.reset_index(drop=True).copy()
        numbers = pd.to_numeric(opt["rlnOpticsGroup"]).to_numpy(np.int64) \
            if "rlnOpticsGroup" in opt.columns else np.arange(1, g + 1)
    else:
        opt = pd.DataFrame(index=range(g))
        numbers = np.arange(1, g + 1)
    opt["rlnOpticsGroupName"] = [o.name for o in ps.optics]
    opt["rlnOpticsGroup"] = numbers
    opt["rlnImagePixelSize"] = np.array([o.apix for o in ps.optics], float)
    boxes = np.array([o.box for o in ps.optics], np.int64)
    if np.all(boxes > 0):         # 0 = unknown (no size in the input, no stack to read it)
        opt["rlnImageSize"] = boxes
    opt["rlnVoltage"] = np.array([o.voltage_kv for o in ps.optics], float)
    opt["rlnSphericalAberration"] = np.array([o.cs_mm for o in ps.optics], float)
    opt["rlnAmplitudeContrast"] = np.array([o.amp_contrast for o in ps.optics], float)
    if "rlnImageDimensionality" not in opt.columns:
        opt["rlnImageDimensionality"] = np.full(g, 2, np.int64)
    write_optics_columns(opt, ps.optics)
    return opt, numbers


def _as_30_table(df: pd.DataFrame, ps: ParticleSet) -> pd.DataFrame:
    """RELION 3.0 layout: origins in pixels, optics values on every particle."""
    apix = ps.apix
    if ps.has_pose:
        df = df.drop(columns=[c for c in ORIGIN_A_LABELS if c in df.columns])
        df["rlnOriginX"] = ps.shift_A[:, 0] / apix
        df["rlnOriginY"] = ps.shift_A[:, 1] / apix
    df = df.drop(columns=[c for c in ("rlnOpticsGroup", "rlnOpticsGroupName") if c in df.columns])
    if "rlnPixelSize" in df.columns or "rlnImagePixelSize" in df.columns:
        for label in ("rlnPixelSize", "rlnImagePixelSize"):
            if label in df.columns:
                df[label] = apix
    else:
        # 3.0 spells the pixel size as detector pixel (um) / magnification: keep
        # the user's detector pixel and adjust the magnification (RELION's own
        # default pair is 10000 and the pixel size).
        det = df["rlnDetectorPixelSize"].to_numpy(float) if "rlnDetectorPixelSize" in df \
            else apix.copy()
        df["rlnDetectorPixelSize"] = det
        df["rlnMagnification"] = 1e4 * det / apix
    for label, attr in (("rlnVoltage", "voltage_kv"), ("rlnSphericalAberration", "cs_mm"),
                        ("rlnAmplitudeContrast", "amp_contrast")):
        df[label] = np.array([getattr(o, attr) for o in ps.optics], float)[ps.optics_index]
    if "rlnImageSize" in df.columns and np.all(ps.box > 0):
        df["rlnImageSize"] = ps.box
    return df


def particles_to_star_tables(ps: ParticleSet) -> dict[str, pd.DataFrame]:
    """The STAR tables for ``ps``: its passthrough tables with canonical columns overwritten.

    Written as RELION 3.0 only when ``ps.meta["star_style"] == "3.0"``.
    """
    n = len(ps)
    style = ps.meta.get("star_style", "3.1")
    base = ps.star_particles
    df = base.reset_index(drop=True).copy() if base is not None and len(base) == n \
        else pd.DataFrame(index=range(n))
    own_table = "rlnImageName" in df.columns
    df["rlnImageName"] = _image_names(ps, df["rlnImageName"] if "rlnImageName" in df else None)
    if ps.has_pose:
        angles = matrix_to_euler(ps.rotation)
        for k, label in enumerate(ANGLE_LABELS):
            df[label] = angles[:, k]
    df["rlnDefocusU"] = ps.defocus_u_A
    df["rlnDefocusV"] = ps.defocus_v_A
    df["rlnDefocusAngle"] = ps.defocus_angle_deg
    df["rlnPhaseShift"] = ps.phase_shift_deg
    df["rlnCtfBfactor"] = ps.bfactor_A2
    if "rlnCtfScalefactor" in df.columns or np.any(ps.ctf_scale != 1):
        df["rlnCtfScalefactor"] = ps.ctf_scale
    if np.all((ps.half_set == 1) | (ps.half_set == 2)):
        df["rlnRandomSubset"] = ps.half_set.astype(np.int64)
    if np.any(ps.uid != 0):
        df[UID_LABEL] = ps.uid.astype(np.uint64)

    if style == "3.0":
        df = _as_30_table(df, ps)
        return {ps.meta.get("star_block", ""): df if own_table else _leading_first(df)}

    if ps.has_pose:
        df = df.drop(columns=[c for c in ORIGIN_PX_LABELS if c in df.columns])
        df["rlnOriginXAngst"] = ps.shift_A[:, 0]
        df["rlnOriginYAngst"] = ps.shift_A[:, 1]
    # Per-particle optics belong to the optics table in 3.1.
    df = df.drop(columns=[c for c in ("rlnVoltage", "rlnSphericalAberration",
                                      "rlnAmplitudeContrast", "rlnImageSize",
                                      "rlnImagePixelSize", "rlnOpticsGroupName",
                                      *PIXEL_SIZE_30_LABELS) if c in df.columns])
    optics, numbers = _optics_table(ps)
    df["rlnOpticsGroup"] = numbers[ps.optics_index]
    return {"optics": optics, "particles": df if own_table else _leading_first(df)}


def _leading_first(df: pd.DataFrame) -> pd.DataFrame:
    """RELION's usual columns first, carried ones after, for a table built here."""
    leading = [c for c in _LEADING if c in df.columns]
    return df[leading + [c for c in df.columns if c not in leading]]


def write_star(ps: ParticleSet, path: str | os.PathLike) -> None:
    """Write ``ps`` as a RELION particle STAR file (atomic).

    Every passthrough column in ``ps.star_particles`` / ``ps.star_optics``
    survives; canonical columns (image name, pose, origin, CTF, optics group,
    random subset) are overwritten from ``ps``.
    """
    tables = particles_to_star_tables(ps)
    star_tables.check_writable(tables, ps.source)
    write_star_tables(path, tables)
