"""The CryoSPARC adapter: real .cs data through cryosparc-tools' Dataset, server calls
against a hand-written stand-in that records them (no CryoSPARC server runs here)."""

from __future__ import annotations

import contextlib
import importlib
import shutil

import numpy as np
import pytest
from cryosparc.dataset import Dataset
from gmmrefine.errors import InputError
from gmmrefine.pipeline.options import RefineOptions
from gmmrefine.plugin.cryosparc_job import (
    VOLUME_SLOTS,
    check_blob_paths,
    check_particle_fields,
    refined_rows,
    run_cryosparc_job,
)
from gmmrefine.simulate.dataset import simulate_dataset

# Fields the server allocates for our outputs (a subset of CryoSPARC's slot fields).
_ALIGNMENT_FIELDS = [("alignments3D/split", "<u4"), ("alignments3D/shift", "<f4", (2,)),
                     ("alignments3D/pose", "<f4", (3,)), ("alignments3D/psize_A", "<f4"),
                     ("alignments3D/error", "<f4"), ("alignments3D/class", "<u4")]
_VOLUME_FIELDS = [f for slot in VOLUME_SLOTS for f in
                  [(f"{slot}/path", "O"), (f"{slot}/shape", "<u4", (3,)), (f"{slot}/psize_A", "<f4")]]


class FakeExternalJob:
    """Records every call the adapter makes; behaves like cryosparc-tools 5.x's ExternalJobController."""

    def __init__(self, project, uid):
        self.project, self.uid, self.calls, self.saved = project, uid, [], {}
        self.status = "building"

    def connect(self, target_input, source_job_uid, source_output, *, slots=()):
        self.calls.append(("connect", target_input, source_job_uid, source_output))

    def add_output(self, type, name, slots=(), passthrough=None):
        self.calls.append(("add_output", type, name, tuple(slots), passthrough))

    def alloc_output(self, name, alloc=0):
        fields = _ALIGNMENT_FIELDS if name == "particles" else _VOLUME_FIELDS
        if isinstance(alloc, Dataset):
            return Dataset({"uid": alloc["uid"]}).add_fields(fields)
        return Dataset.allocate(alloc, fields)

    def save_output(self, name, dataset):
        assert self.status == "running", "5.0 saves outputs only while the job runs"
        self.saved[name] = dataset

    def upload(self, target_path, source, *, overwrite=False):
        target = self.project.directory / self.uid / target_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        self.calls.append(("upload", target_path))

    def log(self, text, *, level="text", name=None):
        self.calls.append(("log", text, level, name))

    def log_plot(self, figure, text, **kwargs):
        self.calls.append(("log_plot", text))

    @contextlib.contextmanager
    def run(self):
        self.status = "running"
        try:
            yield self
        except Exception:
            self.status = "failed"
            raise
        self.status = "completed"


class FakeProject:
    def __init__(self, uid, directory, outputs):
        self.uid, self.directory, self.outputs, self.jobs = uid, directory, outputs, []

    @property
    def dir(self):            # 5.x: a property (4.x: a method; compat handles both)
        return str(self.directory)

    def find_job(self, job_uid):
        project = self

        class Source:
            def load_output(self, name):
                if (job_uid, name) not in project.outputs:
                    raise ValueError(f"Job {job_uid} has no output {name}")
                return Dataset.load(project.outputs[(job_uid, name)])
        return Source()

    def create_external_job(self, workspace_uid, title=""):
        job = FakeExternalJob(self, f"J{10 + len(self.jobs)}")
        job.calls.append(("create", workspace_uid, title))
        self.jobs.append(job)
        return job


class FakeCryoSPARC:
    def __init__(self, project):
        self.project = project

    def find_project(self, uid):
        assert uid == self.project.uid
        return self.project


@pytest.fixture(scope="module")
def cs_project(tmp_path_factory):
    """A CryoSPARC-like project directory: J1's particles.cs names J1/imported/particles.mrcs."""
    directory = tmp_path_factory.mktemp("P1")
    simulate_dataset(directory / "J1" / "imported", n=200, box=32, apix=3.2, snr=0.1,
                     crb_sample=0)
    particles = Dataset.load(directory / "J1" / "imported" / "particles.cs")
    particles["blob/path"] = ["J1/imported/particles.mrcs"] * len(particles)
    with open(directory / "J1" / "J1_particles.cs", "wb") as handle:
        particles.save(handle)
    return directory


