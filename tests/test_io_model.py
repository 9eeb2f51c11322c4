"""Atomic models through gemmi: PDB and mmCIF alike, the atoms a biologist expects, one frame."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.errors import InputError
from gmmrefine.io.gmm_files import read_gmm
from gmmrefine.io.model import (
    engine_to_model_frame,
    map_centre_A,
    model_to_engine_frame,
    read_atomic_model,
)
from gmmrefine.io.mrc import read_map
from gmmrefine.simulate.dataset import simulate_dataset
from gmmrefine.simulate.pdb import read_pdb

# Peng, Ren, Dudarev & Whelan (1996), Acta Cryst. A52, 257-276: the a_i of the
# five-Gaussian fit of neutral atoms' elastic electron scattering for s up to
# 2 A^-1, as International Tables Vol. C (2006) Table 4.3.2.2 reprints them;
# typed from the published table (the same numbers as Bsoft's scat_peng.star
# and cryojax's Peng table). f_e(0) is their sum.
PENG_1996_A = {
    "C": (0.0893, 0.2563, 0.7570, 1.0487, 0.3575),
    "N": (0.1022, 0.3219, 0.7982, 0.8197, 0.1715),
    "O": (0.0974, 0.2921, 0.6910, 0.6990, 0.2039),
    "P": (0.2548, 0.6106, 1.4541, 2.3204, 0.8477),
    "Zn": (0.4288, 1.2646, 1.4472, 1.8294, 1.0934),
}

# One small structure: an alanine with a split CB (B the major conformer) and
# one hydrogen, a DNA phosphate with its sugar's first carbon, a zinc ion and
# a water with a deuterium.
# record, atom, altloc, residue, chain, number, xyz, occupancy, B, element
ATOMS = [
    ("ATOM", "N", "", "ALA", "A", 1, (11.104, 6.134, -6.504), 1.00, 10.0, "N"),
    ("ATOM", "CA", "", "ALA", "A", 1, (11.639, 6.071, -5.147), 1.00, 11.0, "C"),
    ("ATOM", "C", "", "ALA", "A", 1, (13.139, 5.951, -5.180), 1.00, 12.0, "C"),
    ("ATOM", "O", "", "ALA", "A", 1, (13.740, 5.500, -4.200), 1.00, 13.0, "O"),
    ("ATOM", "CB", "A", "ALA", "A", 1, (11.200, 7.300, -4.400), 0.30, 14.0, "C"),
    ("ATOM", "CB", "B", "ALA", "A", 1, (11.100, 4.900, -4.400), 0.70, 15.0, "C"),
    ("ATOM", "H", "", "ALA", "A", 1, (10.500, 6.100, -6.900), 1.00, 10.0, "H"),
    ("ATOM", "P", "", "DA", "B", 5, (20.000, 10.000, 2.000), 1.00, 30.0, "P"),
    ("ATOM", "OP1", "", "DA", "B", 5, (20.900, 10.800, 2.900), 1.00, 31.0, "O"),
    ("ATOM", "OP2", "", "DA", "B", 5, (18.600, 10.500, 1.800), 1.00, 32.0, "O"),
    ("ATOM", "O5'", "", "DA", "B", 5, (20.600, 8.500, 2.400), 1.00, 33.0, "O"),
    ("ATOM", "C5'", "", "DA", "B", 5, (20.100, 7.400, 1.600), 1.00, 34.0, "C"),
    ("HETATM", "ZN", "", "ZN", "C", 101, (5.000, -3.000, 7.500), 1.00, 25.0, "Zn"),
    ("HETATM", "O", "", "HOH", "W", 1, (-4.000, 2.000, 1.000), 1.00, 40.0, "O"),
    ("HETATM", "D1", "", "HOH", "W", 1, (-4.600, 2.700, 1.200), 1.00, 40.0, "D"),
]
HEAVY = [a for a in ATOMS if a[9] not in ("H", "D") and a[2] != "A"]


def _pdb_line(serial: int, atom: tuple) -> str:
    record, name, altloc, res, chain, num, (x, y, z), occ, b, element = atom
    # PDB columns: one-letter elements' names start in column 14 (" CA "), as wwPDB writes them.
    name_field = f" {name:<3s}" if len(element) == 1 and len(name) < 4 else f"{name:<4s}"
    return (f"{record:<6s}{serial:5d} {name_field}{altloc or ' ':1s}{res:>3s} {chain:1s}{num:4d}"
            f"    {x:8.3f}{y:8.3f}{z:8.3f}{occ:6.2f}{b:6.2f}          {element.upper():>2s}")


def _write_pdb(path, atoms=ATOMS) -> None:
    lines = [_pdb_line(i + 1, atom) for i, atom in enumerate(atoms)]
    path.write_text("\n".join(lines + ["END"]) + "\n")


def _write_mmcif(path, atoms=ATOMS) -> None:
    labels = ["group_PDB", "id", "type_symbol", "label_atom_id", "label_alt_id",
              "label_comp_id", "label_asym_id", "label_seq_id", "Cartn_x", "Cartn_y", "Cartn_z",
              "occupancy", "B_iso_or_equiv", "auth_seq_id", "auth_asym_id", "pdbx_PDB_model_num"]
    rows = []
    for i, (record, name, altloc, res, chain, num, xyz, occ, b, element) in enumerate(atoms):
        quoted = f'"{name}"' if "'" in name else name
        rows.append(" ".join([record, str(i + 1), element.upper(), quoted, altloc or ".", res,
                              chain, str(num), *(f"{v:.3f}" for v in xyz), f"{occ:.2f}",
                              f"{b:.2f}", str(num), chain, "1"]))
    path.write_text("\n".join(["data_test", "loop_", *(f"_atom_site.{k}" for k in labels),
                               *rows, ""]))


@pytest.fixture
def both_formats(tmp_path):
    _write_pdb(tmp_path / "small.pdb")
    _write_mmcif(tmp_path / "small.cif")
    return tmp_path / "small.pdb", tmp_path / "small.cif"


def test_pdb_and_mmcif_of_one_structure_read_to_the_same_atoms(both_formats):
    pdb, cif = (read_atomic_model(path) for path in both_formats)
    assert len(pdb) == len(cif) == len(HEAVY) == 12
    for field in ("element", "chain", "res_name", "res_seq", "ins_code", "atom_name"):
        np.testing.assert_array_equal(getattr(pdb, field), getattr(cif, field), err_msg=field)
    for field in ("coords_A", "weight", "bfactor_A2", "occupancy"):
        np.testing.assert_allclose(getattr(pdb, field), getattr(cif, field), atol=1e-6,
                                   err_msg=field)
    np.testing.assert_allclose(pdb.coords_A, [a[6] for a in HEAVY], atol=1e-6)
    assert list(pdb.element) == [a[9] for a in HEAVY]
    assert list(pdb.atom_name) == [a[1] for a in HEAVY]
    assert list(pdb.chain) == list("AAAAABBBBBCW")
    assert list(pdb.res_seq) == [1] * 5 + [5] * 5 + [101, 1]


def test_weights_are_peng_1996_electron_scattering_at_zero_angle(both_formats):
    model = read_atomic_model(both_formats[1])
    for element, a in PENG_1996_A.items():
        weights = model.weight[model.element == element]
        assert len(weights) > 0, element
        np.testing.assert_allclose(weights, sum(a), atol=1e-4, err_msg=element)


def test_alternate_locations_count_once_keeping_the_major_conformer(both_formats):
    for path in both_formats:
        model = read_atomic_model(path)
        cb = np.flatnonzero(model.atom_name == "CB")
        assert len(cb) == 1
        # B (occupancy 0.7) although A comes first in the file.
        np.testing.assert_allclose(model.coords_A[cb[0]], (11.100, 4.900, -4.400), atol=1e-6)
        assert model.occupancy[cb[0]] == pytest.approx(0.7)


def test_hydrogens_go_and_waters_ions_and_nucleotides_stay(both_formats):
    for path in both_formats:
        model = read_atomic_model(path)
        assert not set(model.element) & {"H", "D"}
        assert {"HOH", "ZN", "DA"} <= set(model.res_name)
        assert list(model.element[model.res_name == "HOH"]) == ["O"]


def test_only_the_first_model_of_an_ensemble_is_read(tmp_path):
    first, second = ATOMS[:4], [a[:6] + ((0.0, 0.0, 0.0),) + a[7:] for a in ATOMS[:4]]
    lines = ["MODEL        1", *(_pdb_line(i + 1, a) for i, a in enumerate(first)), "ENDMDL",
             "MODEL        2", *(_pdb_line(i + 1, a) for i, a in enumerate(second)), "ENDMDL",
             "END"]
    (tmp_path / "nmr.pdb").write_text("\n".join(lines) + "\n")
    model = read_atomic_model(tmp_path / "nmr.pdb")
    np.testing.assert_allclose(model.coords_A, [a[6] for a in first], atol=1e-6)


def _bad_model(tmp_path, case: str):
    path = tmp_path / ("bad.cif" if case == "broken mmCIF" else "bad.pdb")
    if case == "empty":
        path.write_text("")
    elif case == "broken mmCIF":
        path.write_text("data_x\nloop_\n_atom_site.id\n_atom_site.type_symbol\n1 C\n2\n")
    elif case == "no atoms":
        path.write_text("HEADER    NOTHING HERE\nEND\n")
    elif case == "hydrogens only":
        _write_pdb(path, [a for a in ATOMS if a[9] == "H"])
    elif case == "unknown element":
        atom = ("HETATM", "Q1", "", "UNK", "A", 7, (1.0, 2.0, 3.0), 1.0, 20.0, "Q")
        _write_pdb(path, ATOMS[:3] + [atom])
    return path


@pytest.mark.parametrize("case, words", [
    ("missing", ["not found"]),
    ("empty", ["empty"]),
    ("broken mmCIF", ["not a readable", "line 2", "number of values"]),
    ("no atoms", ["no atoms"]),
    ("hydrogens only", ["hydrogen"]),
    ("unknown element", ["Q1", "serial 4", "UNK 7", "unknown element", "H to Cf"]),
])
def test_bad_model_files_give_one_line_naming_the_file(tmp_path, case, words):
    path = tmp_path / "absent.pdb" if case == "missing" else _bad_model(tmp_path, case)
    with pytest.raises(InputError) as err:
        read_atomic_model(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for word in words:
        assert word in message, (word, message)


def test_the_frame_puts_voxel_b_half_at_the_engines_origin():
    # Box 48 at 2.4 A/px: voxel 24 sits at 57.6 A in a viewer (MRC origin 0).
    assert map_centre_A(48, 2.4) == pytest.approx(57.6)
    assert map_centre_A(49, 2.0) == pytest.approx(48.0)
    np.testing.assert_allclose(model_to_engine_frame([[57.6, 57.6, 60.0]], 48, 2.4),
                               [[0.0, 0.0, 2.4]], atol=1e-12)
    xyz = np.random.default_rng(0).normal(scale=20.0, size=(5, 3))
    np.testing.assert_allclose(engine_to_model_frame(model_to_engine_frame(xyz, 48, 2.4), 48, 2.4),
                               xyz, atol=1e-12)


# --- the simulator's model and a refinement seeded from mmCIF -------------------------------

@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=48, box=48, apix=2.4, snr=1.0, angle_rms_deg=4.0, crb_sample=0)
    return out


def test_the_simulators_pdb_lands_on_its_map_through_the_one_frame_rule(small_set):
    atoms = read_atomic_model(small_set / "model.pdb")
    engine = model_to_engine_frame(atoms.coords_A, 48, 2.4)
    # The simulator's own reader undoes its shift through the REMARK it wrote.
    np.testing.assert_allclose(engine, read_pdb(small_set / "model.pdb").coords_A, atol=2e-3)
    # And independently of any PDB convention: the atoms' weighted centre is
    # the truth map's centre of mass, voxel i at (i - B // 2) * apix.
    volume, apix = read_map(small_set / "truth_map.mrc")
    axis = (np.arange(volume.shape[0]) - volume.shape[0] // 2) * apix
    mass = volume.sum()
    centre_map = [np.sum(volume.sum(axis=(0, 1)) * axis) / mass,      # x
                  np.sum(volume.sum(axis=(0, 2)) * axis) / mass,      # y
                  np.sum(volume.sum(axis=(1, 2)) * axis) / mass]      # z
    centre_atoms = np.average(engine, axis=0, weights=atoms.weight)
    np.testing.assert_allclose(centre_atoms, centre_map, atol=0.05)


def _mmcif_with_phosphorus_and_zinc(small_set, path, n_residues: int = 60) -> int:
    """The simulator's PDB as mmCIF: its first residues (a short GMM fit), a phosphate and a zinc.

    Returns the number of heavy atoms written.
    """
    structure = gemmi.read_structure(str(small_set / "model.pdb"))
    model = structure[0]
    for name in [chain.name for chain in model][1:]:
        model.remove_chain(name)
    del model[0][n_residues:]
    centre = np.mean([atom.pos.tolist() for residue in model[0] for atom in residue], axis=0)
    for chain, residue, name, element, offset in (("P", "PO4", "P", "P", (2.0, 0.0, 0.0)),
                                                  ("Z", "ZN", "ZN", "Zn", (-2.0, 0.0, 0.0))):
        atom = gemmi.Atom()
        atom.name, atom.element, atom.occ, atom.b_iso = name, gemmi.Element(element), 1.0, 20.0
        atom.pos = gemmi.Position(*(centre + offset))
        res = gemmi.Residue()
        res.name, res.seqid, res.het_flag = residue, gemmi.SeqId(1, " "), "H"
        res.add_atom(atom)
        new_chain = gemmi.Chain(chain)
        new_chain.add_residue(res)
        model.add_chain(new_chain)
    structure.setup_entities()
    structure.make_mmcif_document().write_file(str(path))
    return model.count_atom_sites()


@pytest.mark.slow
def test_refine_runs_with_an_mmcif_model_holding_phosphorus_and_zinc(small_set, tmp_path):
    n_atoms = _mmcif_with_phosphorus_and_zinc(small_set, tmp_path / "model.cif")
    atoms = read_atomic_model(tmp_path / "model.cif")
    assert len(atoms) == n_atoms and {"P", "Zn"} <= set(atoms.element)
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["refine", str(small_set / "particles.star"), "--out",
                                      str(out), "--iter", "1", "--steps", "1", "--res", "8",
                                      "--model", str(tmp_path / "model.cif")])
    assert result.exit_code == 0, result.output
    engine = model_to_engine_frame(atoms.coords_A, 48, 2.4)
    for half in (1, 2):
        gmm = read_gmm(out / "iter_001" / f"gmm_half{half}.npz")
        assert len(gmm) == n_atoms
        # Seeded where the atoms are: the fit moves Gaussians, not the model as a whole.
        assert np.linalg.norm(gmm.centres_A.mean(axis=0) - engine.mean(axis=0)) < 3.0


def test_a_model_fitted_in_another_frame_is_refused_before_the_run(small_set, tmp_path):
    # The small structure 500 A away from any map of box 48 at 2.4 A/px.
    far = [a[:6] + (tuple(np.add(a[6], 500.0)),) + a[7:] for a in ATOMS]
    _write_pdb(tmp_path / "elsewhere.pdb", far)
    result = CliRunner().invoke(cli, ["refine", str(small_set / "particles.star"), "--out",
                                      str(tmp_path / "run"), "--model",
                                      str(tmp_path / "elsewhere.pdb")])
    assert result.exit_code == 2, result.output
    assert "elsewhere.pdb: 12 of 12 atoms lie outside the particles' box" in result.output
    assert not (tmp_path / "run").exists()
