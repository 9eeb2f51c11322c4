"""A run owns its directory: no output over the inputs, one run at a time, a record written
first, and a killed run resumed to exactly what an uninterrupted one writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gmmrefine.cli.main import cli
from gmmrefine.errors import InputError
from gmmrefine.io.mrc import read_map
from gmmrefine.pipeline.ownership import LOCK, RECORD, RunIdentity, claimed, file_sha256


def _identity(tmp_path: Path, command: str = "refine", **options) -> RunIdentity:
    particles = tmp_path / "inputs" / "particles.star"
    particles.parent.mkdir(exist_ok=True)
    if not particles.exists():
        particles.write_text("data_particles\n")
    return RunIdentity(command, {"particles": particles}, {"sym": "C1", "iterations": 2,
                                                           **options},
                       resumable=frozenset({"iterations"}), defaults={"sym": "C1"},
                       spelling={"sym": "sym", "iterations": "iter"})


def test_the_record_is_written_first_and_names_inputs_by_content(tmp_path):
    identity = _identity(tmp_path)
    with claimed(tmp_path / "run", identity) as record:
        on_disk = json.loads((tmp_path / "run" / RECORD).read_text())
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([RECORD, LOCK])
    particles = identity.inputs["particles"]
    assert on_disk == record
    assert on_disk["command"] == "refine" and on_disk["input"] == str(particles.resolve())
    assert on_disk["input_sha256"]["particles"] == file_sha256(particles)
    import hashlib
    assert file_sha256(particles) == hashlib.sha256(particles.read_bytes()).hexdigest()
    assert not (tmp_path / "run" / LOCK).exists()


def test_resuming_checks_command_inputs_and_options(tmp_path):
    out = tmp_path / "run"
    with claimed(out, _identity(tmp_path)):
        pass
    with claimed(out, _identity(tmp_path, iterations=5)):       # more iterations: resumes
        pass
    with pytest.raises(InputError, match="used sym C1, not C2"):
        with claimed(out, _identity(tmp_path, sym="C2")):
            pass
    with pytest.raises(InputError, match="holds a gmmrefine refine run"):
        with claimed(out, _identity(tmp_path, command="reconstruct")):
            pass
    (tmp_path / "inputs" / "particles.star").write_text("data_particles\n# edited\n")
    with pytest.raises(InputError, match="has changed since this run started"):
        with claimed(out, _identity(tmp_path)):
            pass


def test_an_output_directory_holding_an_input_is_refused(tmp_path):
    identity = _identity(tmp_path)
    for out in (tmp_path / "inputs", tmp_path):
        with pytest.raises(InputError, match="holds the input particles"):
            with claimed(out, identity):
                pass
    assert not (tmp_path / RECORD).exists() and not (tmp_path / "inputs" / RECORD).exists()


def test_refine_with_out_beside_the_input_leaves_it_untouched(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    star = tmp_path / "particles.star"
    star.write_text(_tiny_star())
    before = star.read_bytes()
    result = CliRunner().invoke(cli, ["refine", "particles.star", "--out", ".", "--iter", "1"])
    assert result.exit_code == 2, result.output
    assert "holds the input particles" in result.output
    assert star.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["particles.star", "stack.mrcs"]


def _tiny_star() -> str:
    """A valid 3.1 STAR of two particles whose stack exists (the check happens after reading)."""
    import mrcfile

    with mrcfile.new("stack.mrcs", overwrite=True) as mrc:
        mrc.set_data(np.zeros((2, 8, 8), np.float32))
        mrc.set_image_stack()
        mrc.voxel_size = 2.0
    return ("data_optics\nloop_\n_rlnOpticsGroup\n_rlnOpticsGroupName\n_rlnImagePixelSize\n"
            "_rlnImageSize\n_rlnVoltage\n_rlnSphericalAberration\n_rlnAmplitudeContrast\n"
            "1 g1 2.0 8 300 2.7 0.1\n\ndata_particles\nloop_\n_rlnImageName\n_rlnOpticsGroup\n"
            "_rlnDefocusU\n_rlnDefocusV\n_rlnDefocusAngle\n_rlnAngleRot\n_rlnAngleTilt\n"
            "_rlnAnglePsi\n_rlnOriginXAngst\n_rlnOriginYAngst\n_rlnRandomSubset\n"
            "1@stack.mrcs 1 10000 10000 0 0 0 0 0 0 1\n2@stack.mrcs 1 10000 10000 0 0 0 0 0 0 2\n")


def test_a_live_runs_lock_is_refused_and_a_dead_runs_lock_taken_over(tmp_path, caplog):
    out = tmp_path / "run"
    out.mkdir()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"pid": live.pid, "host": os.uname().nodename,
                                            "started": "earlier", "command": "refine"}))
        with pytest.raises(InputError, match=f"in use by gmmrefine refine \\(pid {live.pid}"):
            with claimed(out, _identity(tmp_path)):
                pass
        assert (out / LOCK).exists() and not (out / RECORD).exists()
    finally:
        live.kill()
        live.wait()
    # The same lock, its process now gone: taken over, with a line saying so.
    with caplog.at_level("INFO", logger="gmmrefine"):
        with claimed(out, _identity(tmp_path)):
            holder = json.loads((out / LOCK).read_text())
            assert holder["pid"] == os.getpid()
    assert any("taking over the lock" in r.getMessage() and str(live.pid) in r.getMessage()
               for r in caplog.records)


def test_temporary_files_of_an_interrupted_write_are_removed(tmp_path):
    out = tmp_path / "run"
    (out / "iter_001").mkdir(parents=True)
    stale = [out / ".half1.tmp4242.mrc", out / "iter_001" / ".state.tmp4242.npz"]
    for path in stale:
        path.write_bytes(b"half written")
    keep = out / "iter_001" / "half1.mrc"
    keep.write_bytes(b"finished")
    with claimed(out, _identity(tmp_path)):
        pass
    assert not any(p.exists() for p in stale) and keep.exists()


@pytest.mark.slow
def test_a_run_killed_at_any_point_resumes_to_what_an_uninterrupted_run_writes(tmp_path):
    from gmmrefine.simulate.dataset import simulate_dataset

    data = tmp_path / "data"
    simulate_dataset(data, n=80, box=32, apix=3.2, snr=1.0, angle_rms_deg=3.0, crb_sample=0)
    command = [str(Path(sys.executable).parent / "gmmrefine"), "refine",
               str(data / "particles.star"), "--iter", "1", "--n-gauss", "300"]
    t0 = time.monotonic()
    subprocess.run(command + ["--out", str(tmp_path / "whole")], check=True,
                   capture_output=True)
    whole_s = time.monotonic() - t0
    out = tmp_path / "killed"
    # Kill points spread over the run, the last ones among the final writes.
    for fraction in (0.4, 0.75, 0.95):
        job = subprocess.Popen(command + ["--out", str(out)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(fraction * whole_s)
        job.send_signal(signal.SIGKILL)
        job.wait()
    done = subprocess.run(command + ["--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("particles.star", "fsc.csv"):
        assert _data_lines(out / name) == _data_lines(tmp_path / "whole" / name), name
    for name in ("half1.mrc", "half2.mrc", "map.mrc"):
        np.testing.assert_array_equal(read_map(out / name)[0],
                                      read_map(tmp_path / "whole" / name)[0], err_msg=name)
    with np.load(out / "iter_001" / "state.npz") as a, \
            np.load(tmp_path / "whole" / "iter_001" / "state.npz") as b:
        for key in b.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert not list(out.rglob(".*.tmp*")) and not (out / LOCK).exists()


def _data_lines(path: Path) -> list[str]:
    """A text output without its comment lines (the STAR writer stamps the time in one)."""
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_reconstruct_into_a_refinement_directory_is_refused_before_any_work(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "particles.star").write_text(_tiny_star())
    run = tmp_path / "run"
    with claimed(run, _identity(tmp_path)):
        (run / "map.mrc").write_bytes(b"a refinement's map")
    result = CliRunner().invoke(cli, ["reconstruct", "particles.star", "--out", "run"])
    assert result.exit_code == 2, result.output
    assert "holds a gmmrefine refine run" in result.output
    assert (run / "map.mrc").read_bytes() == b"a refinement's map"
