"""Refine the particles of a CryoSPARC job and save the result as a new External job.

The data path: the upstream job's particles output (a cryosparc-tools
Dataset) is saved as a working ``.cs`` whose blob paths resolve against the
project directory (as the server has it, or where this machine mounts it),
the engine refines it, and the refined poses go back as the same particles
(same uids) in an External job's ``particles`` output (alignments3D replaced,
everything else passed through), with the map and half maps in one
``volume`` output, progress in the job's event log and the FSC and
pose-change plots beside it. The mask and reference map may come from other
jobs' outputs (plugin/job_volumes.py). Any way out but success, Ctrl-C and
SIGTERM included, marks the job failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_path
from ..pipeline.options import RefineOptions, RefineResult
from .compat import log_progress, project_dir
from .job_volumes import volume_from_job

INPUT_NAME = "particles"
PARTICLES_OUTPUT = "particles"
VOLUME_OUTPUT = "volume"
# Volume slot -> RefineResult attribute holding that map.
VOLUME_SLOTS = {"map": "map", "map_half_A": "half1", "map_half_B": "half2"}


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during the job, as an Exception: cryosparc-tools' ``job.run()``
    marks a job failed only for an Exception and completed for anything else."""


def run_cryosparc_job(cs_client: Any, project_uid: str, job_uid: str, workspace_uid: str, *,
                      output: str = "particles", options: RefineOptions = RefineOptions(),
                      title: str = "gmmrefine pose refinement",
                      work_dir: str | Path | None = None,
                      project_dir_here: str | Path | None = None,
                      mask_from: str | None = None, reference_from: str | None = None,
                      log: Callable[[str], None] = print) -> str:
    """Refine ``job_uid``'s particles and save them and the maps as a new External job.

    Parameters
    ----------
    cs_client : a ``cryosparc.tools.CryoSPARC`` session (4.x or 5.x tools).
    project_uid, job_uid, workspace_uid : e.g. "P3", "J42" (the upstream job), "W1".
    output : the upstream job's particle output name.
    options : refinement options; ``root`` defaults to the project directory.
    title : title of the new External job.
    work_dir : local directory for the working .cs and the engine's run
        (default ``gmmrefine_<P>_<J>`` in the working directory); re-running
        with the same one continues a stopped refinement.
    project_dir_here : where this machine mounts the project directory, when not
        at the server's path (an External job run on a workstation).
    mask_from, reference_from : "J12" or "J12.OUTPUT": the mask / reference map
        from another job's output, instead of ``options.mask`` / ``options.reference``.
    log : where progress lines go besides the job's event log.

    Returns
    -------
    The uid of the External job holding the results.

    Raises
    ------
    InputError
        Before any job is created: the output is missing, has no blob or
        alignments3D fields, or names stacks not found under the project
        directory; a mask or reference job output that cannot be found.
    Interrupted
        Ctrl-C or SIGTERM stopped the run (the job is marked failed; the same
        ``work_dir`` continues it).
    """
    project = cs_client.find_project(project_uid)
    directory = Path(project_dir_here) if project_dir_here is not None \
        else Path(project_dir(project))
    work = Path(work_dir) if work_dir is not None else Path(f"gmmrefine_{project_uid}_{job_uid}")
    particles = _load_output(project, job_uid, output)
    check_particle_fields(particles, f"{project_uid} {job_uid} output {output!r}")
    check_blob_paths(particles, directory, f"{project_uid} {job_uid} output {output!r}")
    options = _with_job_volumes(project, directory, options, mask_from, reference_from)
    input_cs = work / "input_particles.cs"
    save_dataset(particles, input_cs)
    if options.root is None:
        options = dataclasses.replace(options, root=str(directory))
    log(f"{project_uid} {job_uid} {output}: {len(particles)} particles saved to {input_cs}")

    job = project.create_external_job(workspace_uid, title=title)
    job.connect(INPUT_NAME, job_uid, output, slots=["blob", "alignments3D"])
    job.add_output("particle", PARTICLES_OUTPUT, slots=["alignments3D"], passthrough=INPUT_NAME)
    job.add_output("volume", VOLUME_OUTPUT, slots=list(VOLUME_SLOTS))
    with job.run():
        with job_work(job):
            result = _refine(job, input_cs, work / "refine", options)
            save_particles(job, particles, result.particles_cs)
            save_volumes(job, result)
            log_figures(job, result)
        job.log(f"gmmrefine finished: {result.resolution_A:.2f} A "
                f"(start {result.start_resolution_A:.2f} A)")
    return job.uid


def _with_job_volumes(project: Any, directory: Path, options: RefineOptions,
                      mask_from: str | None, reference_from: str | None) -> RefineOptions:
    """``options`` with the mask and reference maps that other jobs' outputs hold."""
    changes = {}
    for kind, spec in (("mask", mask_from), ("reference", reference_from)):
        if spec is None:
            continue
        if getattr(options, kind) is not None:
            raise InputError(f"--{kind} {getattr(options, kind)} and --{kind}-from {spec}: "
                             f"expected one {kind}")
        changes[kind] = str(volume_from_job(project, directory, spec, kind))
    return dataclasses.replace(options, **changes) if changes else options


