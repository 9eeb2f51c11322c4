"""gmmrefine-relion without RELION: every exit path of the job."""

from __future__ import annotations

import importlib

import pytest
from gmmrefine.relion_external import pipeline_files as pf
from gmmrefine.relion_external.job import main
from gmmrefine.simulate.dataset import simulate_dataset


def _only_failure_left(job_dir) -> None:
    assert sorted(p.name for p in job_dir.iterdir()) == [pf.FAILURE]


def test_unknown_parameter_fails_with_marker_and_nothing_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "P.star").write_text("data_\n")
    job_dir = tmp_path / "External" / "job001"
    job_dir.mkdir(parents=True)
    (job_dir / pf.SUCCESS).touch()   # stale from an earlier run
    status = main(["--o", "External/job001/", "--in_parts", "P.star", "--bogus", "1", "--j", "1"])
    assert status == 1
    _only_failure_left(job_dir)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--bogus" in err[0] and "iter" in err[0]


def test_missing_input_node_fails_before_any_compute(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status = main(["--o", "External/job002/", "--in_parts", "Missing/particles.star"])
    assert status == 1
    _only_failure_left(tmp_path / "External" / "job002")
    err = capsys.readouterr().err
    assert "Missing/particles.star" in err and "not found" in err


def test_no_output_directory_is_reported_without_marker(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["--in_parts", "P.star"]) == 1
    assert list(tmp_path.iterdir()) == []
    assert "--o" in capsys.readouterr().err


def test_crash_leaves_failure_marker_with_exception_line(tmp_path, monkeypatch, capsys):
    refine = importlib.import_module("gmmrefine.pipeline.run")

    def crash(*args, **kwargs):
        raise RuntimeError("out of memory in batch 3")

    monkeypatch.setattr(refine, "run_refinement", crash)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "P.star").write_text("data_\n")
    assert main(["--o", "External/job004/", "--in_parts", "P.star"]) == 1
    _only_failure_left(tmp_path / "External" / "job004")
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == "gmmrefine-relion: error: RuntimeError: out of memory in batch 3"


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_dataset(out, n=200, box=32, apix=3.2, snr=0.1, crb_sample=0)
    return out


@pytest.mark.slow
def test_abort_before_first_batch_writes_aborted(simulated, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(simulated)
    job_dir = tmp_path / "job005"
    job_dir.mkdir()
    (job_dir / pf.ABORT_NOW).touch()
    status = main(["--o", f"{job_dir}/", "--in_parts", "particles.star", "--iter", "1", "--j", "2"])
    assert status == 2
    assert (job_dir / pf.ABORTED).exists()
    assert not (job_dir / pf.SUCCESS).exists() and not (job_dir / pf.FAILURE).exists()
    assert not (job_dir / pf.OUTPUT_NODES).exists() and not (job_dir / "particles.star").exists()
    assert "aborted" in capsys.readouterr().out
