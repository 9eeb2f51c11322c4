"""``gmmrefine cryosparc-hetero``, ``cryosparc-conf2pose`` and ``cryosparc-composite``.

Each command's own options are made from its option table
(gmmrefine.pipeline.hetero_options), as the CLI's and the RELION jobs' are;
the connection options are those of ``gmmrefine cryosparc``.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.hetero_options import CompositeOptions, Conf2PoseOptions, HeteroOptions
from .cli import table_flags


def connection(command):
    """The server options of ``gmmrefine cryosparc`` (same environment variables)."""
    for decorator in reversed([
        click.option("--project", "project_uid", required=True, help="Project uid, e.g. P3."),
        click.option("--workspace", "workspace_uid", required=True,
                     help="Workspace for the new External job, e.g. W1."),
        click.option("--base-url", envvar="CRYOSPARC_BASE_URL", default=None),
        click.option("--host", envvar="CRYOSPARC_MASTER_HOSTNAME", default=None),
        click.option("--port", envvar="CRYOSPARC_BASE_PORT", type=int, default=None),
        click.option("--email", envvar="CRYOSPARC_EMAIL", default=None),
        click.option("--password", envvar="CRYOSPARC_PASSWORD", default=None),
        click.option("--license", "license_id", envvar="CRYOSPARC_LICENSE_ID", default=None),
    ]):
        command = decorator(command)
    return command


def _client(values: dict):
    from .compat import connect

    keys = ("base_url", "host", "port", "email", "password", "license_id")
    return connect(**{k: values.pop(k) for k in keys})


@click.command()
@connection
@click.option("--job", "job_uid", required=True, help="Upstream job whose particles to use.")
@click.option("--output", default="particles", show_default=True)
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--project-dir", "project_dir_here", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where this machine mounts the project directory, if not at "
                                 "the server's path (stacks are read from there).")
@table_flags(HeteroOptions)
def hetero(project_uid: str, workspace_uid: str, job_uid: str, output: str,
           work_dir: Path | None, project_dir_here: Path | None, **values) -> None:
    """Latent point per particle (per half set) of JOB's particles, as 3D variability fields."""
    from .hetero_job import run_cryosparc_hetero

    client = _client(values)
    uid = run_cryosparc_hetero(client, project_uid, job_uid, workspace_uid, output=output,
                               options=HeteroOptions(**values), work_dir=work_dir,
                               project_dir_here=project_dir_here)
    click.echo(f"Latents and maps saved in {project_uid} {uid}")


@click.command()
@connection
@click.option("--job", "job_uid", required=True, help="The heterogeneity External job.")
@click.option("--hetero-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Local directory of that heterogeneity run (WORK_DIR/hetero).")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@table_flags(Conf2PoseOptions)
def conf2pose(project_uid: str, workspace_uid: str, job_uid: str, hetero_dir: Path,
              work_dir: Path | None, **values) -> None:
    """Each particle's conformation as a pose for the mask's region, then focused iterations."""
    from .hetero_job import run_cryosparc_conf2pose

    client = _client(values)
    uid = run_cryosparc_conf2pose(client, project_uid, job_uid, workspace_uid, hetero_dir,
                                  options=Conf2PoseOptions(**values), work_dir=work_dir)
    click.echo(f"Converted poses and maps saved in {project_uid} {uid}")


@click.command()
@connection
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@table_flags(CompositeOptions)
def composite(project_uid: str, workspace_uid: str, runs: tuple[Path, ...], out_dir: Path,
              **values) -> None:
    """The composite of local focused RUNS, saved as a new External job's volume."""
    from .hetero_job import run_cryosparc_composite

    client = _client(values)
    uid = run_cryosparc_composite(client, project_uid, workspace_uid, list(runs), out_dir,
                                  CompositeOptions(**values))
    click.echo(f"Composite maps saved in {project_uid} {uid}")
