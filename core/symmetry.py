"""Point-group symmetry: expanding particles to C1 and re-imposing symmetry on maps.

Operators and their convention live in :mod:`gmmrefine.symmetry_groups`
(RELION's axes; a symmetry copy of a particle with pose A has pose A @ R; a
symmetric map satisfies V(R x) = V(x)). Here:

- :func:`expand_particles` makes one copy of every particle per operator, as
  relion_particle_symmetry_expand does, so focused work can run in C1;
- :func:`symmetrize_map` averages a map over the group, optionally weighted
  by a mask (the "re-impose by mask-weighted averaging" of the design:
  sum_g R_g(M) R_g(V) / sum_g R_g(M)).

Symmetric reconstruction lives with the reconstructor
(``reconstruct_halves(..., sym=...)``).
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pandas as pd
from scipy.ndimage import map_coordinates

from .errors import InputError
from .particles import ParticleSet
from .symmetry_groups import symmetry_operators, symmetry_order

__all__ = ["symmetry_operators", "symmetry_order", "expand_particles", "symmetrize_map",
           "symmetrize_maps",
           "COPY_FIELD", "SOURCE_UID_FIELD"]

# CryoSPARC's own names for what its Symmetry Expansion job records; in a STAR
# file they travel as the passthrough columns cs:sym_expand/idx:u4 and
# cs:sym_expand/src_uid:u8 (gmmrefine.io.particles_io), which RELION keeps
# untouched, so one name serves both hosts.
COPY_FIELD = "sym_expand/idx"
SOURCE_UID_FIELD = "sym_expand/src_uid"

# Planes of the output map rotated at a time: bounds the coordinate arrays
# (3 x 8 bytes per voxel) whatever the box.
_PLANES_PER_BATCH = 16


# --- particles ----------------------------------------------------------------------------

def expand_particles(ps: ParticleSet, sym: str) -> ParticleSet:
    """|G| copies of every particle, one per symmetry operator.

    Copy g of a particle with pose A has pose A @ R_g (RELION's
    relion_particle_symmetry_expand); shift, CTF, image, half set and every
    passthrough column are the particle's. Copies of one particle are
    consecutive, identity first. Each copy records its operator index in
    ``sym_expand/idx`` (a .cs field, or the STAR column
    ``cs:sym_expand/idx:u4``); when the input carries uids, copies get new
    unique uids and ``sym_expand/src_uid`` keeps the original's, as in
    CryoSPARC's symmetry expansion.

    Parameters
    ----------
    ps
        Particles with poses (``ps`` itself is not modified).
    sym
        Point group name (:func:`symmetry_operators`).

    Returns
    -------
    ParticleSet
        len(ps) * |G| particles.
    """
    ops = symmetry_operators(sym)
    if not ps.has_pose:
        raise InputError(f"{ps.source}: no 3D poses to expand by {sym}; expected a particle "
                         "set from a 3D refinement (_rlnAngleRot/Tilt/Psi or alignments3D/pose)")
    n, order = len(ps), len(ops)
    source = np.repeat(np.arange(n), order)
    copy = np.tile(np.arange(order), n).astype(np.uint32)
    out = ps.subset(source)
    rotation = np.einsum("nij,njk->nik", ps.rotation[source], ops[copy])
    out = out.with_poses(rotation, out.shift_A)
    # A set expanded before (by a subgroup, say) keeps counting: copy g of copy
    # k is copy k * |G| + g, and the source uid stays the first particle's.
    earlier = _carried_field(ps, COPY_FIELD)
    if earlier is not None:
        copy = (earlier.astype(np.uint32)[source] * order + copy).astype(np.uint32)
    extra = {COPY_FIELD: copy}
    if np.any(ps.uid != 0):
        origin = _carried_field(ps, SOURCE_UID_FIELD)
        origin = ps.uid if origin is None else origin
        extra[SOURCE_UID_FIELD] = origin.astype(np.uint64)[source]
        out = dataclasses.replace(out, uid=_copy_uids(ps.uid, order))
    return _with_passthrough(out, extra)


def _carried_field(ps: ParticleSet, name: str) -> np.ndarray | None:
    """A per-particle field the set carries from an earlier expansion, or None."""
    from .io.particles_io import parse_cs_label

    if ps.cs is not None and name in ps.cs.dtype.names:
        return np.asarray(ps.cs[name])
    if ps.star_particles is not None:
        for label in ps.star_particles.columns:
            parsed = parse_cs_label(str(label))
            if parsed is not None and parsed[0] == name and not parsed[2]:
                # Text, as read_star keeps cs: columns, so 64-bit uids stay exact.
                text = ps.star_particles[label].astype(str).to_numpy(object)
                try:
                    return text.astype(parsed[1])
                except (TypeError, ValueError, OverflowError):
                    raise InputError(f"{ps.source}: column _{label} holds a value that is not "
                                     f"{parsed[1]}") from None
    return None


def _copy_uids(uid: np.ndarray, order: int) -> np.ndarray:
    """New uids for the copies: deterministic from the originals, unique, non-zero."""
    rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(uid, np.uint64).tobytes()))
    size = len(uid) * order
    while True:
        new = rng.integers(1, np.iinfo(np.int64).max, size=size, dtype=np.int64).astype(np.uint64)
        if len(np.unique(new)) == size:
            return new


def _with_passthrough(ps: ParticleSet, fields: dict[str, np.ndarray]) -> ParticleSet:
    """Add per-particle fields to the host table(s) the set carries (a new
    STAR table when it carries none), replacing any from an earlier expansion."""
    from .io import cs as cs_io
    from .io.particles_io import cs_label

    changes = {}
    if ps.cs is not None:
        columns = {name: ps.cs[name] for name in ps.cs.dtype.names if name not in fields}
        changes["cs"] = cs_io.structured_array({**columns, **fields})
    if ps.star_particles is not None or ps.cs is None:
        table = ps.star_particles.copy() if ps.star_particles is not None \
            else pd.DataFrame(index=range(len(ps)))
        for name, values in fields.items():
            table[cs_label(name, values.dtype)] = values
        changes["star_particles"] = table
    return dataclasses.replace(ps, **changes)


# --- maps ------------------------------------------------------------------------------------

def _rotated(volume: np.ndarray, r: np.ndarray, order: int) -> np.ndarray:
    """V(R^T x): ``volume`` turned by R about voxel B // 2 ([z, y, x] arrays).

    Voxels whose source lies outside the box take the nearest edge value, so
    a constant map stays constant.
    """
    box = volume.shape[0]
    centre = box // 2
    x = np.arange(box, dtype=float) - centre
    out = np.empty(volume.shape, np.float64)
    # Spline coefficients once per map, not once per batch of planes.
    coeffs = volume if order <= 1 else _spline_coefficients(volume, order)
    for lo in range(0, box, _PLANES_PER_BATCH):
        z = x[lo:lo + _PLANES_PER_BATCH]
        zz, yy, xx = np.meshgrid(z, x, x, indexing="ij")
        xyz = np.stack([xx.ravel(), yy.ravel(), zz.ravel()])
        source = r.T @ xyz + centre              # (x, y, z) of V(R^T x)
        out[lo:lo + len(z)] = map_coordinates(
            coeffs, source[::-1], order=order, mode="nearest",
            prefilter=False).reshape(zz.shape)
    return out


def _spline_coefficients(volume: np.ndarray, order: int) -> np.ndarray:
    from scipy.ndimage import spline_filter
    return spline_filter(np.asarray(volume, np.float64), order=order, mode="nearest")


def symmetrize_map(volume: np.ndarray, sym: str, weight: np.ndarray | None = None, *,
                   order: int = 3) -> np.ndarray:
    """Average a map over the operators of ``sym`` about the box centre (B // 2).

    Parameters
    ----------
    volume
        (B, B, B) map, [z, y, x], the engine's convention.
    sym
        Point group name (:func:`symmetry_operators`).
    weight
        Optional (B, B, B) non-negative mask M: the result is then
        sum_g R_g(M) R_g(V) / sum_g R_g(M), each rotated copy counted where its
        own mask holds it (DESIGN.md, symmetry); where the rotated masks sum to
        ~0 the plain average is used. The mask is rotated trilinearly so its
        rotated copies stay non-negative and the result is a convex
        combination of the rotated maps.
    order
        Spline order for rotating the map (3: cubic; 1: trilinear).

    Returns
    -------
    np.ndarray
        float32 map of the same shape: (1/|G|) sum_g V(R_g^T x) without a weight.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise InputError(f"symmetrize_map: map of shape {volume.shape}; expected a cubic 3D map")
    if weight is not None and np.shape(weight) != volume.shape:
        raise InputError(f"symmetrize_map: mask of shape {np.shape(weight)}; expected the "
                         f"map's shape {volume.shape}")
    if weight is not None and np.min(weight) < 0:
        raise InputError(f"symmetrize_map: mask has negative values (min {np.min(weight):.3g}); "
                         "expected a mask in [0, 1]")
    return symmetrize_maps([volume], sym, weight, order=order)[0]


def symmetrize_maps(volumes: list[np.ndarray], sym: str, weight: np.ndarray | None = None, *,
                    order: int = 3) -> list[np.ndarray]:
    """:func:`symmetrize_map` of several maps of one box under one mask (checked by the caller),
    rotating the mask once per operator rather than once per map and operator."""
    ops = symmetry_operators(sym)
    shape = np.shape(volumes[0])
    totals = [np.zeros(shape) for _ in volumes]
    weighted = [np.zeros(shape) for _ in volumes]
    mask_sum = np.zeros(shape)
    for r in ops:
        turned_mask = None if weight is None else _rotated(np.asarray(weight, np.float64), r, 1)
        if turned_mask is not None:
            mask_sum += turned_mask
        for k, volume in enumerate(volumes):
            turned = _rotated(np.asarray(volume), r, order)
            totals[k] += turned
            if turned_mask is not None:
                weighted[k] += turned_mask * turned
    plains = [t / len(ops) for t in totals]
    if weight is None:
        return [p.astype(np.float32) for p in plains]
    covered = mask_sum > 1e-6 * max(float(mask_sum.max()), np.finfo(float).tiny)
    safe_sum = np.where(covered, mask_sum, 1.0)
    return [np.where(covered, w / safe_sum, p).astype(np.float32)
            for w, p in zip(weighted, plains)]
