"""``gmmrefine conf2pose``: each particle's conformation turned into a pose for a region."""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.hetero_options import Conf2PoseOptions
from .flags import declared_flags


@click.command()
@click.argument("hetero_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory: a focused run directory (a stopped run there resumes).")
@declared_flags(Conf2PoseOptions)
def main(hetero_dir: Path, out_dir: Path, **values) -> None:
    """Per particle of HETERO_DIR (a `gmmrefine hetero` run), the pose at which the neutral
    GMM's region looks as the particle's own conformation's region does; then focused
    iterations with the mask from those poses."""
    options = Conf2PoseOptions(**values)
    from ..pipeline.conf2pose_run import run_conf2pose

    result = run_conf2pose(hetero_dir, out_dir, options)
    click.echo(f"Within the mask: {result.start_masked_resolution_A:.2f} A at the converted "
               f"poses -> {result.masked_resolution_A:.2f} A after the focused iterations")
    click.echo(f"Particles: {result.particles_star} and {result.particles_cs}")
