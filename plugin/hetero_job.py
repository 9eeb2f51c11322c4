"""Heterogeneity, conformation to pose and composites as CryoSPARC External jobs.

The particles travel as in refinement (gmmrefine.plugin.cryosparc_job: the
upstream output saved as a working .cs, blob paths resolved against the
project directory, results back as the same uids). A heterogeneity job
returns its latents' principal components as CryoSPARC's own 3D variability
fields (components_mode_K/value, slots of dtype "components"), which its
plotting and clustering jobs read, and the maps along the first axis as a
volume series (one row per map); a conf2pose job returns the converted and
refined poses and the maps; a composite job the composite maps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..pipeline.hetero_options import Conf2PoseOptions, HeteroOptions
from ..report import log as report_log
from .compat import log_progress, project_dir
from .cryosparc_job import (
    INPUT_NAME,
    PARTICLES_OUTPUT,
    _load_output,
    check_blob_paths,
    check_particle_fields,
    job_work,
    refined_rows,
    save_dataset,
    save_particles,
    save_volumes,
)

SERIES_OUTPUT = "series"


def _prepare(cs_client: Any, project_uid: str, job_uid: str, output: str, work: Path,
             options, log: Callable[[str], None], project_dir_here: str | Path | None = None):
    """The upstream particles as a working .cs, and the options with the project as root
    (``project_dir_here``: where this machine mounts it, if not at the server's path)."""
    project = cs_client.find_project(project_uid)
    directory = Path(project_dir_here) if project_dir_here is not None \
        else Path(project_dir(project))
    particles = _load_output(project, job_uid, output)
    where = f"{project_uid} {job_uid} output {output!r}"
    check_particle_fields(particles, where)
    check_blob_paths(particles, directory, where)
    input_cs = work / "input_particles.cs"
    save_dataset(particles, input_cs)
    if options.root is None:
        options = dataclasses.replace(options, root=str(directory))
    log(f"{where}: {len(particles)} particles saved to {input_cs}")
    return project, particles, input_cs, options


def component_slots(latent_dim: int) -> list[dict]:
    """CryoSPARC's 3D variability slots, one per principal component."""
    return [{"prefix": f"components_mode_{k}", "dtype": "components", "required": True}
            for k in range(latent_dim)]


def save_components(job: Any, particles: Any, result_cs: Path, latent_dim: int) -> None:
    """The principal components as components_mode_K/value (and /component), by uid."""
    from cryosparc.dataset import Dataset

    result = Dataset.load(result_cs)
    out = job.alloc_output(PARTICLES_OUTPUT, particles)
    rows = refined_rows(np.asarray(out["uid"]), np.asarray(result["uid"]))
    for k in range(latent_dim):
        for key in ("value", "component"):
            name = f"components_mode_{k}/{key}"
            if name in out.fields():
                out[name] = np.asarray(result[name])[rows]
    job.save_output(PARTICLES_OUTPUT, out)


def save_series(job: Any, maps: list[Path]) -> None:
    """Upload the maps along PC1 and save them as one volume output, a row per map."""
    import mrcfile

    volume = job.alloc_output(SERIES_OUTPUT, len(maps))
    fields = set(volume.fields())
    paths, sizes, shapes = [], [], []
    for path in maps:
        job.upload(path.name, str(path), overwrite=True)
        with mrcfile.open(path, header_only=True, permissive=True) as mrc:
            box, apix = int(mrc.header.nx), float(mrc.voxel_size.x)
        paths.append(f"{job.uid}/{path.name}")
        sizes.append(apix)
        shapes.append([box] * 3)
    for key, values in (("path", paths), ("psize_A", sizes), ("shape", shapes)):
        if f"map/{key}" in fields:
            volume[f"map/{key}"] = values
    job.save_output(SERIES_OUTPUT, volume)


def run_cryosparc_hetero(cs_client: Any, project_uid: str, job_uid: str, workspace_uid: str, *,
                         output: str = "particles", options: HeteroOptions = HeteroOptions(),
                         title: str = "gmmrefine heterogeneity",
                         work_dir: str | Path | None = None,
                         project_dir_here: str | Path | None = None,
                         log: Callable[[str], None] = print) -> str:
    """Train per-half networks on ``job_uid``'s particles; save latents and maps as a new
    External job (same uids); return its uid. Ctrl-C or SIGTERM marks the job failed."""
    from ..pipeline.hetero_run import run_hetero

    work = Path(work_dir) if work_dir is not None else Path(f"gmmrefine_{project_uid}_{job_uid}")
    project, particles, input_cs, options = _prepare(cs_client, project_uid, job_uid, output,
                                                     work, options, log, project_dir_here)
    job = project.create_external_job(workspace_uid, title=title)
    job.connect(INPUT_NAME, job_uid, output, slots=["blob", "alignments3D"])
    job.add_output("particle", PARTICLES_OUTPUT, slots=component_slots(options.latent_dim),
                   passthrough=INPUT_NAME)
    job.add_output("volume", SERIES_OUTPUT, slots=["map"])
    with job.run():
        with job_work(job):
            with report_log.lines_to(lambda line: log_progress(job, line)):
                result = run_hetero(input_cs, work / "hetero", options)
            save_components(job, particles, result.particles_cs, options.latent_dim)
            save_series(job, [result.out_dir / "series" / r["map"]
                              for r in result.reconstructed_series])
        job.log(f"gmmrefine finished: latents of {len(particles)} particles")
    return job.uid


def run_cryosparc_conf2pose(cs_client: Any, project_uid: str, hetero_job_uid: str,
                            workspace_uid: str, hetero_dir: str | Path, *,
                            output: str = "particles",
                            options: Conf2PoseOptions,
                            title: str = "gmmrefine conformation to pose",
                            work_dir: str | Path | None = None,
                            log: Callable[[str], None] = print) -> str:
    """Convert a heterogeneity job's particles into poses for the mask's region and refine
    them; save the poses and maps as a new External job; return its uid.

    ``hetero_dir`` is the local directory of that heterogeneity run (its networks).
    """
    from ..pipeline.conf2pose_run import run_conf2pose

    work = (Path(work_dir) if work_dir is not None
            else Path(f"gmmrefine_{project_uid}_{hetero_job_uid}_conf2pose"))
    project = cs_client.find_project(project_uid)
    particles = _load_output(project, hetero_job_uid, output)
    job = project.create_external_job(workspace_uid, title=title)
    job.connect(INPUT_NAME, hetero_job_uid, output, slots=["blob", "alignments3D"])
    job.add_output("particle", PARTICLES_OUTPUT, slots=["alignments3D"], passthrough=INPUT_NAME)
    job.add_output("volume", "volume", slots=["map", "map_half_A", "map_half_B"])
    with job.run():
        with job_work(job):
            with report_log.lines_to(lambda line: log_progress(job, line)):
                result = run_conf2pose(Path(hetero_dir), work, options)
            save_particles(job, particles, result.particles_cs)
            save_volumes(job, result)
        job.log(f"gmmrefine finished: {result.masked_resolution_A:.2f} A within the mask")
    return job.uid


def run_cryosparc_composite(cs_client: Any, project_uid: str, workspace_uid: str,
                            runs: list[Path], out_dir: Path, options, *,
                            title: str = "gmmrefine composite",
                            log: Callable[[str], None] = print) -> str:
    """Compose local focused runs and save the composite maps as a new External job."""
    from ..pipeline.composite import run_composite
    from ..pipeline.run_directory import run_files

    project = cs_client.find_project(project_uid)
    job = project.create_external_job(workspace_uid, title=title)
    job.add_output("volume", "volume", slots=["map", "map_half_A", "map_half_B"])
    with job.run():
        with job_work(job):
            with report_log.lines_to(lambda line: log_progress(job, line)):
                result = run_composite(runs, out_dir, options)
            save_volumes(job, run_files(out_dir))
        job.log(f"gmmrefine finished: composite {result.resolution_A:.2f} A")
    return job.uid
