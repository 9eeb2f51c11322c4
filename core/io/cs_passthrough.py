"""A CryoSPARC job's particles as it exports them: the main ``.cs`` and its passthrough ``.cs``.

CryoSPARC writes the fields a job produced into its main file
(``J24_005_particles.cs``: blob, alignments3D, ...) and the fields it passed
through from its inputs (ctf, location, earlier alignments) into a
passthrough file beside it (``J24_passthrough_particles.cs``; 5.x:
``passthrough_particles_class_0.cs``), in an order of its own. The two are
one table joined on uid, never on row order (the trap of pyem #34 and #130);
where both hold a field, the main file's is the job's result and wins.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

PASSTHROUGH_WORD = "passthrough"


def passthrough_candidates(path: Path) -> list[Path]:
    """The ``.cs`` files beside ``path`` that CryoSPARC would have written as passthroughs."""
    path = Path(path)
    return sorted(p for p in path.parent.glob(f"*{PASSTHROUGH_WORD}*.cs")
                  if p.is_file() and p.resolve() != path.resolve())


def rows_by_uid(main_uid: np.ndarray, other_uid: np.ndarray) -> np.ndarray | None:
    """Row of ``other_uid`` holding each of ``main_uid``; None when any is missing."""
    order = np.argsort(other_uid, kind="stable")
    position = np.minimum(np.searchsorted(other_uid[order], main_uid), len(order) - 1)
    rows = order[position]
    if len(order) == 0 or np.any(other_uid[rows] != main_uid):
        return None
    return rows


def merge_by_uid(main: np.ndarray, other: np.ndarray, main_path: Path, other_path: Path
                 ) -> np.ndarray:
    """``main`` with every field of ``other`` it lacks, each row taken from ``other``'s row
    with the same uid.

    Raises
    ------
    InputError
        ``other`` repeats a uid, or lacks a uid of ``main`` (the first such row named).
    """
    uid, other_uid = main["uid"], other["uid"]
    if len(np.unique(other_uid)) != len(other_uid):
        raise InputError(f"{other_path}: field uid repeats values; expected one row per "
                         "particle in a passthrough file")
    rows = rows_by_uid(uid, other_uid)
    if rows is None:
        missing = ~np.isin(uid, other_uid)
        row = int(np.flatnonzero(missing)[0])
        raise InputError(f"{main_path}: row {row + 1} uid {int(uid[row])} is not in "
                         f"{other_path.name}; expected the passthrough file of the same "
                         "particles")
    added = [name for name in other.dtype.names if name not in main.dtype.names]
    fields = [(name, main.dtype.fields[name][0]) for name in main.dtype.names]
    fields += [(name, other.dtype.fields[name][0]) for name in added]
    merged = np.zeros(len(main), dtype=np.dtype(fields))
    for name in main.dtype.names:
        merged[name] = main[name]
    for name in added:
        merged[name] = other[name][rows]
    return merged


def with_passthrough(main: np.ndarray, path: Path,
                     load: Callable[[Path], np.ndarray]) -> np.ndarray:
    """``main`` (read from ``path``) joined with its passthrough file, if one is beside it.

    The passthrough is the file beside ``path`` with "passthrough" in its name
    that holds every uid of ``main`` (a many-class job writes one per class;
    only its own class's file holds all of a class's uids); of several, the one
    with exactly as many rows. A file that is itself a passthrough, or has no
    uids, is taken as it is.
    """
    path = Path(path)
    if PASSTHROUGH_WORD in path.name or "uid" not in main.dtype.names:
        return main
    matches = []
    for candidate in passthrough_candidates(path):
        other = load(candidate)
        if "uid" in other.dtype.names and rows_by_uid(main["uid"], other["uid"]) is not None:
            matches.append((candidate, other))
    if len(matches) > 1:
        matches = [m for m in matches if len(m[1]) == len(main)] or matches
    if len(matches) > 1:
        names = ", ".join(m[0].name for m in matches)
        raise InputError(f"{path}: passthrough files {names} all hold its particles; expected "
                         "one beside it (move the others away)")
    if not matches:
        return main
    candidate, other = matches[0]
    merged = merge_by_uid(main, other, path, candidate)
    added = len(merged.dtype.names) - len(main.dtype.names)
    log.info(f"{path.name}: {added} fields joined from {candidate.name} by uid")
    return merged