def _client(directory):
    return FakeCryoSPARC(FakeProject("P1", directory, {("J1", "particles"): directory / "J1" / "J1_particles.cs"}))


@pytest.mark.slow
def test_refined_particles_and_maps_go_back_as_a_new_external_job(cs_project, tmp_path):
    client = _client(cs_project)
    lines = []
    uid = run_cryosparc_job(client, "P1", "J1", "W2", options=RefineOptions(iterations=1),
                            title="refined", work_dir=tmp_path / "work", log=lines.append)
    (job,) = client.project.jobs
    assert uid == job.uid and job.status == "completed"
    kinds = [call[0] for call in job.calls]
    assert kinds[:4] == ["create", "connect", "add_output", "add_output"]
    assert job.calls[0] == ("create", "W2", "refined")
    assert job.calls[1] == ("connect", "particles", "J1", "particles")
    assert job.calls[2] == ("add_output", "particle", "particles", ("alignments3D",), "particles")
    assert any(call[0] == "log" and call[3] == "progress" for call in job.calls)

    source = Dataset.load(cs_project / "J1" / "J1_particles.cs")
    saved = job.saved["particles"]
    assert np.array_equal(saved["uid"], source["uid"])           # the same particles
    refined = Dataset.load(tmp_path / "work" / "refine" / "particles.cs")
    rows = refined_rows(np.asarray(saved["uid"]), np.asarray(refined["uid"]))
    for name in ("alignments3D/pose", "alignments3D/shift", "alignments3D/split"):
        assert np.array_equal(saved[name], np.asarray(refined[name])[rows]), name

    volume = job.saved["volume"]
    assert len(volume) == 1
    for slot in VOLUME_SLOTS:
        path = volume[f"{slot}/path"][0]
        assert path.startswith(f"{uid}/") and (cs_project / path).is_file()
        assert list(volume[f"{slot}/shape"][0]) == [32, 32, 32]
        assert volume[f"{slot}/psize_A"][0] == pytest.approx(3.2)


def test_missing_stacks_refused_before_any_job_is_created(cs_project, tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "J1").mkdir()
    shutil.copy(cs_project / "J1" / "J1_particles.cs", moved / "J1" / "J1_particles.cs")
    client = _client(moved)
    with pytest.raises(InputError, match=r"row 0 blob/path 'J1/imported/particles.mrcs' not found"):
        run_cryosparc_job(client, "P1", "J1", "W2", work_dir=tmp_path / "work")
    assert client.project.jobs == [] and not (tmp_path / "work").exists()


def test_unknown_output_name_is_one_line(cs_project, tmp_path):
    with pytest.raises(InputError, match="cannot load output 'particles_selected'"):
        run_cryosparc_job(_client(cs_project), "P1", "J1", "W2", output="particles_selected",
                          work_dir=tmp_path / "work")


def test_engine_failure_marks_the_job_failed_with_the_reason(cs_project, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(importlib.import_module("gmmrefine.pipeline.run"), "run_refinement", crash)
    client = _client(cs_project)
    with pytest.raises(RuntimeError, match="disk full"):
        run_cryosparc_job(client, "P1", "J1", "W2", work_dir=tmp_path / "work")
    (job,) = client.project.jobs
    assert job.status == "failed" and job.saved == {}
    assert ("log", "gmmrefine failed: RuntimeError: disk full", "error", None) in job.calls


def test_real_cs_files_through_dataset(shared_dir):
    real = Dataset.load(shared_dir / "realcs" / "cryosparc_P12_J24_001_particles.cs")
    check_particle_fields(real, "J24")
    # Its stacks are not shipped: exactly the case of blob paths that cannot be found.
    with pytest.raises(InputError, match="row 0 blob/path .* not found under the project"):
        check_blob_paths(real, shared_dir, "J24")
    twod = Dataset.load(shared_dir / "realcs" / "cryosparc_J2_particles_exported.cs")
    with pytest.raises(InputError, match="alignments3D/pose"):
        check_particle_fields(twod, "J2")
    uids = np.asarray(real["uid"])
    shuffled = np.random.default_rng(0).permutation(len(uids))
    assert np.array_equal(uids[shuffled][refined_rows(uids, uids[shuffled])], uids)
    with pytest.raises(ValueError, match="missing from the refined set"):
        refined_rows(uids, uids[shuffled][1:])
