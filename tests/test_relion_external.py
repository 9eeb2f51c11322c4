"""gmmrefine-relion without RELION: argument translation, pipeline files, and every exit path."""

from __future__ import annotations

import dataclasses
import importlib
import re
import shutil
import subprocess

import pytest
import starfile
from gmmrefine.errors import InputError
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.relion_external import pipeline_files as pf
from gmmrefine.relion_external.job import main
from gmmrefine.relion_external.params import PARAMETERS, parse_command, split_arguments
from gmmrefine.simulate.dataset import simulate_dataset


def _command(text: str):
    return parse_command(split_arguments(text.split()))


def test_labels_set_their_fields_with_types_and_auto():
    cmd = _command("--o External/job003/ --in_parts P.star --in_3dref ref.mrc --in_mask m.mrc "
                   "--iter 3 --res 7.5 --n-gauss auto --batch 8 --low-cut 30 --seed 4 --j 2")
    assert cmd.options == RefineOptions(iterations=3, res_A=7.5, n_gauss=None, batch=8,
                                        low_cut_A=30.0, seed=4, reference="ref.mrc",
                                        mask="m.mrc")
    assert cmd.threads == 2 and str(cmd.particles) == "P.star"
    assert str(cmd.job_dir) == "External/job003"


def _sample(parameter) -> str:
    """A valid value of the row other than its default."""
    option = parameter.option
    if option.choices:
        return next(c for c in option.choices if c != parameter.default)
    if parameter.label == "sym":
        return "C2"
    if parameter.label == "gpu":
        return "1"
    return {int: "7", float: "0.5", str: "x.pdb"}[option.kind]


def test_every_table_row_parses_a_value_of_its_type():
    defaults = RefineOptions()
    for label, parameter in PARAMETERS.items():
        sample = _sample(parameter)
        # The frc score has no prior: switch it off with it.
        extra = " --prior-deg none" if label == "score" else ""
        options = _command(f"--o J/ --in_parts P.star --{label} {sample}{extra}").options
        value = getattr(options, parameter.field)
        expected = sample if parameter.option.kind is str else parameter.option.kind(sample)
        assert value == expected != getattr(defaults, parameter.field), label


@pytest.mark.parametrize("text, words", [
    ("--o J/ --in_parts P.star --patch_count 8",
     ["--patch_count", "known labels", "iter", "n-gauss"]),
    ("--o J/ --in_parts P.star --iter three", ["--iter", "integer"]),
    ("--o J/ --in_parts P.star --res", ["--res", "number"]),
    ("--o J/ --in_parts P.star --in_mics M.star", ["--in_mics", "does not use"]),
    ("--o J/ --iter 2", ["--in_parts"]),
    ("--o J/ --in_parts P.star --iter 1 --iter 2", ["--iter", "twice"]),
    ("--o J/ --in_parts P.star --low_cut 20 --low-cut 30", ["--low_cut", "--low-cut", "same"]),
    ("--o J/ --in_parts P.star --mask m.mrc", ["--mask", "input node", "--in_mask"]),
    ("--o J/ --in_parts P.star --iter 2 --j 0", ["--j 0", "integer"]),
])
def test_bad_arguments_are_one_clear_line(text, words):
    with pytest.raises(InputError) as err:
        _command(text)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


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


# --- pipeline files -------------------------------------------------------------------------

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
