"""Residues of a model (chain, number, insertion code) and the per-residue Q-score CSV."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest
from gmmrefine.io.model import read_atomic_model, residues_of
from gmmrefine.io.qscore_table import read_qscore_csv, write_qscore_csv

# chain, residue number, insertion code, residue name, atoms (name, element)
RESIDUES = [
    ("A", 10, "", "GLY", [("N", "N"), ("CA", "C"), ("C", "C"), ("O", "O")]),
    ("A", 11, "", "SER", [("N", "N"), ("CA", "C"), ("OG", "O")]),
    ("A", 11, "A", "ALA", [("N", "N"), ("CA", "C"), ("CB", "C")]),   # an insertion
    ("A", 14, "", "CYS", [("N", "N"), ("SG", "S")]),                 # a gap 11A -> 14
    ("A", 301, "", "HOH", [("O", "O")]),                             # a water of chain A
    ("NA", 1, "", "DA", [("P", "P"), ("OP1", "O")]),                 # a chain called NA
]


def _structure() -> gemmi.Structure:
    structure = gemmi.Structure()
    model = gemmi.Model("1")
    serial = 0
    for chain_name, number, icode, name, atoms in RESIDUES:
        chain = gemmi.Chain(chain_name)
        residue = gemmi.Residue()
        residue.name = name
        residue.seqid = gemmi.SeqId(number, icode or " ")
        residue.het_flag = "H" if name == "HOH" else "A"
        for atom_name, element in atoms:
            serial += 1
            atom = gemmi.Atom()
            atom.name, atom.element = atom_name, gemmi.Element(element)
            atom.pos = gemmi.Position(serial * 1.1, 0.5 * serial, -0.3 * serial)
            atom.occ, atom.b_iso = 1.0, 20.0
            residue.add_atom(atom)
        chain.add_residue(residue)
        model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    return structure


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "small.cif"
    _structure().make_mmcif_document().write_file(str(path))
    return path


def test_residues_are_grouped_by_chain_number_and_insertion_code(model_file):
    residues = residues_of(read_atomic_model(model_file))
    expected = [(c, n, i, name) for c, n, i, name, _ in RESIDUES]
    assert list(zip(residues.chain, residues.number.tolist(), residues.ins_code,
                    residues.name)) == expected
    np.testing.assert_array_equal(residues.atom_counts(), [len(a) for *_, a in RESIDUES])
    np.testing.assert_array_equal(residues.of_atom,
                                  np.repeat(np.arange(len(RESIDUES)),
                                            [len(a) for *_, a in RESIDUES]))


def test_table_round_trip_keeps_names_as_text_and_nan(model_file, tmp_path):
    residues = residues_of(read_atomic_model(model_file))
    start = np.array([0.31234, 0.5, np.nan, 0.25, 0.6, 0.1])
    final = np.array([0.41234, 0.6, 0.7, np.nan, 0.65, 0.2])
    path = tmp_path / "qscore.csv"
    write_qscore_csv(path, residues, {"q_start": start, "q_final": final})
    table = read_qscore_csv(path)
    assert list(table.columns) == ["chain", "residue_number", "insertion_code", "residue_name",
                                   "atoms", "q_start", "q_final"]
    assert list(table.chain) == ["A", "A", "A", "A", "A", "NA"]
    assert list(table.insertion_code) == ["", "", "A", "", "", ""]
    assert table.residue_number.tolist() == [10, 11, 11, 14, 301, 1]
    np.testing.assert_allclose(table.q_start, np.round(start, 4))
    np.testing.assert_allclose(table.q_final, np.round(final, 4))


def test_a_column_of_the_wrong_length_is_refused(model_file, tmp_path):
    residues = residues_of(read_atomic_model(model_file))
    with pytest.raises(ValueError, match="one value per residue"):
        write_qscore_csv(tmp_path / "q.csv", residues, {"q": np.zeros(3)})
    assert not (tmp_path / "q.csv").exists()