@contextlib.contextmanager
def interrupts_as_errors() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM raise :class:`Interrupted` (an Exception).

    ``with job.run()`` catches only Exception: a KeyboardInterrupt passed through
    it as a completed job, and SIGTERM's default ended the process with the job
    left running.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("stopped by Ctrl-C") from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def job_work(job: Any) -> Iterator[None]:
    """The body of a running External job: Ctrl-C and SIGTERM as errors (so ``job.run()``
    marks the job failed), and the reason of any failure in its event log, since 4.x
    marks a job failed without saying why."""
    try:
        with interrupts_as_errors():
            yield
    except Exception as err:
        job.log(f"gmmrefine failed: {type(err).__name__}: {err}", level="error")
        raise


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(f"stopped by signal {signal.Signals(signum).name}")


def log_figures(job: Any, result: RefineResult) -> None:
    """The run's figures (FSC, pose changes) in the job's event log, where the web
    interface shows them."""
    for title, path in result.figures.items():
        if Path(path).is_file():
            job.log_plot(str(path), title)


def _load_output(project: Any, job_uid: str, output: str) -> Any:
    source = project.find_job(job_uid)
    try:
        return source.load_output(output)
    except (KeyError, ValueError) as err:
        raise InputError(f"{project.uid} {job_uid}: cannot load output {output!r} ({err}); "
                         "expected the name of a particle output of that job") from None


def check_particle_fields(dataset: Any, where: str) -> None:
    """Refuse a dataset without image references or 3D alignments, in one line."""
    fields = set(dataset.fields())
    missing = [name for name in ("blob/path", "blob/idx", "alignments3D/pose",
                                 "alignments3D/shift") if name not in fields]
    if missing:
        raise InputError(f"{where}: fields {', '.join(missing)} missing; expected particles "
                         "with blob and alignments3D slots (from a 3D refinement)")


def check_blob_paths(dataset: Any, directory: Path, where: str) -> None:
    """Every stack the particles name must exist under the project directory."""
    paths = np.asarray(dataset["blob/path"]).astype(str)
    _, first_rows = np.unique(paths, return_index=True)
    for row in sorted(first_rows):     # report the first missing stack in file order
        if not (directory / paths[row].lstrip(">")).is_file():
            raise InputError(f"{where}: row {row} blob/path '{paths[row]}' not found under the "
                             f"project directory {directory}; expected the particle stacks "
                             "readable from this machine")


def save_dataset(dataset: Any, path: Path) -> None:
    """Save a Dataset as a ``.cs`` file through a temporary name."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            dataset.save(handle)


def _refine(job: Any, input_cs: Path, out_dir: Path, options: RefineOptions) -> RefineResult:
    from ..pipeline.run import run_refinement

    # The engine's lines go to the job's event log (and to whatever handler the
    # caller attached to the "gmmrefine" logger, as the CLI does for stdout).
    return run_refinement(input_cs, out_dir, options, log=lambda line: log_progress(job, line))


def refined_rows(input_uids: np.ndarray, refined_uids: np.ndarray) -> np.ndarray:
    """Row of the refined set holding each input particle, matched by uid (never by order)."""
    order = np.argsort(refined_uids, kind="stable")
    position = np.searchsorted(refined_uids[order], input_uids)
    position = np.minimum(position, len(order) - 1)
    rows = order[position]
    lost = refined_uids[rows] != input_uids
    if np.any(lost):
        raise ValueError(f"{int(lost.sum())} input particles (first uid "
                         f"{int(input_uids[lost][0])}) are missing from the refined set")
    return rows


def save_particles(job: Any, particles: Any, refined_cs: Path) -> None:
    """Save the refined alignments3D as the job's particle output (same uids as the input)."""
    from cryosparc.dataset import Dataset

    refined = Dataset.load(refined_cs)
    out = job.alloc_output(PARTICLES_OUTPUT, particles)
    rows = refined_rows(np.asarray(out["uid"]), np.asarray(refined["uid"]))
    # Only the poses: the refined file's other fields (image paths rewritten for
    # the run directory, say) are the input's business, passed through by CryoSPARC.
    carried = [name for name in out.fields(exclude_uid=True)
               if name.startswith("alignments3D/") and name in refined.fields()]
    for name in carried:
        out[name] = np.asarray(refined[name])[rows]
    job.save_output(PARTICLES_OUTPUT, out)


def save_volumes(job: Any, result: RefineResult) -> None:
    """Upload the map and half maps into the job and save the one-row volume output."""
    import mrcfile

    volume = job.alloc_output(VOLUME_OUTPUT, 1)
    fields = set(volume.fields())
    for slot, attribute in VOLUME_SLOTS.items():
        path = Path(getattr(result, attribute))
        job.upload(path.name, str(path), overwrite=True)
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            box, apix = int(mrc.header.nx), float(mrc.voxel_size.x)
        values = {"path": f"{job.uid}/{path.name}", "psize_A": apix, "shape": [box] * 3}
        for key, value in values.items():
            if f"{slot}/{key}" in fields:
                volume[f"{slot}/{key}"] = [value]
    job.save_output(VOLUME_OUTPUT, volume)
