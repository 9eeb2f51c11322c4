"""Conversion of real CryoSPARC files against pyem, cryoDRGN and CryoSPARC itself.

The files and what the other programs made of them are in ../shared/realcs
(README there); the tests skip where that folder is absent.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.data.rotations import angle_between_deg, euler_to_matrix
from gmmrefine.errors import InputError
from gmmrefine.io import star as star_io
from gmmrefine.io.particles import read_particles, require_poses
from helpers_formats import REALCS

pytestmark = pytest.mark.skipif(not REALCS.is_dir(), reason="../shared/realcs is absent")
P12 = REALCS / "cryosparc_P12_J24_001_particles"


def _convert(src, dst) -> str:
    result = CliRunner().invoke(cli, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def p12_star(tmp_path_factory):
    out = tmp_path_factory.mktemp("p12") / "p12.star"
    _convert(P12.with_suffix(".cs"), out)
    return read_particles(out)


def test_p12_agrees_with_pyem(p12_star):
    pyem = star_io.read_star_tables(P12.with_suffix(".pyem.star"))["particles"]
    pyem_rotation = euler_to_matrix(pyem["rlnAngleRot"], pyem["rlnAngleTilt"], pyem["rlnAnglePsi"])
    assert angle_between_deg(p12_star.rotation, pyem_rotation).max() < 1e-3
    apix = 2.95
    pyem_shift_A = pyem[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()
    assert np.abs(p12_star.shift_A - pyem_shift_A).max() / apix < 1e-3
    np.testing.assert_array_equal(p12_star.half_set, pyem["rlnRandomSubset"])
    np.testing.assert_allclose(p12_star.defocus_u_A, pyem["rlnDefocusU"], rtol=1e-6)
    np.testing.assert_allclose(p12_star.defocus_v_A, pyem["rlnDefocusV"], rtol=1e-6)
    np.testing.assert_allclose(p12_star.defocus_angle_deg, pyem["rlnDefocusAngle"], atol=1e-4)
    ours = p12_star.star_particles
    assert list(ours["rlnImageName"]) == list(pyem["rlnImageName"])
    np.testing.assert_array_equal(ours["rlnClassNumber"], pyem["rlnClassNumber"])
    assert p12_star.split_balance() == (1010, 1009)
    assert [(g.apix, g.box, g.voltage_kv) for g in p12_star.optics] == [(2.95, 180, 200.0)]


def test_p12_agrees_with_cryodrgn(p12_star):
    poses = np.load(P12.with_suffix(".cryodrgn_pose.npz"))
    assert angle_between_deg(p12_star.rotation, poses["rot"]).max() < 1e-3
    box, apix = 180, 2.95
    # cryoDRGN keeps shifts as box fractions: trans = shift_px / box.
    assert np.abs(p12_star.shift_A / apix - poses["trans"] * box).max() < 1e-3
    ctf = np.load(P12.with_suffix(".cryodrgn_ctf.npy"))
    expected = np.stack([np.full(len(ctf), 180.0), p12_star.apix, p12_star.defocus_u_A,
                         p12_star.defocus_v_A, p12_star.defocus_angle_deg,
                         np.full(len(ctf), 200.0), np.full(len(ctf), 2.0),
                         np.full(len(ctf), 0.07), p12_star.phase_shift_deg], axis=1)
    np.testing.assert_allclose(ctf, expected, rtol=1e-5, atol=1e-4)


def test_p12_star_back_to_cs_keeps_uids_and_fields(p12_star, tmp_path):
    original = np.load(P12.with_suffix(".cs"))
    _convert(p12_star.source, tmp_path / "back.cs")
    back = np.load(tmp_path / "back.cs")
    assert set(original.dtype.names) <= set(back.dtype.names)
    np.testing.assert_array_equal(back["uid"], original["uid"])
    for name in ("alignments3D/error", "alignments3D/psize_A", "alignments3D/class", "ctf/type",
                 "blob/sign", "ctf/exp_group_id", "alignments3D/split", "blob/idx"):
        np.testing.assert_array_equal(back[name], original[name], err_msg=name)
    np.testing.assert_allclose(back["alignments3D/shift"], original["alignments3D/shift"],
                               atol=1e-4)


def test_empiar_star_import_agrees_with_cryosparc(tmp_path):
    """STAR -> .cs against CryoSPARC's own Import Particles of the same 3.0 STAR."""
    _convert(REALCS / "empiar_10076_7.star", tmp_path / "ours.cs")
    ours = np.load(tmp_path / "ours.cs")
    theirs = np.load(REALCS / "empiar_10076_7.cs")
    np.testing.assert_array_equal(ours["blob/idx"], theirs["blob/idx"])
    np.testing.assert_array_equal(ours["blob/path"], theirs["blob/path"])
    for name in ("blob/psize_A", "blob/sign", "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast",
                 "ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "ctf/phase_shift_rad",
                 "ctf/scale", "ctf/bfactor"):
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-6, err_msg=name)
    assert ours["ctf/type"].tolist() == theirs["ctf/type"].tolist()
    # Same fields and dtypes as CryoSPARC writes, except its import job's own
    # signature; blob/shape needs the stack, absent here (no rlnImageSize).
    for name in set(theirs.dtype.names) - {"blob/import_sig"}:
        assert ours.dtype[name].base.kind == theirs.dtype[name].base.kind, name
        assert ours.dtype[name].shape == theirs.dtype[name].shape, name


def test_exported_2d_job_converts_and_says_what_is_missing(tmp_path):
    src = REALCS / "cryosparc_J2_particles_exported.cs"
    summary = _convert(src, tmp_path / "j2.star")
    assert "22 particles" in summary and "poses absent" in summary and "no half split" in summary
    ps = read_particles(src)
    assert not ps.has_pose
    assert ps.image_path[0].startswith("J1/imported/")                  # ">" removed
    with pytest.raises(InputError, match="cryosparc_J2_particles_exported.cs.*alignments2D"):
        require_poses(ps)
    with pytest.raises(InputError, match="half 1 and 0 in half 2|0 particles in half 1"):
        ps.require_halves()
    table = star_io.read_star_tables(tmp_path / "j2.star")["particles"]
    assert "rlnAngleRot" not in table.columns and "rlnRandomSubset" not in table.columns
    pyem = star_io.read_star_tables(REALCS / "cryosparc_J2_particles_exported.pyem.star")
    assert list(table["rlnImageName"]) == list(pyem["particles"]["rlnImageName"])
    # The 2D alignment rides along and comes back intact.
    _convert(tmp_path / "j2.star", tmp_path / "j2.cs")
    original, back = np.load(src), np.load(tmp_path / "j2.cs")
    for name in original.dtype.names:
        if name.startswith("alignments2D/") or name == "uid":
            np.testing.assert_array_equal(back[name], original[name], err_msg=name)
