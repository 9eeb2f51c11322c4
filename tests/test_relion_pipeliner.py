"""gmmrefine-relion run by real RELION: added as an External job and run by relion_pipeliner
the way the GUI does, its outputs read back by relion_reconstruct and relion_postprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
from gmmrefine.fourier.masks import soft_sphere
from gmmrefine.io.mrc import write_map
from gmmrefine.relion_external import pipeline_files as pf
from gmmrefine.simulate.dataset import simulate_dataset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        any(shutil.which(p) is None for p in ("relion_pipeliner", "relion_reconstruct",
                                              "relion_postprocess")),
        reason="RELION's relion_pipeliner / relion_reconstruct / relion_postprocess not installed"),
]

BOX, APIX = 32, 3.2


def _environment(tmp: Path) -> dict:
    """PATH with gmmrefine-relion on it: the venv's console script, else a wrapper."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "gmmrefine-relion").exists():
        bin_dir = tmp / "bin"
        bin_dir.mkdir(exist_ok=True)
        wrapper = bin_dir / "gmmrefine-relion"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m gmmrefine.relion_external "$@"\n')
        wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A RELION project: simulated particles under Sim/, named project-relative."""
    root = tmp_path_factory.mktemp("relion_project")
    simulate_dataset(root / "Sim", n=200, box=BOX, apix=APIX, snr=0.1, crb_sample=0)
    star = root / "Sim" / "particles.star"
    star.write_text(star.read_text().replace("@particles.mrcs", "@Sim/particles.mrcs"))
    write_map(root / "Sim" / "mask.mrc",
              soft_sphere(BOX, (BOX // 2,) * 3, BOX * 0.35, 3.0), APIX)
    (root / "default_pipeline.star").write_text(
        "data_pipeline_general\n\n_rlnPipeLineJobCounter 1\n")
    return root


def _pipeliner(project: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    shutil.rmtree(project / ".relion_lock", ignore_errors=True)   # a stale lock blocks it
    run = subprocess.run(["relion_pipeliner", *args], cwd=project, env=_environment(project),
                         capture_output=True, text=True, timeout=timeout)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def _add_external_job(project: Path, params: dict[str, str]) -> str:
    """Add an External job as the GUI would; return its directory name."""
    before = set((project / "External").glob("job*")) if (project / "External").exists() else set()
    rows = "".join(f"param{i}_label == {label};param{i}_value == {value};"
                   for i, (label, value) in enumerate(params.items(), start=1))
    _pipeliner(project, "--addJob", "External", "--addJobOptions",
               f"fn_exe == gmmrefine-relion;in_part == Sim/particles.star;{rows}nr_threads == 2;")
    (new,) = set((project / "External").glob("job*")) - before
    return f"External/{new.name}/"


def _status(project: Path, job: str) -> int:
    table = starfile.read(project / "default_pipeline.star", always_dict=True)["pipeline_processes"]
    return int(table.set_index("rlnPipeLineProcessName").loc[job, "rlnPipeLineProcessStatus"])


def test_job_runs_and_relion_reads_its_outputs(project):
    # A label as the option table spells it (low-cut, at its default) and one in the
    # underscore spelling of jobs set up with earlier versions (patch_iter).
    job = _add_external_job(project, {"iter": "1", "low-cut": "25", "patch_iter": "3"})
    _pipeliner(project, "--RunJobs", job)
    job_dir = project / job
    assert (job_dir / pf.SUCCESS).exists(), (job_dir / "run.err").read_text()
    assert _status(project, job) == 2          # PROC_FINISHED_SUCCESS
    nodes = starfile.read(project / "default_pipeline.star", always_dict=True)["pipeline_nodes"]
    declared = dict(zip(nodes["rlnPipeLineNodeName"], nodes["rlnPipeLineNodeType"]))
    assert declared[f"{job}particles.star"] == 3
    assert declared[f"{job}half1.mrc"] == declared[f"{job}half2.mrc"] == 10
    assert declared[f"{job}map.mrc"] == 6
    assert "refining Sim/particles.star" in (job_dir / "run.out").read_text()

    rec = subprocess.run(["relion_reconstruct", "--i", f"{job}particles.star", "--o",
                          "rec_refined.mrc", "--ctf"], cwd=project, capture_output=True,
                         text=True, timeout=120)
    assert rec.returncode == 0, rec.stderr
    with mrcfile.open(project / "rec_refined.mrc") as mrc:
        assert mrc.data.shape == (BOX,) * 3 and np.isfinite(mrc.data).all() and mrc.data.std() > 0

    (project / "PostProcess").mkdir(exist_ok=True)
    post = subprocess.run(["relion_postprocess", "--i", f"{job}half1.mrc", "--i2",
                           f"{job}half2.mrc", "--mask", "Sim/mask.mrc", "--angpix", str(APIX),
                           "--o", "PostProcess/postprocess"], cwd=project, capture_output=True,
                          text=True, timeout=120)
    assert post.returncode == 0, post.stderr
    assert "FINAL RESOLUTION" in post.stdout

    # Running again continues: the finished iteration is not redone, the job succeeds again.
    start = time.monotonic()
    again = subprocess.run(["gmmrefine-relion", "--o", job, "--in_parts", "Sim/particles.star",
                            "--iter", "1", "--j", "2"], cwd=project, env=_environment(project),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (job_dir / pf.SUCCESS).exists() and not (job_dir / pf.FAILURE).exists()
    assert time.monotonic() - start < 60


def test_unknown_parameter_fails_cleanly(project):
    job = _add_external_job(project, {"iter": "1", "bogus_option": "3"})
    _pipeliner(project, "--RunJobs", job)
    job_dir = project / job
    assert (job_dir / pf.FAILURE).exists() and not (job_dir / pf.SUCCESS).exists()
    assert _status(project, job) == 3          # PROC_FINISHED_FAILURE
    err = (job_dir / "run.err").read_text().strip().splitlines()
    assert len(err) == 1 and "--bogus_option" in err[0] and "known labels" in err[0]
    written = {p.name for p in job_dir.iterdir()}
    assert not written & {pf.OUTPUT_NODES, "particles.star", "half1.mrc", "map.mrc", "run.json"}


def test_abort_button_stops_the_job(project):
    job = _add_external_job(project, {"iter": "3"})
    job_dir = project / job
    shutil.rmtree(project / ".relion_lock", ignore_errors=True)
    runner = subprocess.Popen(["relion_pipeliner", "--RunJobs", job], cwd=project,
                              env=_environment(project), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        # The GUI's abort button: create the file once the job has started.
        deadline = time.monotonic() + 60
        while not (job_dir / "run.out").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        (job_dir / pf.ABORT_NOW).touch()
        assert runner.wait(timeout=240) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
    assert (job_dir / pf.ABORTED).exists(), (job_dir / "run.err").read_text()
    assert not (job_dir / pf.SUCCESS).exists() and not (job_dir / pf.FAILURE).exists()
    assert _status(project, job) == 4          # PROC_FINISHED_ABORTED
    assert not (job_dir / pf.OUTPUT_NODES).exists()
