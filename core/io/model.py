"""Atomic models (PDB, mmCIF / PDBx, gzipped or not) through gemmi, and their frame.

What is read, and why (the atoms of a model that stand for density):

- The first model only: the models of an NMR ensemble are alternatives,
  not copies; counting them all would weigh the particle several times.
- One conformer where a residue has alternate locations: the one with the
  highest mean occupancy (ties: the first letter), together with the atoms
  that have no altloc. A split side chain is one side chain's density, so it
  counts once. Per residue number, so a point mutation modelled as two
  residues of one number (microheterogeneity) keeps one of them too.
- Hydrogens and deuterium dropped: at the resolutions GMMs are fitted at,
  a hydrogen's density sits inside its heavy atom's, and models have
  hydrogens or not depending on the program that wrote them; one Gaussian
  per heavy atom makes the count depend on the molecule, not on the file.
- Waters, ions, ligands and nucleic acids kept: ordered solvent and metals
  are real density in the map.

Weights: each atom's weight is its elastic electron scattering at zero
angle, f_e(0) in Angstrom, the sum of the a_i of the five-Gaussian fit of
Peng, Ren, Dudarev & Whelan (1996), Acta Cryst. A52, 257-276, for s up to
2 A^-1 (all of cryo-EM's resolutions), as International Tables Vol. C
Table 4.3.2.2 reprints it and gemmi carries it (``Element.c4322``). The table
covers neutral atoms H to Cf; ions get their neutral atom's value (an ion's
f_e diverges at s = 0, so only the neutral one is a usable weight). An
element outside the table (gemmi's unknown ``X``, Z > 98) is refused.
Occupancy is reported, not applied: the conformer kept stands for the whole
atom, and the GMM fit sets every amplitude from the map anyway.

Frame: coordinates are returned as written. :func:`model_to_engine_frame`
is the one place that moves them onto the engine's grid.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from ..errors import InputError

_NO_ALTLOC = "\0"     # gemmi's altloc of an atom without one


@dataclass(frozen=True)
class AtomicModel:
    """Heavy atoms of an atomic model, one row per atom, in file order.

    coords_A     (N, 3) float64  x, y, z in Angstrom, as written in the file
    element      (N,)   object   element symbol, e.g. "C", "Zn"
    weight       (N,)   float64  electron scattering f_e(0) in Angstrom (Peng 1996)
    bfactor_A2   (N,)   float64  isotropic B-factor
    occupancy    (N,)   float64  occupancy as written
    chain        (N,)   object   author chain name
    res_name     (N,)   object   residue (component) name
    res_seq      (N,)   int64    author residue number
    ins_code     (N,)   object   insertion code, "" when none
    atom_name    (N,)   object   atom name
    """

    coords_A: np.ndarray
    element: np.ndarray
    weight: np.ndarray
    bfactor_A2: np.ndarray
    occupancy: np.ndarray
    chain: np.ndarray
    res_name: np.ndarray
    res_seq: np.ndarray
    ins_code: np.ndarray
    atom_name: np.ndarray

    def __len__(self) -> int:
        return len(self.weight)


def read_atomic_model(path: str | os.PathLike) -> AtomicModel:
    """Read the heavy atoms of a PDB or mmCIF / PDBx file (format from its content).

    Parameters
    ----------
    path : path-like
        PDB, mmCIF or PDBx file, optionally gzipped.

    Returns
    -------
    AtomicModel
        First model, one conformer per residue, no hydrogens; waters, ions
        and ligands kept (the module docstring says why).

    Raises
    ------
    InputError
        One line naming the file when it is missing or unreadable, holds no
        heavy atom, or has an atom whose element has no electron scattering
        factors.
    """
    path = Path(path)
    model = _first_model(path, _read_structure(path))
    rows = [(chain, residue, atom) for chain in model
            for residue, atom in _kept_atoms(chain)]
    if not rows:
        raise InputError(f"{path}: hydrogen atoms only; expected heavy atoms (C, N, O, ...)")
    element = np.array([atom.element.name for _, _, atom in rows], dtype=object)
    return AtomicModel(
        coords_A=np.array([atom.pos.tolist() for _, _, atom in rows], float),
        element=element,
        weight=_weights(path, element, rows),
        bfactor_A2=np.array([atom.b_iso for _, _, atom in rows], float),
        occupancy=np.array([atom.occ for _, _, atom in rows], float),
        chain=np.array([chain.name for chain, _, _ in rows], dtype=object),
        res_name=np.array([residue.name for _, residue, _ in rows], dtype=object),
        res_seq=np.array([residue.seqid.num for _, residue, _ in rows], np.int64),
        ins_code=np.array([residue.seqid.icode.strip() for _, residue, _ in rows], dtype=object),
        atom_name=np.array([atom.name for _, _, atom in rows], dtype=object),
    )


@dataclass(frozen=True)
class Residues:
    """The residues of an :class:`AtomicModel` in file order, and each atom's residue.

    chain      (R,)  object   author chain name
    number     (R,)  int64    author residue number
    ins_code   (R,)  object   insertion code, "" when none
    name       (R,)  object   residue (component) name
    of_atom    (N,)  int64    row of each atom's residue
    """

    chain: np.ndarray
    number: np.ndarray
    ins_code: np.ndarray
    name: np.ndarray
    of_atom: np.ndarray

    def __len__(self) -> int:
        return len(self.number)

    def atom_counts(self) -> np.ndarray:
        """(R,) number of atoms of each residue."""
        return np.bincount(self.of_atom, minlength=len(self))


def residues_of(model: AtomicModel) -> Residues:
    """Group a model's atoms by residue: chain, number and insertion code, as PDB and mmCIF
    authors number them (the first atom of a residue gives its name)."""
    row_of: dict[tuple, int] = {}
    of_atom = np.array([row_of.setdefault(key, len(row_of)) for key in
                        zip(model.chain, model.res_seq.tolist(), model.ins_code)], np.int64)
    first = np.unique(of_atom, return_index=True)[1]
    return Residues(chain=model.chain[first], number=model.res_seq[first],
                    ins_code=model.ins_code[first], name=model.res_name[first], of_atom=of_atom)


def map_centre_A(box: int, apix: float) -> float:
    """Where a gmmrefine map's centre voxel (B // 2) sits in a viewer, in Angstrom per axis.

    gmmrefine writes maps with MRC origin 0 (DESIGN.md, "Maps"), so ChimeraX
    puts voxel (i, j, k) at (i, j, k) * apix, and a model that overlays the
    map has its coordinates in that frame.
    """
    return (int(box) // 2) * float(apix)


def model_to_engine_frame(coords_A: np.ndarray, box: int, apix: float) -> np.ndarray:
    """Coordinates of a model that overlays one of our maps -> the engine's frame.

    The engine's coordinates are Angstrom from voxel B // 2 (gmm/model.py);
    a model fitted to a map of box ``box`` at ``apix`` (MRC origin 0) has
    that voxel at :func:`map_centre_A`, so engine = model - (B // 2) * apix.
    The PDB the simulator writes is shifted by exactly that amount, so it
    lands in the same place without its REMARK.
    """
    return np.asarray(coords_A, float) - map_centre_A(box, apix)


def engine_to_model_frame(coords_A: np.ndarray, box: int, apix: float) -> np.ndarray:
    """The inverse of :func:`model_to_engine_frame`: engine -> a viewer's frame of our maps."""
    return np.asarray(coords_A, float) + map_centre_A(box, apix)


def _read_structure(path: Path) -> gemmi.Structure:
    if not path.is_file():
        raise InputError(f"{path}: atomic model file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file; expected a PDB or mmCIF atomic model")
    try:
        # Detect reads the content, not only the name: a .pdb holding mmCIF still reads.
        return gemmi.read_structure(str(path), format=gemmi.CoorFormat.Detect)
    except (RuntimeError, ValueError, OSError) as err:
        raise InputError(f"{path}: not a readable PDB or mmCIF file ({_where(path, err)}); "
                         "expected ATOM/HETATM records or an _atom_site table") from None


def _where(path: Path, err: Exception) -> str:
    """gemmi's parse error as "line L: what", without the path it starts with."""
    match = re.match(rf"{re.escape(str(path))}:(\d+):\d+\(\d+\):\s*(.*)", str(err))
    return f"line {match[1]}: {match[2]}" if match else str(err)


def _first_model(path: Path, structure: gemmi.Structure) -> gemmi.Model:
    if len(structure) == 0 or structure[0].count_atom_sites() == 0:
        raise InputError(f"{path}: no atoms; expected ATOM/HETATM records (PDB) or an "
                         "_atom_site table (mmCIF)")
    return structure[0]


def _kept_atoms(chain: gemmi.Chain):
    """(residue, atom) of a chain's heavy atoms, one conformer per residue number."""
    def number(residue):
        return residue.seqid.num, residue.seqid.icode

    for _, group in itertools.groupby(chain, key=number):
        residues = list(group)
        conformer = _main_conformer(residues)
        for residue in residues:
            for atom in residue:
                if (not atom.element.is_hydrogen
                        and atom.altloc in (_NO_ALTLOC, conformer)):
                    yield residue, atom


def _main_conformer(residues: list) -> str:
    """Altloc letter with the highest mean occupancy (ties: the first letter)."""
    occupancies: dict[str, list[float]] = {}
    for residue in residues:
        for atom in residue:
            if atom.altloc != _NO_ALTLOC:
                occupancies.setdefault(atom.altloc, []).append(atom.occ)
    if not occupancies:
        return _NO_ALTLOC
    return max(sorted(occupancies), key=lambda letter: np.mean(occupancies[letter]))


def _weights(path: Path, element: np.ndarray, rows: list) -> np.ndarray:
    """f_e(0) of each atom; InputError at the first atom whose element has no table entry."""
    by_element = {}
    for symbol in dict.fromkeys(element):
        table = gemmi.Element(symbol)
        # gemmi's unknown element X (Z 0) borrows oxygen's coefficients; refuse it instead.
        coefficients = table.c4322 if table.atomic_number > 0 else None
        if coefficients is None:
            chain, residue, atom = rows[int(np.flatnonzero(element == symbol)[0])]
            what = f"element {symbol}" if table.atomic_number > 0 else "an unknown element"
            raise InputError(
                f"{path}: atom {atom.name} (serial {atom.serial}, chain {chain.name}, residue "
                f"{residue.name} {residue.seqid}) has {what}; expected an element from H to Cf "
                "(electron scattering factors of International Tables C 4.3.2.2)")
        by_element[symbol] = float(sum(coefficients.a))
    return np.array([by_element[symbol] for symbol in element], float)
