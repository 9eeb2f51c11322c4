"""RELION's pipeline files: the version from job.star, output nodes, exit markers."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess

import pytest
import starfile
from gmmrefine.relion_external import pipeline_files as pf

_JOB_STAR_31 = "\n# version 30001\n\ndata_job\n\n_rlnJobType 99\n_rlnJobIsContinue 0\n"
_JOB_STAR_40 = ("\n# version 30001\n\ndata_job\n\n_rlnJobTypeLabel relion.external\n"
                "_rlnJobIsContinue 0\n_rlnJobIsTomo 0\n")
_JOB_STAR_50 = _JOB_STAR_40.replace("30001", "50001")


@pytest.mark.parametrize("text, version", [(None, 3), (_JOB_STAR_31, 3), (_JOB_STAR_40, 4),
                                           (_JOB_STAR_50, 5)])
def test_relion_version_from_job_star(tmp_path, text, version):
    if text is not None:
        (tmp_path / "job.star").write_text(text)
    assert pf.relion_version(tmp_path) == version


@pytest.mark.skipif(shutil.which("relion_pipeliner") is None, reason="relion_pipeliner not installed")
def test_relion_version_of_a_real_31_job_star(tmp_path):
    (tmp_path / "default_pipeline.star").write_text("data_pipeline_general\n\n_rlnPipeLineJobCounter 1\n")
    subprocess.run(["relion_pipeliner", "--addJob", "External", "--addJobOptions",
                    "fn_exe == true;in_part == P.star;"], cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    banner = subprocess.run(["relion_pipeliner", "--version"], capture_output=True, text=True,
                            timeout=60).stdout
    major = int(re.search(r"RELION version: (\d+)", banner).group(1))
    assert pf.relion_version(tmp_path / "External" / "job001") == major


@pytest.mark.parametrize("version, particles_label", [(3, "ParticlesData.star.relion"),
                                                      (4, "ParticlesData.star.relion"),
                                                      (5, "ParticleGroupMetadata.star.relion")])
def test_output_nodes_carry_both_type_columns(tmp_path, version, particles_label):
    nodes = [pf.OutputNode("External/job001/particles.star", "particles"),
             pf.OutputNode("External/job001/half1.mrc", "halfmap"),
             pf.OutputNode("External/job001/map.mrc", "map")]
    table = starfile.read(pf.write_output_nodes(tmp_path, nodes, version))
    assert table["rlnPipeLineNodeName"].tolist() == [n.path for n in nodes]
    assert table["rlnPipeLineNodeType"].tolist() == [3, 10, 6]
    assert table["rlnPipeLineNodeTypeLabel"].tolist() == [
        particles_label, "DensityMap.mrc.halfmap", "DensityMap.mrc"]


def test_clear_exit_markers_keeps_an_abort_request(tmp_path):
    for name in (*pf.EXIT_MARKERS, pf.ABORT_NOW):
        (tmp_path / name).touch()
    pf.clear_exit_markers(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [pf.ABORT_NOW]
    assert pf.abort_requested(tmp_path)
    assert dataclasses.is_dataclass(pf.OutputNode)
