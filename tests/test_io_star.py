"""STAR files read, written and read back: RELION 3.1 and 3.0, directly and through .cs."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from gmmrefine.data.rotations import angle_between_deg, euler_to_matrix
from gmmrefine.errors import InputError
from gmmrefine.io import star as star_io
from gmmrefine.io.particles import read_particles, require_poses, write_particles
from helpers_formats import write_star30, write_star31

PASSTHROUGH = ["rlnCoordinateX", "rlnCoordinateY", "rlnMicrographName", "rlnClassNumber",
               "rlnGroupName", "rlnAutopickFigureOfMerit"]


def _check_against_written(ps, truth) -> None:
    """Canonical fields equal what write_star31 put in the file (within text precision)."""
    assert ps.has_pose
    expected = euler_to_matrix(*truth["euler"].T)
    assert angle_between_deg(ps.rotation, expected).max() < 1e-3
    np.testing.assert_allclose(ps.shift_A, truth["origin"], atol=1e-3)
    np.testing.assert_allclose(ps.defocus_u_A, truth["defocus"][:, 0], rtol=1e-6)
    np.testing.assert_allclose(ps.defocus_v_A, truth["defocus"][:, 1], rtol=1e-6)
    np.testing.assert_allclose(ps.defocus_angle_deg, truth["angle"], atol=1e-3)
    np.testing.assert_array_equal(ps.half_set, truth["half"])
    np.testing.assert_allclose(ps.apix, truth["apix"], rtol=1e-6)
    np.testing.assert_array_equal(ps.box, np.where(truth["group"] == 1, 64, 48))
    refs = [f"{i + 1:06d}@{p}" for i, p in zip(ps.image_index, ps.image_path)]
    assert refs == truth["names"]
    assert [g.name for g in ps.optics] == ["opticsGroup1", "1"]
    assert [g.voltage_kv for g in ps.optics] == [300.0, 200.0]


def _check_passthrough(table: pd.DataFrame, truth) -> None:
    assert list(table["rlnMicrographName"]) == truth["mics"]          # "0001" stays "0001"
    assert list(table["rlnGroupName"]) == truth["group_names"]        # "1" stays text
    np.testing.assert_array_equal(table["rlnClassNumber"].to_numpy(int), truth["klass"])
    np.testing.assert_allclose(table[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy(float),
                               truth["coord"], atol=1e-6)


def test_star31_reads_canonical_fields_and_strings_exactly(tmp_path):
    truth = write_star31(tmp_path / "in.star")
    ps = read_particles(tmp_path / "in.star")
    _check_against_written(ps, truth)
    _check_passthrough(ps.star_particles, truth)
    assert ps.meta["star_style"] == "3.1"


def test_star31_to_star31_keeps_every_column(tmp_path):
    truth = write_star31(tmp_path / "in.star")
    before = (tmp_path / "in.star").read_text()
    ps = read_particles(tmp_path / "in.star")
    write_particles(ps, tmp_path / "out.star")
    assert (tmp_path / "in.star").read_text() == before          # input untouched
    back = read_particles(tmp_path / "out.star")
    _check_against_written(back, truth)
    _check_passthrough(back.star_particles, truth)
    assert set(ps.star_particles.columns) <= set(back.star_particles.columns)
    assert list(back.star_optics["rlnMicrographOriginalPixelSize"]) == [0.5, 0.75]
    assert list(back.star_optics["rlnOpticsGroup"]) == [1, 2]


def test_star31_through_cs_keeps_poses_ctf_and_passthrough(tmp_path):
    truth = write_star31(tmp_path / "in.star")
    ps = read_particles(tmp_path / "in.star")
    write_particles(ps, tmp_path / "mid.cs")
    mid = np.load(tmp_path / "mid.cs")
    # Known meanings map to CryoSPARC's fields; the rest rides as rln/<label>.
    assert mid["location/micrograph_path"].tolist() == [m.encode() for m in truth["mics"]]
    np.testing.assert_array_equal(mid["alignments3D/class"], truth["klass"] - 1)
    np.testing.assert_array_equal(mid["ctf/exp_group_id"], truth["group"] - 1)
    assert mid["rln/rlnGroupName"].dtype.kind == "S"
    assert mid["rlnOptics/rlnMicrographOriginalPixelSize"].tolist() == \
        [0.5 if g == 1 else 0.75 for g in truth["group"]]
    write_particles(read_particles(tmp_path / "mid.cs"), tmp_path / "back.star")
    back = read_particles(tmp_path / "back.star")
    _check_against_written(back, truth)
    _check_passthrough(back.star_particles, truth)
    assert set(ps.star_particles.columns) <= set(back.star_particles.columns)
    assert list(back.star_optics["rlnMicrographOriginalPixelSize"]) == [0.5, 0.75]
    # STAR-born particles get uids on the way through; they stay with the rows.
    np.testing.assert_array_equal(back.uid, mid["uid"])


def test_the_same_particles_give_the_same_bytes_at_any_time(tmp_path, monkeypatch):
    # A resumed run writes its STAR again and later stages compare its content hash, so
    # the time of writing (which the STAR library puts on the first line) must not show.
    write_star31(tmp_path / "in.star")
    ps = read_particles(tmp_path / "in.star")
    write_particles(ps, tmp_path / "a.star")
    later = "# Created by the starfile Python package (version 0) at 23:59:59 on 31/12/2030"
    monkeypatch.setattr("starfile.writer.package_info", lambda: later)
    write_particles(ps, tmp_path / "b.star")
    assert (tmp_path / "a.star").read_bytes() == (tmp_path / "b.star").read_bytes()
    assert (tmp_path / "a.star").read_text().startswith("# Written by gmmrefine")


def test_angles_written_to_1e6_degree(tmp_path):
    truth = write_star31(tmp_path / "in.star", n=40, seed=5)
    ps = read_particles(tmp_path / "in.star")
    rng = np.random.default_rng(9)
    rotation = euler_to_matrix(*(truth["euler"] + rng.uniform(-1, 1, truth["euler"].shape)).T)
    moved = ps.with_poses(rotation, ps.shift_A + 0.123456789)
    write_particles(moved, tmp_path / "out.star")
    table = star_io.read_star_tables(tmp_path / "out.star")["particles"]
    written = euler_to_matrix(table["rlnAngleRot"], table["rlnAngleTilt"], table["rlnAnglePsi"])
    # Compare the matrices element-wise: 1e-6 degree is ~1.7e-8 in a matrix entry.
    assert np.abs(written - rotation).max() < np.radians(1e-6)
    assert np.abs(table["rlnOriginXAngst"].to_numpy() - moved.shift_A[:, 0]).max() < 1e-6


def test_star30_stays_30_with_origins_in_pixels(tmp_path):
    truth = write_star30(tmp_path / "old.star")
    ps = read_particles(tmp_path / "old.star")
    assert ps.meta["star_style"] == "3.0"
    np.testing.assert_allclose(ps.apix, truth["apix"])
    np.testing.assert_allclose(ps.shift_A, truth["origin_px"] * truth["apix"], atol=1e-6)
    np.testing.assert_array_equal(ps.image_index, np.arange(8))
    write_particles(ps, tmp_path / "out.star")
    tables = star_io.read_star_tables(tmp_path / "out.star")
    assert "optics" not in tables
    (table,) = tables.values()
    np.testing.assert_allclose(table[["rlnOriginX", "rlnOriginY"]].to_numpy(), truth["origin_px"],
                               atol=1e-6)
    np.testing.assert_allclose(1e4 * table["rlnDetectorPixelSize"] / table["rlnMagnification"],
                               truth["apix"], rtol=1e-9)
    assert list(table["rlnGroupNumber"]) == [1, 1, 1, 1, 2, 2, 2, 2]
    assert list(table["rlnImageName"]) == [f"{i + 1}@particles.mrcs" for i in range(8)]


def test_star30_through_cs_becomes_31_with_the_same_poses(tmp_path):
    truth = write_star30(tmp_path / "old.star")
    ps = read_particles(tmp_path / "old.star")
    write_particles(ps, tmp_path / "mid.cs")
    write_particles(read_particles(tmp_path / "mid.cs"), tmp_path / "new.star")
    back = read_particles(tmp_path / "new.star")
    assert back.meta["star_style"] == "3.1"
    assert angle_between_deg(back.rotation, euler_to_matrix(*truth["euler"].T)).max() < 1e-3
    np.testing.assert_allclose(back.shift_A, truth["origin_px"] * truth["apix"], atol=1e-3)
    np.testing.assert_allclose(back.apix, truth["apix"], rtol=1e-6)
    np.testing.assert_array_equal(back.half_set, ps.half_set)
    assert list(back.star_particles["rlnMicrographName"]) == \
        list(ps.star_particles["rlnMicrographName"])


def test_star_without_angles_has_no_pose_and_keeps_psi(tmp_path):
    text = ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnImagePixelSize\n_rlnImageSize\n"
            "_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n1 1.2 64 300 2.7 0.1\n"
            "data_particles\nloop_\n_rlnImageName\n_rlnDefocusU\n_rlnDefocusV\n_rlnAnglePsi\n"
            "_rlnOpticsGroup\n1@a.mrcs 10000 9000 33.5 1\nb.mrc 10000 9000 12.25 1\n")
    (tmp_path / "p.star").write_text(text)
    ps = read_particles(tmp_path / "p.star")
    assert not ps.has_pose
    np.testing.assert_array_equal(ps.image_index, [0, 0])          # bare path = image 0
    assert list(ps.image_path) == ["a.mrcs", "b.mrc"]
    np.testing.assert_array_equal(ps.rotation, np.tile(np.eye(3), (2, 1, 1)))
    with pytest.raises(InputError, match="p.star.*rlnAngleRot"):
        require_poses(ps)
    write_particles(ps, tmp_path / "p.cs")
    back = read_particles(tmp_path / "p.cs")
    assert not back.has_pose
    write_particles(back, tmp_path / "q.star")
    assert list(read_particles(tmp_path / "q.star").star_particles["rlnAnglePsi"]) == [33.5, 12.25]


def test_image_root_follows_relion(tmp_path, monkeypatch):
    write_star31(tmp_path / "in.star")
    project = tmp_path / "project"
    (project / "Extract/job007/mics").mkdir(parents=True)
    (project / "Extract/job007/mics/stack_0000.mrcs").write_bytes(b"")
    monkeypatch.chdir(project)
    assert read_particles(tmp_path / "in.star").root == project      # the project dir = cwd
    monkeypatch.chdir(tmp_path)
    assert read_particles(tmp_path / "in.star").root == tmp_path     # else the STAR's directory
    assert read_particles(tmp_path / "in.star", root=project).root == project
    # Run from anywhere on a STAR inside the project (Refine3D/job010/run_data.star):
    # the project is found above the STAR, where RELION's relative paths start.
    (project / "Refine3D/job010").mkdir(parents=True)
    (tmp_path / "in.star").rename(project / "Refine3D/job010/run_data.star")
    assert read_particles(project / "Refine3D/job010/run_data.star").root == project


@pytest.mark.skipif(shutil.which("relion_star_handler") is None, reason="RELION not installed")
def test_relion_reads_our_star_and_keeps_carried_columns(tmp_path):
    """RELION 3.1 reads the STAR we write from a .cs, and its own output keeps the
    cs:<field> columns, so the uid survives a RELION job in between."""
    from helpers_formats import make_cs, save_cs_file
    arr = make_cs(n=6)
    save_cs_file(tmp_path / "in.cs", arr)
    ps = read_particles(tmp_path / "in.cs")
    write_particles(ps, tmp_path / "ours.star")
    run = subprocess.run(["relion_star_handler", "--i", "ours.star", "--o", "relion.star",
                          "--select", "rlnRandomSubset", "--minval", "0", "--maxval", "3"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    back = read_particles(tmp_path / "relion.star")
    np.testing.assert_array_equal(back.uid, arr["uid"])
    assert angle_between_deg(back.rotation, ps.rotation).max() < 1e-3
    write_particles(back, tmp_path / "back.cs")
    again = np.load(tmp_path / "back.cs")
    np.testing.assert_array_equal(again["location/center_x_frac"], arr["location/center_x_frac"])
    np.testing.assert_array_equal(again["ctf/anisomag"], arr["ctf/anisomag"])
