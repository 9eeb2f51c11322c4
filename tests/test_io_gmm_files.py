"""GMM files: exact round trip, bad files named, PDB export."""

import numpy as np
import pytest
from gmmrefine.errors import InputError
from gmmrefine.gmm.model import GMM
from gmmrefine.io.gmm_files import bfactor_from_width, read_gmm, write_gmm, write_pdb


@pytest.fixture
def gmm():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(50, 3))
    centres[0] = [np.pi, -1e-300, 5e-324]        # awkward floats must survive bit for bit
    return GMM(centres, rng.uniform(-0.5, 3.0, 50), rng.uniform(0.3, 4.0, 50))


def test_round_trip_is_bit_exact(gmm, tmp_path):
    path = tmp_path / "model.npz"
    write_gmm(gmm, path)
    back = read_gmm(path)
    for name in ("centres_A", "amplitudes", "widths_A"):
        original, read = getattr(gmm, name), getattr(back, name)
        assert read.dtype == np.float64
        assert original.tobytes() == read.tobytes()
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]     # no temporary left


def test_reading_bad_files_names_the_file(gmm, tmp_path):
    missing = tmp_path / "nope.npz"
    with pytest.raises(InputError, match="nope.npz: GMM file not found"):
        read_gmm(missing)
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not a zip")
    with pytest.raises(InputError, match="garbage.npz: not a readable"):
        read_gmm(garbage)
    old = tmp_path / "old.npz"
    np.savez(old, format_version=0, centres_A=gmm.centres_A, amplitudes=gmm.amplitudes,
             widths_A=gmm.widths_A)
    with pytest.raises(InputError, match="old.npz: format_version 0; expected 1"):
        read_gmm(old)
    partial = tmp_path / "partial.npz"
    np.savez(partial, format_version=1, centres_A=gmm.centres_A, amplitudes=gmm.amplitudes)
    with pytest.raises(InputError, match="partial.npz: array widths_A missing"):
        read_gmm(partial)
    single = tmp_path / "single.npz"
    np.savez(single, format_version=1, centres_A=gmm.centres_A.astype(np.float32),
             amplitudes=gmm.amplitudes, widths_A=gmm.widths_A)
    with pytest.raises(InputError, match="single.npz: centres_A has dtype float32"):
        read_gmm(single)
    negative = tmp_path / "negative.npz"
    np.savez(negative, format_version=1, centres_A=gmm.centres_A, amplitudes=gmm.amplitudes,
             widths_A=-gmm.widths_A)
    with pytest.raises(InputError, match="negative.npz: width"):
        read_gmm(negative)


def test_pdb_columns_hold_position_occupancy_and_bfactor(gmm, tmp_path):
    path = tmp_path / "model.pdb"
    write_pdb(gmm, path, box=64, apix=1.5)
    atoms = [line for line in path.read_text().splitlines() if line.startswith("HETATM")]
    assert len(atoms) == len(gmm)
    xyz = np.array([[float(a[30:38]), float(a[38:46]), float(a[46:54])] for a in atoms])
    np.testing.assert_allclose(xyz, gmm.centres_A + 32 * 1.5, atol=5e-4)
    occupancy = np.array([float(a[54:60]) for a in atoms])
    np.testing.assert_allclose(occupancy, gmm.amplitudes / np.abs(gmm.amplitudes).max(),
                               atol=5e-3)
    bfactor = np.array([float(a[60:66]) for a in atoms])
    expected = 8 * np.pi ** 2 * gmm.widths_A ** 2
    np.testing.assert_allclose(bfactor, expected, rtol=1e-3, atol=5e-3)
    assert all(a[76:78] == " C" for a in atoms)
    # the B-factor's Fourier factor exp(-B k^2 / 4) is the Gaussian's exp(-2 pi^2 s^2 k^2)
    k = 0.3
    assert np.exp(-bfactor_from_width(1.7) * k ** 2 / 4) == pytest.approx(
        np.exp(-2 * np.pi ** 2 * 1.7 ** 2 * k ** 2))


def test_pdb_keeps_wide_gaussians_in_their_columns(tmp_path):
    wide = GMM(np.zeros((2, 3)), [1.0, 1.0], [1.0, 10.0])        # B = 7896 A^2
    write_pdb(wide, tmp_path / "wide.pdb")
    atoms = [line for line in (tmp_path / "wide.pdb").read_text().splitlines()
             if line.startswith("HETATM")]
    assert float(atoms[1][60:66]) == pytest.approx(8 * np.pi ** 2 * 100, abs=0.5)
    assert atoms[0][66:] == atoms[1][66:]
