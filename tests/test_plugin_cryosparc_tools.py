"""The CryoSPARC adapter against cryosparc-tools' own classes (CryoSPARC, ProjectController,
ExternalJobController), with only its server client mocked, as cryosparc-tools' 5.x tests do
(APIClient.__call__ patched with unittest.mock; its endpoint groups MagicMocks).

What the mocked server answers is set per test: the upstream jobs' specs and outputs, the
fields it allocates for outputs. What the adapter asks of it (mark_failed / mark_completed,
add_image_log, save_output) is read back from the mocks."""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from cryosparc.api import APIClient
from cryosparc.dataset import Dataset
from cryosparc.models.auth import Token
from cryosparc.models.job import Job
from cryosparc.models.job_spec import (
    Inputs,
    JobSpec,
    Output,
    OutputResult,
    Outputs,
    Params,
    ResourceSpec,
)
from cryosparc.models.project import Project
from cryosparc.models.user import Email, User
from cryosparc.tools import CryoSPARC
from gmmrefine.errors import InputError
from gmmrefine.fourier.masks import soft_sphere
from gmmrefine.io.mrc import write_map
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.plugin.cryosparc_job import Interrupted, run_cryosparc_job
from gmmrefine.simulate.dataset import simulate_dataset

BOX, APIX = 32, 3.2
SERVER_DIR = "/cryosparc/projects/CS-test"          # the project as the server sees it
USER = User(_id="6372a35e821ed2b71d9fe4e3", name="test", first_name="T", last_name="T",
            emails=[Email(address="t@example.com", verified=True)],
            roles={"__global_roles__": ["admin"]}, register_token=None,
            created_at=datetime(2024, 1, 1, tzinfo=timezone.utc))

# Fields the server would allocate for the External job's outputs (a subset of CryoSPARC's).
ALIGNMENT_FIELDS = [("alignments3D/split", "<u4"), ("alignments3D/shift", "<f4", (2,)),
                    ("alignments3D/pose", "<f4", (3,)), ("alignments3D/psize_A", "<f4"),
                    ("alignments3D/error", "<f4")]
VOLUME_FIELDS = [(f"{slot}/{key}", dtype, *shape) for slot in ("map", "map_half_A", "map_half_B")
                 for key, dtype, *shape in (("path", "O"), ("shape", "<u4", (3,)),
                                            ("psize_A", "<f4"))]


