"""``gmmrefine cryosparc``: refine a live CryoSPARC job's particles into a new External job.

Connection settings come from the options or, as cryosparc-tools reads them,
from CRYOSPARC_BASE_URL / CRYOSPARC_EMAIL / CRYOSPARC_PASSWORD (4.x servers:
CRYOSPARC_LICENSE_ID, CRYOSPARC_MASTER_HOSTNAME, CRYOSPARC_BASE_PORT). The
refinement options are made from the engine's option table
(gmmrefine.pipeline.options): the same flags, defaults and checks as
``gmmrefine refine``, and an option the engine gains appears without new code.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..pipeline.options import RefineOptions, option_fields


def table_flags(table: type | None = None):
    """A decorator adding one click option per field of an option table (RefineOptions when
    None), as the table declares it.

    The adapter may not import gmmrefine.cli (the import contract keeps the
    two front ends apart), hence this twin of its ``declared_flags``: the table
    supplies the spelling, parsing, default and help, this only hands them to click.
    """
    def decorate(command):
        for name, option, default in reversed(option_fields(table)):
            command = click.option(f"--{option.flag}", name, type=option.parse,
                                   default=default, metavar=option.value_name,
                                   help=option.command_line_help(default))(command)
        return command

    return decorate


refine_flags = table_flags(RefineOptions)


@click.command()
@click.option("--project", "project_uid", required=True, help="Project uid, e.g. P3.")
@click.option("--job", "job_uid", required=True, help="Upstream job whose particles to refine, e.g. J42.")
@click.option("--workspace", "workspace_uid", required=True, help="Workspace for the new External job, e.g. W1.")
@click.option("--output", default="particles", show_default=True,
              help="Name of the upstream job's particle output.")
@click.option("--title", default="gmmrefine pose refinement", show_default=True,
              help="Title of the new External job.")
@click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Local directory for the working .cs and the run (default gmmrefine_P_J); "
                   "the same one continues a stopped run.")
@click.option("--project-dir", "project_dir_here", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="Where this machine mounts the project directory, if not at "
                                 "the server's path (stacks and maps are read from there).")
@click.option("--mask-from", default=None, metavar="JOB[.OUTPUT]",
              help="The mask from another job's output, e.g. J12 (its first mask output) or "
                   "J12.mask; instead of --mask FILE.")
@click.option("--reference-from", default=None, metavar="JOB[.OUTPUT]",
              help="The reference map from another job's output, e.g. J15 (its first volume "
                   "output) or J15.volume; instead of --reference FILE.")
@click.option("--base-url", envvar="CRYOSPARC_BASE_URL", default=None,
              help="CryoSPARC URL as in the browser (5.x). [env CRYOSPARC_BASE_URL]")
@click.option("--host", envvar="CRYOSPARC_MASTER_HOSTNAME", default=None,
              help="Master host, with --port, instead of --base-url. [env CRYOSPARC_MASTER_HOSTNAME]")
@click.option("--port", envvar="CRYOSPARC_BASE_PORT", type=int, default=None,
              help="Base port. [env CRYOSPARC_BASE_PORT]")
@click.option("--email", envvar="CRYOSPARC_EMAIL", default=None, help="[env CRYOSPARC_EMAIL]")
@click.option("--password", envvar="CRYOSPARC_PASSWORD", default=None,
              help="[env CRYOSPARC_PASSWORD]")
@click.option("--license", "license_id", envvar="CRYOSPARC_LICENSE_ID", default=None,
              help="License id (4.x servers only). [env CRYOSPARC_LICENSE_ID]")
@refine_flags
def main(project_uid: str, job_uid: str, workspace_uid: str, output: str, title: str,
         work_dir: Path | None, project_dir_here: Path | None, mask_from: str | None,
         reference_from: str | None, base_url: str | None, host: str | None,
         port: int | None, email: str | None, password: str | None, license_id: str | None,
         **values) -> None:
    """Refine the particles of job JOB in project PROJECT; save them and the maps as a
    new External job in WORKSPACE (cryosparc-tools 4.x or 5.x)."""
    from .compat import connect
    from .cryosparc_job import Interrupted, run_cryosparc_job

    options = RefineOptions(**values)
    client = connect(base_url=base_url, host=host, port=port, email=email, password=password,
                     license_id=license_id)
    try:
        uid = run_cryosparc_job(client, project_uid, job_uid, workspace_uid, output=output,
                                options=options, title=title, work_dir=work_dir,
                                project_dir_here=project_dir_here, mask_from=mask_from,
                                reference_from=reference_from)
    except Interrupted as err:
        click.echo(f"gmmrefine: {err}; the External job is marked failed, and the same "
                   "--work-dir continues the refinement", err=True)
        sys.exit(130)
    click.echo(f"Refined particles and maps saved in {project_uid} {uid}")
