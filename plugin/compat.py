"""The few places where cryosparc-tools 4.x and 5.x differ, behind one function each.

Checked against cryosparc-tools 5.0.3 (installed) and the v4.6/v4.7 source:
- connecting: 5.x ``CryoSPARC(base_url, email=, password=)`` (or ``host=,
  base_port=``); 4.x ``CryoSPARC(license=, host=, base_port=, email=, password=)``;
- the project directory: a property in 5.x, a method in 4.x;
- ``job.log(text, name=...)`` updating one event exists only in 5.x;
- ``with job.run()`` records the traceback as the failure in 5.x, only the
  failed status in 4.x (so the error line is logged explicitly as well);
  neither counts KeyboardInterrupt as a failure (``except Exception``), so
  the adapter turns interrupts into an exception first;
- a job's outputs and their types: ``job.model.spec.outputs`` in 5.x,
  ``job.doc["output_result_groups"]`` in 4.x.
"""

from __future__ import annotations

from pathlib import PurePath, PurePosixPath
from typing import Any


def tools_major_version() -> int:
    """Major version of the installed cryosparc-tools (4 or 5)."""
    import cryosparc

    return int(str(cryosparc.__version__).split(".")[0])


def connect(*, base_url: str | None = None, host: str | None = None, port: int | None = None,
            email: str | None = None, password: str | None = None,
            license_id: str | None = None) -> Any:
    """A ``cryosparc.tools.CryoSPARC`` session for either major version of the tools."""
    from cryosparc.tools import CryoSPARC

    if tools_major_version() >= 5:
        if base_url:
            return CryoSPARC(base_url, email=email, password=password)
        return CryoSPARC(host=host or "localhost", base_port=port or 39000,
                         email=email, password=password)
    return CryoSPARC(license=license_id, host=host or "localhost", base_port=port or 39000,
                     email=email, password=password)


def project_dir(project: Any) -> PurePosixPath:
    """The project directory as the server sees it (5.x property, 4.x method)."""
    directory = project.dir
    # 5.x's value is a path that can also be called (deprecated, with a warning).
    if callable(directory) and not isinstance(directory, PurePath):
        directory = directory()
    return PurePosixPath(str(directory))


def log_progress(job: Any, text: str) -> None:
    """Show ``text`` as the job's one progress line (5.x), or append it (4.x)."""
    try:
        job.log(text, name="progress")
    except TypeError:
        job.log(text)


def job_outputs(job: Any) -> dict[str, str]:
    """A job's outputs, name -> type ("particle", "volume", "mask", ...), in the job's order."""
    model = getattr(job, "model", None)
    if model is not None and hasattr(model, "spec"):
        return {name: output.type for name, output in model.spec.outputs.root.items()}
    return {group["name"]: group["type"] for group in job.doc.get("output_result_groups", [])}
