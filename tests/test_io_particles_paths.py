"""Image paths in written particle files: the stacks are found from the project directory,
by RELION (relion_reconstruct, run where RELION runs jobs) and by gmmrefine, whatever
directory the file is written to."""

from __future__ import annotations

import dataclasses
import os
import subprocess

import mrcfile
import numpy as np
import pytest
from conftest import needs
from gmmrefine.io.particles import host_image_paths, read_particles, write_particles
from gmmrefine.simulate.dataset import simulate_dataset


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project directory holding Sim/, whose STAR names its stack from Sim/ itself."""
    root = tmp_path_factory.mktemp("project")
    simulate_dataset(root / "Sim", n=40, box=24, apix=4.0, snr=1.0, crb_sample=0)
    return root


def test_paths_name_the_stacks_from_the_project_directory(project, monkeypatch, tmp_path):
    monkeypatch.chdir(project)
    ps = read_particles("Sim/particles.star")
    assert ps.image_path[0] == "particles.mrcs" and ps.root.resolve() == (project / "Sim")
    assert set(host_image_paths(ps, project)) == {"Sim/particles.mrcs"}
    # A stack outside the project directory is named absolutely.
    assert set(host_image_paths(ps, tmp_path)) == {str(project / "Sim" / "particles.mrcs")}
    # Paths that already name the stack from the project are kept as they are.
    relion_style = read_particles(project / "Sim" / "particles.star", root=project / "Sim")
    moved = dataclasses.replace(relion_style, root=project,
                                image_path=np.array(["Sim/particles.mrcs"] * 40, object))
    np.testing.assert_array_equal(host_image_paths(moved, project), moved.image_path)
    # Without the stack there is nothing to point at: the path is kept.
    gone = dataclasses.replace(relion_style, image_path=np.array(["nowhere.mrcs"] * 40, object))
    assert set(host_image_paths(gone, project)) == {"nowhere.mrcs"}


@pytest.mark.parametrize("out", ["Out/particles.star", "Deep/er/still/particles.star",
                                 "Out/particles.cs"])
def test_gmmrefine_finds_the_stacks_of_a_file_written_anywhere(project, monkeypatch, out):
    monkeypatch.chdir(project)
    write_particles(read_particles("Sim/particles.star"), out)
    for cwd in (project, project.parent):          # the project, and elsewhere
        monkeypatch.chdir(cwd)
        back = read_particles(project / out)
        assert back.resolve_image_path(0).samefile(project / "Sim" / "particles.mrcs"), cwd


@needs("relion_reconstruct")
def test_relion_reconstructs_a_star_written_into_a_sub_directory(project, monkeypatch):
    """relion_reconstruct, run from the project directory as RELION runs every job, reads
    the stacks of a STAR gmmrefine wrote three levels down."""
    monkeypatch.chdir(project)
    write_particles(read_particles("Sim/particles.star"), "External/job007/deep/particles.star")
    run = subprocess.run(["relion_reconstruct", "--i", "External/job007/deep/particles.star",
                          "--o", "rec.mrc", "--ctf"], cwd=project, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert run.returncode == 0, run.stdout + run.stderr
    with mrcfile.open(project / "rec.mrc") as mrc:
        assert mrc.data.shape == (24,) * 3 and np.isfinite(mrc.data).all() and mrc.data.std() > 0
