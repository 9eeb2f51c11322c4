""".cs files read, written and read back, directly and through STAR."""

from __future__ import annotations

import numpy as np
import pytest
from gmmrefine.data.rotations import angle_between_deg
from gmmrefine.io import star as star_io
from gmmrefine.io.particles import read_particles, write_particles
from helpers_formats import make_cs, save_cs_file, write_star31
from scipy.spatial.transform import Rotation

CANONICAL = {"uid", "blob/path", "blob/idx", "blob/shape", "blob/psize_A", "ctf/exp_group_id",
             "ctf/accel_kv", "ctf/cs_mm", "ctf/amp_contrast", "ctf/df1_A", "ctf/df2_A",
             "ctf/df_angle_rad", "ctf/phase_shift_rad", "ctf/scale", "alignments3D/split",
             "alignments3D/pose", "alignments3D/shift"}


def test_cs_reads_with_pyem_conventions_and_alignment_pixel_size(tmp_path):
    arr = make_cs(align_psize=2.0, blob_psize=1.0)
    (tmp_path / "J5").mkdir()
    ps = read_particles(save_cs_file(tmp_path / "J5" / "p.cs", arr))
    expected = np.transpose(Rotation.from_rotvec(arr["alignments3D/pose"]).as_matrix(), (0, 2, 1))
    assert angle_between_deg(ps.rotation, expected).max() < 1e-4
    # Shifts are in pixels of the alignment's grid (2 A here), not the blob's (pyem PR #125).
    np.testing.assert_allclose(ps.shift_A, arr["alignments3D/shift"] * 2.0, rtol=1e-6)
    np.testing.assert_array_equal(ps.half_set, arr["alignments3D/split"] + 1)
    np.testing.assert_array_equal(ps.uid, arr["uid"])
    np.testing.assert_array_equal(ps.image_index, arr["blob/idx"])
    assert ps.image_path[0] == "J3/extract/000_particles.mrc"      # ">" is not part of the path
    np.testing.assert_allclose(ps.defocus_angle_deg, np.degrees(arr["ctf/df_angle_rad"]), rtol=1e-6)
    assert len(ps.optics) == 2 and {g.name for g in ps.optics} == {"opticsGroup1", "opticsGroup2"}
    assert ps.root == tmp_path                                        # the project directory


def test_cs_to_cs_keeps_every_field_and_uid(tmp_path):
    arr = make_cs()
    ps = read_particles(save_cs_file(tmp_path / "in.cs", arr))
    new_rotation = Rotation.from_rotvec(np.full((len(ps), 3), 0.01)).as_matrix() @ ps.rotation
    write_particles(ps.with_poses(new_rotation, ps.shift_A + 1.0), tmp_path / "out.cs")
    out = np.load(tmp_path / "out.cs")
    assert out.dtype == arr.dtype                                     # same fields, order, dtypes
    for name in arr.dtype.names:
        if name not in CANONICAL:
            np.testing.assert_array_equal(out[name], arr[name], err_msg=name)
    np.testing.assert_array_equal(out["uid"], arr["uid"])
    np.testing.assert_array_equal(out["blob/path"], arr["blob/path"])   # ">" kept
    back = read_particles(tmp_path / "out.cs")
    assert angle_between_deg(back.rotation, new_rotation).max() < 1e-3
    np.testing.assert_allclose(back.shift_A, ps.shift_A + 1.0, atol=1e-3)
    np.testing.assert_allclose(out["alignments3D/shift"], (ps.shift_A + 1.0) / 2.0, atol=1e-5)


