"""Particle files of either host, by suffix: ``.star`` (RELION) or ``.cs`` (CryoSPARC).

Reading picks the directory image paths resolve against; writing in the
format a set came from starts from its own table, and writing across
formats carries every column the other format has no meaning for, so that
STAR -> .cs -> STAR and .cs -> STAR -> .cs lose nothing
(docs/conventions.md, "Passthrough"):

- a STAR column becomes the .cs field ``rln/<label>`` (an optics-table
  column ``rlnOptics/<label>``, per particle);
- a .cs field becomes the STAR column ``cs:<field>:<dtype>`` (vectors: one
  column per element, ``cs:<field>:<dtype>:<shape>:<flat index>``), which
  RELION 3.1 keeps untouched as an unknown label;
- rlnMicrographName <-> location/micrograph_path and, with poses,
  rlnClassNumber <-> alignments3D/class + 1 are translated instead.

Image paths are written so that the stacks are found from the project
directory, which RELION runs every job in and gmmrefine looks in first
(:func:`host_image_paths`): a written file works wherever it is written.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.optics import describe_aberrations
from ..data.particles import ParticleSet
from ..errors import InputError, quoted
from . import cs as cs_io
from . import star as star_io
from .mrc_header import read_mrc_header
from .star_optics import load_mtfs

SUFFIXES = (".star", ".cs")
_STAR_OPTICS_OWN = frozenset(star_io.OPTICS_LABELS) - {"rlnOpticsGroupName"}


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InputError(f"{path}: unknown particle file type {path.suffix!r}; "
                         "expected .star (RELION) or .cs (CryoSPARC)")
    return suffix


# --- reading ----------------------------------------------------------------------------

def read_particles(path: str | os.PathLike, root: str | os.PathLike | None = None,
                   apix: float | None = None) -> ParticleSet:
    """Read a RELION ``.star`` or CryoSPARC ``.cs`` particle file.

    Parameters
    ----------
    path : the particle file; its stacks need not exist.
    root : directory image paths resolve against. Default: for STAR the
        working directory (RELION's project directory) if the first stack is
        found there, else the STAR's directory, else the nearest directory
        above it that has the stack (the project of a job's STAR, or of one
        written deeper); for ``.cs`` the project directory (the parent of the
        job directory holding the file), else the file's directory, else the
        working directory, else a directory further up, whichever finds the
        first stack (the project directory when none does).
    apix : pixel size (A) overriding a ``.cs`` file's blob/psize_A.

    Returns
    -------
    ParticleSet with ``root`` set.
    """
    path = Path(path)
    if _suffix(path) == ".star":
        ps = star_io.read_star(path)
        # RELION resolves against the project directory it runs in; a STAR of a job
        # (Project/Refine3D/job010/run_data.star) has that directory two levels up.
        candidates = [Path.cwd(), path.parent, *path.absolute().parents[1:]]
        fallback = path.parent
    else:
        ps = cs_io.read_cs(path, apix=apix)
        candidates = [path.parent.parent, path.parent, Path.cwd(),
                      *path.absolute().parents[2:]]
        fallback = path.parent.parent
    ps.root = Path(root) if root is not None else _find_root(ps, candidates, fallback)
    _fill_missing_box(ps)
    load_mtfs(ps.optics, ps.star_optics, ps.root, path, star_io.read_star_tables)
    return ps


def _find_root(ps: ParticleSet, candidates: list[Path], fallback: Path) -> Path:
    first = Path(ps.image_path[0])
    if first.is_absolute():
        return fallback
    for directory in candidates:
        if (directory / first).exists():
            return directory
    return fallback


def _fill_missing_box(ps: ParticleSet) -> None:
    """Box from the stack header for groups whose file did not state it.

    Conversion never needs the stacks, so where they are absent too the box
    stays 0 (unknown): writers then leave the image size out and commands
    that need it refuse the set.
    """
    for g, group in enumerate(ps.optics):
        if group.box > 0:
            continue
        members = np.flatnonzero(ps.optics_index == g)
        stack = ps.resolve_image_path(int(members[0])) if len(members) else None
        if stack is not None and stack.is_file():
            where = f" (particle row {members[0] + 1} of {ps.source})"
            group.box = read_mrc_header(stack, "image stack", where).nx


def require_poses(ps: ParticleSet) -> None:
    """Refuse a set without 3D poses, naming the file and what is missing.

    Conversion accepts such sets; refinement and reconstruction need poses.
    """
    if ps.has_pose:
        return
    if ps.cs is not None:
        missing = "fields alignments3D/pose and alignments3D/shift"
        if any(name.startswith("alignments2D/") for name in ps.cs.dtype.names):
            missing += " (it has alignments2D only: a 2D classification)"
    else:
        missing = "columns _rlnAngleRot, _rlnAngleTilt, _rlnAnglePsi"
    raise InputError(f"{ps.source}: no 3D poses; expected {missing} from a 3D refinement")


def describe(ps: ParticleSet) -> str:
    """One line: particle count, half-set balance, optics groups, whether poses are known."""
    n1, n2 = ps.split_balance()
    if n1 + n2 == 0:
        halves = "no half split"
    elif n1 == 0 or n2 == 0:
        halves = f"halves {n1}/{n2} (degenerate: refinement would refuse it)"
    else:
        halves = f"halves {n1}/{n2}"
    groups = ", ".join(f"{g.name} {g.apix:.4g} A box {g.box or 'unknown'}"
                       + (f" ({extra})" if (extra := describe_aberrations(g)) else "")
                       for g in ps.optics)
    poses = "poses present" if ps.has_pose else "poses absent"
    return f"{len(ps)} particles, {halves}, {len(ps.optics)} optics group(s) [{groups}], {poses}"


# --- writing ----------------------------------------------------------------------------

def host_image_paths(ps: ParticleSet, project_dir: str | os.PathLike) -> np.ndarray:
    """The image path of each particle as a file written for the hosts should hold it.

    RELION reads image paths relative to its project directory, the working
    directory of every job, whatever directory the STAR file is in. So a path
    that already names the stack from ``project_dir`` is kept as it is; a
    stack found elsewhere (through ``ps.root``) is named relative to
    ``project_dir`` when it lies below it, else by its absolute path. Paths
    whose stack does not exist are kept: conversion needs no stacks, and there
    is nothing to point at.
    """
    paths = np.asarray(ps.image_path, dtype=object)
    if ps.root is None:
        return paths
    project = Path(os.path.abspath(project_dir))
    # One decision per stack, not per particle (10^6 particles share 10^3 stacks).
    codes, names = pd.factorize(paths)
    return np.array([_host_path(name, ps.root, project) for name in names], object)[codes]


def _host_path(name: str, root: Path, project: Path) -> str:
    stack = root / name
    if Path(name).is_absolute() or not stack.is_file():
        return name
    if (project / name).is_file() and os.path.samefile(project / name, stack):
        return name
    # abspath, not resolve: a project's symlinked folders (movies/, say) stay as they are.
    full = os.path.abspath(stack)
    relative = os.path.relpath(full, project)
    outside = relative == os.pardir or relative.startswith(os.pardir + os.sep)
    return full if outside else relative


def write_particles(ps: ParticleSet, path: str | os.PathLike, *,
                    project_dir: str | os.PathLike | None = None) -> None:
    """Write ``ps`` as ``.star`` or ``.cs`` by suffix (atomic), keeping every column.

    In the format ``ps`` came from, its own table is the starting point and
    only canonical fields are overwritten; across formats the other format's
    columns are carried (module docstring). Image paths name the stacks from
    ``project_dir`` (default: the working directory, RELION's project
    directory; :func:`host_image_paths`).
    """
    path = Path(path)
    paths = host_image_paths(ps, Path.cwd() if project_dir is None else project_dir)
    if not np.array_equal(paths, ps.image_path):
        ps = dataclasses.replace(ps, image_path=paths)
    if _suffix(path) == ".star":
        if ps.star_particles is None and ps.cs is not None:
            particles, optics = cs_fields_as_star(ps)
            ps = dataclasses.replace(ps, star_particles=particles, star_optics=optics, cs=None,
                                     meta={**ps.meta, "star_style": "3.1"})
        star_io.write_star(ps, path)
    else:
        if ps.cs is None and ps.star_particles is not None:
            ps = dataclasses.replace(ps, cs=star_columns_as_cs(ps))
        cs_io.write_cs(ps, path)


# --- the passthrough codec --------------------------------------------------------------

def cs_label(name: str, dtype: np.dtype, shape: tuple = (), flat_index: int | None = None) -> str:
    """STAR column label carrying .cs field ``name`` (or one element of it)."""
    code = np.dtype(dtype).str.lstrip("<>|=")
    if not shape:
        return f"{star_io.CS_LABEL_PREFIX}{name}:{code}"
    return f"{star_io.CS_LABEL_PREFIX}{name}:{code}:{'x'.join(map(str, shape))}:{flat_index}"


def parse_cs_label(label: str) -> tuple[str, np.dtype, tuple, int | None] | None:
    """Inverse of :func:`cs_label`; None for a label that is not one."""
    if not label.startswith(star_io.CS_LABEL_PREFIX):
        return None
    parts = label[len(star_io.CS_LABEL_PREFIX):].split(":")
    if not parts[0]:
        return None                 # no field name: carried as an ordinary STAR column
    try:
        dtype = np.dtype(parts[1])
        if dtype.kind not in "biufS" or dtype.itemsize == 0:
            return None             # not a type cs_label writes (an object would be pickled)
        if len(parts) == 2:
            return parts[0], dtype, (), None
        if len(parts) == 4:
            return parts[0], dtype, tuple(int(s) for s in parts[2].split("x")), int(parts[3])
    except (TypeError, ValueError, IndexError):
        return None
    return None


def _text(values: np.ndarray, name: str, source) -> np.ndarray:
    """.cs values for a STAR column that gives them back exactly.

    float32 survives the writer's 10 significant digits (9 suffice); float64
    needs its shortest round-trip text; integers and bytes are exact as they are.
    """
    if values.dtype.kind == "S":
        return cs_io.decode_strings(values, name, source)
    if values.dtype.kind == "f" and values.dtype.itemsize > 4:
        return np.array([repr(v) for v in values.tolist()], dtype=object)
    return values


def _star_values(values: np.ndarray, name: str, source) -> np.ndarray:
    """A carried .cs field as a STAR column (bytes -> str)."""
    return cs_io.decode_strings(values, name, source) if values.dtype.kind == "S" else values


def cs_fields_as_star(ps: ParticleSet) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Particle and optics tables carrying the .cs fields ParticleSet does not hold."""
    arr = ps.cs
    own = cs_io.canonical_fields(ps.has_pose)
    particles: dict[str, object] = {}
    optics: dict[str, object] = {}
    # Optics-table values are per group: take them from each group's first member.
    first_of_group = np.array([next(iter(np.flatnonzero(ps.optics_index == g)), 0)
                               for g in range(len(ps.optics))], np.int64)
    for name in arr.dtype.names:
        values = arr[name]
        if name in own:
            continue
        if name.startswith("rlnOptics/"):
            optics[name[len("rlnOptics/"):]] = _star_values(values[first_of_group], name,
                                                             ps.source)
        elif name.startswith("rln/"):
            particles[name[len("rln/"):]] = _star_values(values, name, ps.source)
        elif name == "location/micrograph_path":
            particles["rlnMicrographName"] = cs_io.decode_strings(values, name, ps.source)
        elif name == "alignments3D/class" and ps.has_pose:
            particles["rlnClassNumber"] = values.astype(np.int64) + 1
        elif values.ndim == 1:
            particles[cs_label(name, values.dtype)] = _text(values, name, ps.source)
        else:
            flat = values.reshape(len(values), -1)
            for j in range(flat.shape[1]):
                particles[cs_label(name, values.dtype, values.shape[1:], j)] = \
                    _text(flat[:, j], name, ps.source)
    exp_groups = ps.meta.get("cs_exp_group_ids", list(range(len(ps.optics))))
    numbers = np.asarray(exp_groups, np.int64) + 1
    if len(set(numbers.tolist())) != len(numbers):
        numbers = np.arange(1, len(ps.optics) + 1)
    optics_table = pd.DataFrame({"rlnOpticsGroup": numbers, **optics})
    return pd.DataFrame(particles, index=range(len(ps))), optics_table


def _cs_values(series: pd.Series) -> np.ndarray:
    """A STAR column as a .cs field: text as fixed bytes, numbers as (u)int64 / float64."""
    if pd.api.types.is_unsigned_integer_dtype(series):
        return series.to_numpy(np.uint64)      # starfile's type for integers beyond int64
    if pd.api.types.is_integer_dtype(series) or pd.api.types.is_bool_dtype(series):
        return series.to_numpy(np.int64)
    if pd.api.types.is_float_dtype(series):
        return series.to_numpy(np.float64)
    return cs_io.encode_strings(series.astype(str).to_numpy(object))


def _decode_cs_column(text: pd.Series, dtype: np.dtype, label: str, source) -> np.ndarray:
    """A cs:<field> column back in its .cs dtype; InputError at the first row that is not one."""
    strings = text.astype(str).to_numpy(object)
    if dtype.kind == "S":
        return cs_io.encode_strings(strings).astype(dtype)
    if _all_fit(strings, dtype):
        return strings.astype(dtype) if dtype.kind in "iu" \
            else pd.to_numeric(pd.Series(strings)).to_numpy(float).astype(dtype)
    row = next(i for i, value in enumerate(strings) if not _fits(value, dtype))
    raise InputError(f"{source}: row {row + 1} column _{label}: {quoted(strings[row])}; expected "
                     f"a value of type {dtype}")


def _all_fit(strings: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every text converts to ``dtype`` without error or overflow (vectorized)."""
    try:
        if dtype.kind in "iu":
            strings.astype(dtype)
            return True
        values = pd.to_numeric(pd.Series(strings)).to_numpy(float)
    except (ValueError, OverflowError, TypeError):
        return False
    with np.errstate(over="ignore"):
        return not np.any(np.isfinite(values) & ~np.isfinite(values.astype(dtype)))


def _fits(value: str, dtype: np.dtype) -> bool:
    return _all_fit(np.array([value], dtype=object), dtype)


def star_columns_as_cs(ps: ParticleSet) -> np.ndarray | None:
    """The .cs fields carrying STAR columns that ParticleSet does not hold."""
    n = len(ps)
    df = ps.star_particles.reset_index(drop=True)
    own = star_io.canonical_particle_labels(ps.has_pose)
    fields: dict[str, np.ndarray] = {}
    vectors: dict[str, tuple[np.dtype, tuple, dict[int, np.ndarray]]] = {}
    for label in df.columns:
        if label in own:
            continue
        parsed = parse_cs_label(label)
        if parsed is not None:
            name, dtype, shape, j = parsed
            values = _decode_cs_column(df[label], dtype, label, ps.source)
            if not shape:
                fields[name] = values
            else:
                vectors.setdefault(name, (dtype, shape, {}))[2][j] = values
        elif label == "rlnMicrographName":
            fields["location/micrograph_path"] = cs_io.encode_strings(df[label].astype(str).to_numpy(object))
        elif label == "rlnClassNumber" and ps.has_pose and _positive_integers(df[label]):
            fields["alignments3D/class"] = (df[label].to_numpy(np.int64) - 1).astype("<u4")
        else:
            fields[f"rln/{label}"] = _cs_values(df[label])
    for name, (dtype, shape, elements) in vectors.items():
        size = int(np.prod(shape))
        if sorted(elements) != list(range(size)):
            raise InputError(f"{ps.source}: columns _cs:{name}:... hold elements "
                             f"{sorted(elements)}; expected all {size} elements of shape {shape}")
        fields[name] = np.stack([elements[j] for j in range(size)], axis=1).reshape(n, *shape)
    if ps.star_optics is not None:
        opt = ps.star_optics.reset_index(drop=True)
        for label in opt.columns:
            if label not in _STAR_OPTICS_OWN:
                fields[f"rlnOptics/{label}"] = _cs_values(opt[label])[ps.optics_index]
        if "rlnOpticsGroup" in opt.columns:
            numbers = pd.to_numeric(opt["rlnOpticsGroup"]).to_numpy(np.int64)
            if np.all(numbers >= 1):
                fields["ctf/exp_group_id"] = (numbers - 1).astype("<u4")[ps.optics_index]
    if not fields:
        return None
    return cs_io.structured_array(fields)


def _positive_integers(series: pd.Series) -> bool:
    # Classes that fit alignments3D/class (u4) once made 0-based.
    values = pd.to_numeric(series, errors="coerce").to_numpy(float)
    with np.errstate(invalid="ignore"):
        return bool(np.all((values >= 1) & (values <= 2 ** 32) & (values == np.round(values))))
