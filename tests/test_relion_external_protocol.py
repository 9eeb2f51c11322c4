"""gmmrefine-relion as RELION runs it: --pipeline_control, the abort file, logfile.pdf as an
output node, run.err for errors only, image paths RELION finds. The last test runs the job
through RELION's own relion_pipeliner, as the GUI does, and reads its outputs back with
relion_reconstruct."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
from gmmrefine.relion_external import pipeline_files as pf
from gmmrefine.relion_external.job import main
from gmmrefine.relion_external.params import parse_command, split_arguments
from gmmrefine.relion_external.streams import errors_only_on_stderr
from gmmrefine.simulate.dataset import simulate_dataset


def test_pipeline_control_that_relion_appends_is_accepted():
    # RELION 3.1.3 appends it to any command containing "relion_" (pipeline_jobs.cpp).
    argv = ("--o External/job003/ --in_parts P.star --iter 2 --j 2 "
            "--pipeline_control External/job003/").split()
    command = parse_command(split_arguments(argv))
    assert command.options.iterations == 2 and str(command.job_dir) == "External/job003"


@pytest.mark.parametrize("version, label", [(3, "LogFile.pdf.relion"), (4, "LogFile.pdf.relion"),
                                            (5, "LogFile.pdf.relion")])
def test_logfile_pdf_is_declared_with_relions_node_type(tmp_path, version, label):
    nodes = [pf.OutputNode("External/job001/logfile.pdf", "logfile")]
    table = starfile.read(pf.write_output_nodes(tmp_path, nodes, version))
    assert table["rlnPipeLineNodeType"].tolist() == [13]      # 3.1's NODE_PDF_LOGFILE
    assert table["rlnPipeLineNodeTypeLabel"].tolist() == [label]


def test_native_lines_and_warnings_leave_stderr_to_errors(capfd, caplog):
    with caplog.at_level(logging.INFO, logger="gmmrefine"), errors_only_on_stderr():
        os.write(2, b"E0000 00:00 cuda_executor.cc failed call to cuInit\n")   # as C++ writes
        warnings.warn("a library's deprecation", DeprecationWarning)
        print("gmmrefine-relion: error: a real one", file=sys.stderr, flush=True)
    out, err = capfd.readouterr()
    assert "cuInit" in out and "cuInit" not in err
    assert err.strip() == "gmmrefine-relion: error: a real one"
    assert any("a library's deprecation" in r.getMessage() for r in caplog.records)
    os.write(2, b"after\n")                     # descriptor 2 is stderr again
    assert capfd.readouterr().err == "after\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A RELION project whose Sim/particles.star names its stack from Sim/ (as the
    simulator writes it), not from the project directory."""
    root = tmp_path_factory.mktemp("relion_project")
    simulate_dataset(root / "Sim", n=200, box=32, apix=3.2, snr=0.1, crb_sample=0)
    (root / "default_pipeline.star").write_text(
        "data_pipeline_general\n\n_rlnPipeLineJobCounter 1\n")
    return root


@pytest.mark.slow
def test_an_abort_removes_the_request_and_a_rerun_by_hand_finishes(project, monkeypatch, capfd):
    monkeypatch.chdir(project)
    job_dir = project / "External" / "job090"
    job_dir.mkdir(parents=True)
    (job_dir / pf.ABORT_NOW).touch()
    argv = ["--o", "External/job090/", "--in_parts", "Sim/particles.star", "--iter", "1",
            "--j", "2"]
    assert main(argv) == 2
    assert (job_dir / pf.ABORTED).exists() and not (job_dir / pf.ABORT_NOW).exists()
    assert main(argv) == 0                       # not stopped at once by a stale request
    assert (job_dir / pf.SUCCESS).exists() and not (job_dir / pf.ABORTED).exists()
    out, err = capfd.readouterr()
    assert err == "" and "computing on" in out and "GMM fit:" in out
    log = (job_dir / "run.log").read_text()
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d computing on", log, re.MULTILINE)


def _environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "2"}


@pytest.mark.slow
@pytest.mark.skipif(any(shutil.which(p) is None for p in ("relion_pipeliner", "relion_reconstruct")),
                    reason="RELION's relion_pipeliner / relion_reconstruct not installed")
def test_relion_runs_the_job_appending_pipeline_control(project):
    # "python -m gmmrefine.relion_external" contains "relion_": RELION appends
    # --pipeline_control to it, which stopped the job with "unknown parameter" before.
    executable = f"{sys.executable} -m gmmrefine.relion_external"
    before = set((project / "External").glob("job*"))
    shutil.rmtree(project / ".relion_lock", ignore_errors=True)
    subprocess.run(["relion_pipeliner", "--addJob", "External", "--addJobOptions",
                    f"fn_exe == {executable};in_part == Sim/particles.star;param1_label == iter;"
                    "param1_value == 1;nr_threads == 2;"], cwd=project, check=True,
                   capture_output=True, timeout=60, env=_environment())
    (new,) = set((project / "External").glob("job*")) - before
    job = f"External/{new.name}/"
    shutil.rmtree(project / ".relion_lock", ignore_errors=True)
    run = subprocess.run(["relion_pipeliner", "--RunJobs", job], cwd=project,
                         capture_output=True, text=True, timeout=900, env=_environment())
    assert run.returncode == 0, run.stdout + run.stderr
    job_dir = project / job
    assert (job_dir / pf.SUCCESS).exists(), (job_dir / "run.err").read_text()
    assert "--pipeline_control" in (job_dir / "note.txt").read_text()
    assert (job_dir / "run.err").read_text() == ""            # errors only, and there were none
    nodes = starfile.read(project / "default_pipeline.star", always_dict=True)["pipeline_nodes"]
    declared = dict(zip(nodes["rlnPipeLineNodeName"], nodes["rlnPipeLineNodeType"]))
    assert declared[f"{job}logfile.pdf"] == 13
    assert (job_dir / "logfile.pdf").read_bytes().startswith(b"%PDF")
    # The refined STAR names the stack from the project directory, where RELION runs.
    names = starfile.read(job_dir / "particles.star")["particles"]["rlnImageName"]
    assert set(name.split("@")[1] for name in names) == {"Sim/particles.mrcs"}
    rec = subprocess.run(["relion_reconstruct", "--i", f"{job}particles.star", "--o",
                          "rec_refined.mrc", "--ctf"], cwd=project, capture_output=True,
                         text=True, timeout=120, env=_environment())
    assert rec.returncode == 0, rec.stdout + rec.stderr
    with mrcfile.open(project / "rec_refined.mrc") as mrc:
        assert mrc.data.shape == (32,) * 3 and np.isfinite(mrc.data).all()
