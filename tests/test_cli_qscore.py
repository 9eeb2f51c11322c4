"""``gmmrefine qscore MAP MODEL``: PDB and mmCIF on MRC maps, CSV and plot, one-line errors."""

from __future__ import annotations

import gemmi
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.fourier.filters import lowpass
from gmmrefine.io.model import map_centre_A
from gmmrefine.io.mrc import write_map
from gmmrefine.io.qscore_table import read_qscore_csv
from gmmrefine.reconstruct.qscore import atom_qscores, expected_protein_qscore
from gmmrefine.simulate.model import build_model
from gmmrefine.simulate.pdb import write_pdb
from gmmrefine.simulate.render import atom_amplitude, atom_sigma_A, render_map

BOX, APIX = 64, 1.0


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A ~100-residue model overlaying a 3 A map and a noisier 6 A start map (MRC origin 0)."""
    out = tmp_path_factory.mktemp("qscore")
    model = build_model(seed=2, n_residues=100)
    truth = render_map(model.coords_A, atom_amplitude(model.element),
                       atom_sigma_A(model.element, 30.0), BOX, APIX)
    rng = np.random.default_rng(1)
    write_map(out / "final.mrc", lowpass(truth, APIX, 3.0), APIX)
    write_map(out / "start.mrc", lowpass(truth + rng.normal(scale=0.5 * truth.std(),
                                                            size=truth.shape), APIX, 6.0), APIX)
    write_map(out / "other_box.mrc", np.zeros((48,) * 3, np.float32), APIX)
    write_pdb(out / "model.pdb", model, box_centre_A=map_centre_A(BOX, APIX))
    structure = gemmi.read_structure(str(out / "model.pdb"))
    structure.setup_entities()
    structure.make_mmcif_document().write_file(str(out / "model.cif"))
    far = model.with_coords(model.coords_A + 500.0)
    write_pdb(out / "elsewhere.pdb", far, box_centre_A=map_centre_A(BOX, APIX))
    (out / "not_a_map.mrc").write_text("hello\n")
    return out, model


def _run(*args):
    return CliRunner().invoke(cli, ["qscore", *map(str, args)])


@pytest.mark.slow
def test_pdb_and_mmcif_give_the_per_residue_means_of_the_atoms_scores(files, tmp_path):
    d, model = files
    tables = []
    for name in ("model.pdb", "model.cif"):
        out = tmp_path / name
        result = _run(d / "final.mrc", d / name, "--out", out, "--res", "3")
        assert result.exit_code == 0, result.output
        assert (out / "qscore.png").stat().st_size > 10_000
        tables.append(read_qscore_csv(out / "qscore.csv"))
        assert f"expected for a protein: {expected_protein_qscore(3.0):.2f}" in result.output
    pd.testing.assert_frame_equal(tables[0], tables[1])
    # The simulator's coordinates are already in the engine's frame (no file, no frame
    # rule); the PDB holds them to 0.001 A from the map's first voxel.
    from gmmrefine.io.mrc import read_map

    volume, apix = read_map(d / "final.mrc")
    first_voxel = (BOX // 2) * APIX
    per_atom = atom_qscores(volume, apix, np.round(model.coords_A + first_voxel, 3) - first_voxel)
    atoms = pd.DataFrame({"chain": model.chain, "number": model.res_seq, "q": per_atom})
    expected = atoms.groupby(["chain", "number"], sort=False)["q"].mean()
    table = tables[0]
    assert list(zip(table.chain, table.residue_number)) == list(expected.index)
    np.testing.assert_allclose(table.q, expected.to_numpy(), atol=5e-5)
    np.testing.assert_array_equal(table.atoms, atoms.groupby(["chain", "number"], sort=False)
                                  .size().to_numpy())
    assert set(table.residue_name) <= {"ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY",
                                       "HIS", "ILE", "LEU", "LYS", "MET", "PHE", "PRO", "SER",
                                       "THR", "TRP", "TYR", "VAL"}


@pytest.mark.slow
def test_a_start_map_gives_start_and_final_columns(files, tmp_path):
    d, _ = files
    out = tmp_path / "both"
    result = _run(d / "final.mrc", d / "model.pdb", "--out", out, "--start", d / "start.mrc",
                  "--res", "3", "--start-res", "6")
    assert result.exit_code == 0, result.output
    table = read_qscore_csv(out / "qscore.csv")
    assert list(table.columns[-2:]) == ["q_start", "q_final"]
    # A noisier map at half the resolution resolves each atom less.
    assert table.q_final.mean() > table.q_start.mean() + 0.1
    assert "start, 6.00 A: mean Q" in result.output and "final, 3.00 A: mean Q" in result.output
    assert (out / "qscore.png").is_file()


@pytest.mark.parametrize("args, words", [
    (("missing.mrc", "model.pdb"), "missing.mrc: map file not found"),
    (("not_a_map.mrc", "model.pdb"), "not_a_map.mrc: 6 bytes; expected an MRC map"),
    (("final.mrc", "missing.pdb"), "missing.pdb: atomic model file not found"),
    (("final.mrc", "elsewhere.pdb"), "atoms lie outside the box of"),
    (("final.mrc", "model.pdb", "--start", "other_box.mrc"),
     "other_box.mrc: box 48, 1 A/px; expected box 64"),
    (("final.mrc", "model.pdb", "--sigma", "0"), "--sigma 0: expected a number > 0 (A)"),
    (("final.mrc", "model.pdb", "--res", "-3"), "--res -3: expected a number > 0 (A), or none"),
])
def test_bad_input_stops_with_one_line_and_writes_nothing(files, tmp_path, args, words):
    d, _ = files
    out = tmp_path / "out"
    paths = [d / a if a.endswith((".mrc", ".pdb")) else a for a in args]
    result = _run(*paths, "--out", out)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and words in errors[0], result.output
    assert not out.exists()
