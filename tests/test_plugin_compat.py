"""cryosparc-tools versions: the 5.x API as it is declared, 4.x through compat."""

from __future__ import annotations

import inspect

from gmmrefine.plugin import compat


def test_we_call_the_5x_api_as_it_is_declared():
    from cryosparc.controllers.job import ExternalJobController
    from cryosparc.controllers.project import ProjectController

    def params(cls, name):
        return set(inspect.signature(getattr(cls, name)).parameters)

    assert {"workspace_uid", "title"} <= params(ProjectController, "create_external_job")
    assert {"target_input", "source_job_uid", "source_output", "slots"} <= params(
        ExternalJobController, "connect")
    assert {"type", "name", "slots", "passthrough"} <= params(ExternalJobController, "add_output")
    assert {"name", "alloc"} <= params(ExternalJobController, "alloc_output")
    assert {"target_path", "source", "overwrite"} <= params(ExternalJobController, "upload")
    assert {"text", "level", "name"} <= params(ExternalJobController, "log")
    assert isinstance(inspect.getattr_static(ProjectController, "dir"), property)
    assert compat.tools_major_version() == 5


def test_compat_handles_4x_project_dir_and_log():
    class Project4:
        def dir(self):
            return "/data/P3"

    class Job4:
        def __init__(self):
            self.lines = []

        def log(self, text, level="text"):
            self.lines.append(text)

    assert str(compat.project_dir(Project4())) == "/data/P3"
    job = Job4()
    compat.log_progress(job, "iteration 1")
    assert job.lines == ["iteration 1"]