def _job(uid: str, job_type: str, outputs: dict[str, tuple[str, list[str]]]) -> Job:
    """A Job model as the server returns it: outputs name -> (type, slot names)."""
    spec = JobSpec(type=job_type, params=Params(), inputs=Inputs({}),
                   outputs=Outputs({name: Output(type=kind, title=name, results=[
                       OutputResult(name=slot, dtype=slot) for slot in slots])
                       for name, (kind, slots) in outputs.items()}),
                   ui_tile_width=1, ui_tile_height=1, resource_spec=ResourceSpec())
    return Job(_id=f"0000000000000000000000{int(uid[1:]):02d}", uid=uid, uid_num=int(uid[1:]),
               project_uid="P1", project_uid_num=1, workspace_uids=["W1"], job_dir=uid,
               status="completed", status_num=45, created_by_user_id=USER.id, spec=spec,
               build_errors=[],
               job_dir_size_last_updated=datetime.now(timezone.utc))


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory) -> Path:
    """The project directory as this machine mounts it (not the server's path): J1's
    particles, J5's refinement map, J6's mask."""
    root = tmp_path_factory.mktemp("mounted") / "CS-test"
    simulate_dataset(root / "J1" / "imported", n=200, box=BOX, apix=APIX, snr=0.1, crb_sample=0)
    for job in ("J5", "J6"):
        (root / job).mkdir()
    shutil.copy(root / "J1" / "imported" / "truth_map.mrc", root / "J5" / "J5_map.mrc")
    write_map(root / "J6" / "J6_mask.mrc", soft_sphere(BOX, (BOX // 2,) * 3, BOX * 0.3, 3.0), APIX)
    return root


class Server:
    """What the mocked client answers, and what it was asked to save."""

    def __init__(self, project_dir: Path):
        particles = Dataset.load(project_dir / "J1" / "imported" / "particles.cs")
        particles["blob/path"] = ["J1/imported/particles.mrcs"] * len(particles)
        self.outputs = {
            ("J1", "particles"): particles,
            ("J5", "volume"): Dataset({"uid": [1], "map/path": ["J5/J5_map.mrc"],
                                       "map/psize_A": [APIX]}),
            ("J6", "mask"): Dataset({"uid": [2], "mask/path": [">J6/J6_mask.mrc"]}),
        }
        self.jobs = {"J1": _job("J1", "homo_refine_new", {"particles": ("particle", ["blob"])}),
                     "J5": _job("J5", "homo_refine_new", {"particles": ("particle", ["blob"]),
                                                          "volume": ("volume", ["map"])}),
                     "J6": _job("J6", "volume_tools", {"mask": ("mask", ["mask"])}),
                     "J10": _job("J10", "snowflake", {})}
        self.saved: dict[str, Dataset] = {}

    def find_job(self, project_uid, job_uid, *args, **kwargs):
        return self.jobs[job_uid]

    def load_output(self, project_uid, job_uid, name, *args, **kwargs):
        return self.outputs[(job_uid, name)]

    def get_output_fields(self, project_uid, job_uid, name, *args, **kwargs):
        return ALIGNMENT_FIELDS if name == "particles" else VOLUME_FIELDS

    def save_output(self, project_uid, job_uid, name, dataset, *args, **kwargs):
        self.saved[name] = dataset
        return self.jobs["J10"]


@pytest.fixture
def server(project_dir, monkeypatch) -> Server:
    """cryosparc-tools' APIClient with every endpoint group mocked (its own tests' recipe)."""
    state = Server(project_dir)
    monkeypatch.setattr(APIClient, "__call__", mock.Mock(return_value=None))
    for group in ("users", "config", "projects", "workspaces", "jobs", "assets"):
        monkeypatch.setattr(APIClient, group, mock.MagicMock(), raising=False)
    monkeypatch.setattr(APIClient, "health", mock.Mock(return_value="OK"), raising=False)
    monkeypatch.setattr(APIClient, "login", mock.Mock(
        return_value=Token(access_token="abc123", token_type="bearer")), raising=False)
    APIClient.users.me.return_value = USER
    APIClient.config.get_version.return_value = "develop"
    APIClient.projects.find_one.return_value = Project(
        _id="67292e95282b26b45d0e8fae", uid="P1", uid_num=1, title="test",
        project_dir=SERVER_DIR, owner_user_id=USER.id,
        size_last_updated=datetime.now(timezone.utc))
    APIClient.projects.get_directory.return_value = SERVER_DIR
    jobs = APIClient.jobs
    jobs.find_one.side_effect = state.find_job
    jobs.load_output.side_effect = state.load_output
    jobs.get_output_fields.side_effect = state.get_output_fields
    jobs.save_output.side_effect = state.save_output
    jobs.create.return_value = state.jobs["J10"]
    for name in ("connect", "add_external_input", "add_external_output", "mark_running",
                 "mark_completed", "mark_failed"):
        getattr(jobs, name).return_value = state.jobs["J10"]
    return state


def _client() -> CryoSPARC:
    return CryoSPARC("cryosparc.example.com", email="t@example.com", password="pw",
                     host=None, base_port=None)


def _run(project_dir: Path, tmp_path: Path, **kwargs) -> str:
    return run_cryosparc_job(_client(), "P1", "J1", "W1", work_dir=tmp_path / "work",
                             project_dir_here=project_dir, log=lambda line: None, **kwargs)


@pytest.mark.slow
def test_a_run_with_job_volumes_on_a_remounted_project(server, project_dir, tmp_path):
    uid = _run(project_dir, tmp_path, options=RefineOptions(iterations=1),
               mask_from="J6", reference_from="J5.volume")
    jobs = APIClient.jobs
    assert uid == "J10"
    jobs.mark_completed.assert_called_once()
    jobs.mark_failed.assert_not_called()
    # The maps came from J5's and J6's outputs, read under the remounted project directory.
    record = (tmp_path / "work" / "refine" / "run.json").read_text()
    assert str(project_dir / "J6" / "J6_mask.mrc") in record
    assert str(project_dir / "J5" / "J5_map.mrc") in record
    saved = server.saved["particles"]
    assert np.array_equal(saved["uid"], server.outputs[("J1", "particles")]["uid"])
    assert set(server.saved) == {"particles", "volume"}
    # The FSC and pose-change plots in the event log, as images the web interface shows.
    texts = [call.kwargs.get("text") for call in jobs.add_image_log.call_args_list]
    assert texts == ["FSC", "pose changes"]
    uploaded = [call.kwargs.get("filename") for call in APIClient.assets.upload.call_args_list]
    assert uploaded == ["FSC.png", "pose changes.png"]


def test_ctrl_c_marks_the_job_failed(server, project_dir, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module("gmmrefine.pipeline.run"), "run_refinement",
                        interrupted)
    with pytest.raises(Interrupted, match="Ctrl-C"):
        _run(project_dir, tmp_path)
    APIClient.jobs.mark_failed.assert_called_once()
    assert "Interrupted: stopped by Ctrl-C" in APIClient.jobs.mark_failed.call_args.kwargs["error"]
    APIClient.jobs.mark_completed.assert_not_called()


def test_sigterm_marks_the_job_failed(server, project_dir, tmp_path, monkeypatch):
    def terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)     # a queue system's kill
        time.sleep(5)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(importlib.import_module("gmmrefine.pipeline.run"), "run_refinement",
                        terminated)
    with pytest.raises(Interrupted, match="SIGTERM"):
        _run(project_dir, tmp_path)
    APIClient.jobs.mark_failed.assert_called_once()
    APIClient.jobs.mark_completed.assert_not_called()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_the_bare_tools_mark_an_interrupted_job_completed(server):
    """Why the adapter converts interrupts: cryosparc-tools' run() lets a KeyboardInterrupt
    through as success."""
    job = _client().find_project("P1").create_external_job("W1", title="bare")
    with pytest.raises(KeyboardInterrupt):
        with job.run():
            raise KeyboardInterrupt
    APIClient.jobs.mark_completed.assert_called_once()
    APIClient.jobs.mark_failed.assert_not_called()


@pytest.mark.parametrize("kwargs, words", [
    ({"mask_from": "J5"}, ["--mask-from J5", "no mask output", "volume (volume)"]),
    ({"reference_from": "J6.volume"}, ["--reference-from J6.volume", "no output 'volume'"]),
    ({"mask_from": "6"}, ["--mask-from 6", "J12"]),
    ({"mask_from": "J6", "options": RefineOptions(mask="m.mrc")}, ["--mask m.mrc", "one mask"]),
])
def test_bad_job_volumes_stop_before_any_job_is_created(server, project_dir, tmp_path, kwargs,
                                                        words):
    with pytest.raises(InputError) as err:
        _run(project_dir, tmp_path, **kwargs)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)
    APIClient.jobs.create.assert_not_called()


def test_maps_are_read_where_this_machine_mounts_the_project(server, project_dir, tmp_path):
    # Without --project-dir the server's path is used, where nothing is mounted here.
    with pytest.raises(InputError, match=f"not found under the project directory {SERVER_DIR}"):
        run_cryosparc_job(_client(), "P1", "J1", "W1", work_dir=tmp_path / "work",
                          log=lambda line: None)
    APIClient.jobs.create.assert_not_called()
    server.outputs[("J6", "mask")] = Dataset({"uid": [2], "mask/path": ["J6/gone.mrc"]})
    with pytest.raises(InputError, match="mask/path 'J6/gone.mrc' not found under the project "
                                         f"directory {project_dir}"):
        _run(project_dir, tmp_path, mask_from="J6")