def test_cs_through_star_restores_every_field(tmp_path):
    arr = make_cs()
    ps = read_particles(save_cs_file(tmp_path / "in.cs", arr))
    write_particles(ps, tmp_path / "mid.star")
    table = star_io.read_star_tables(tmp_path / "mid.star")["particles"]
    assert "cs:ctf/anisomag:f4:2x2:3" in table.columns
    assert list(table["rlnMicrographName"][:2]) == ["mic_0000.mrc", "mic_0000.mrc"]
    np.testing.assert_array_equal(table["rlnClassNumber"], arr["alignments3D/class"] + 1)
    write_particles(read_particles(tmp_path / "mid.star"), tmp_path / "back.cs")
    back = np.load(tmp_path / "back.cs")
    assert set(arr.dtype.names) <= set(back.dtype.names)
    for name in arr.dtype.names:
        if name in ("blob/path", "location/micrograph_path"):     # text via STAR: width may change
            assert back.dtype[name].kind == "S", name
        else:
            assert back.dtype[name] == arr.dtype[name], name
        if name in CANONICAL and name != "uid":
            continue
        np.testing.assert_array_equal(back[name], arr[name], err_msg=name)
    again = read_particles(tmp_path / "back.cs")
    assert angle_between_deg(again.rotation, ps.rotation).max() < 1e-3
    np.testing.assert_allclose(back["alignments3D/shift"], arr["alignments3D/shift"], atol=1e-3)
    for name in ("ctf/df1_A", "ctf/df2_A", "ctf/df_angle_rad", "blob/idx", "alignments3D/split",
                 "ctf/exp_group_id", "blob/psize_A", "blob/shape"):
        np.testing.assert_allclose(back[name], arr[name], rtol=1e-6, err_msg=name)


def test_written_cs_loads_in_cryosparc_tools(tmp_path):
    dataset = pytest.importorskip("cryosparc.dataset")
    arr = make_cs()
    write_particles(read_particles(save_cs_file(tmp_path / "in.cs", arr)), tmp_path / "out.cs")
    loaded = dataset.Dataset.load(tmp_path / "out.cs")
    np.testing.assert_array_equal(loaded["uid"], arr["uid"])
    np.testing.assert_allclose(loaded["alignments3D/pose"], arr["alignments3D/pose"], atol=1e-5)
    assert loaded["blob/path"][0] == ">J3/extract/000_particles.mrc"


def test_star_to_cs_uids_are_fresh_unique_and_deterministic(tmp_path):
    write_star31(tmp_path / "in.star", n=30)
    ps = read_particles(tmp_path / "in.star")
    write_particles(ps, tmp_path / "a.cs")
    write_particles(ps, tmp_path / "b.cs")
    a, b = np.load(tmp_path / "a.cs"), np.load(tmp_path / "b.cs")
    assert len(np.unique(a["uid"])) == 30 and np.all(a["uid"] != 0)
    np.testing.assert_array_equal(a["uid"], b["uid"])


def test_many_class_cs_with_large_header(tmp_path):
    """Many-class jobs have .npy headers over 64 KiB (format 2.0; pyem #131)."""
    arr = make_cs(many_fields=1500)
    with pytest.warns(UserWarning, match="format 2.0"):
        save_cs_file(tmp_path / "big.cs", arr)
    with open(tmp_path / "big.cs", "rb") as f:
        assert f.read(8)[6] >= 2                                      # header version byte
    ps = read_particles(tmp_path / "big.cs")
    assert len(ps) == len(arr)
    write_particles(ps, tmp_path / "big_out.cs")
    out = np.load(tmp_path / "big_out.cs", max_header_size=10 ** 6)
    np.testing.assert_array_equal(out["alignments_class_1499/class_posterior"], 1499)


def test_cs_in_cryosparc_tools_compressed_format(tmp_path):
    dataset = pytest.importorskip("cryosparc.dataset")
    arr = make_cs()
    dataset.Dataset(arr).save(tmp_path / "stream.cs", format=dataset.CSDAT_FORMAT)
    ps = read_particles(tmp_path / "stream.cs")
    np.testing.assert_array_equal(ps.uid, arr["uid"])
    np.testing.assert_allclose(ps.shift_A, arr["alignments3D/shift"] * 2.0, rtol=1e-6)
    write_particles(ps, tmp_path / "plain.cs")                      # written as plain .npy
    np.testing.assert_array_equal(np.load(tmp_path / "plain.cs")["alignments3D/error"],
                                  arr["alignments3D/error"])
