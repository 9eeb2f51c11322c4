"""Symmetry expansion of a particle set, as relion_particle_symmetry_expand writes it.

Each copy of a particle gets its pose times one operator of the group, and
the host tables the set carries gain the fields that record the expansion
(CryoSPARC's names), so a written STAR or .cs says which copy is which.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pandas as pd

from ..data.particles import ParticleSet
from ..data.symmetry_groups import symmetry_operators
from ..errors import InputError
from . import cs as cs_io
from .particles import cs_label, parse_cs_label

# CryoSPARC's own names for what its Symmetry Expansion job records; in a STAR
# file they travel as the passthrough columns cs:sym_expand/idx:u4 and
# cs:sym_expand/src_uid:u8 (gmmrefine.io.particles_io), which RELION keeps
# untouched, so one name serves both hosts.
COPY_FIELD = "sym_expand/idx"
SOURCE_UID_FIELD = "sym_expand/src_uid"


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


