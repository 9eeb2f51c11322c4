"""``gmmrefine hetero``: per half set, each particle's conformation as a latent point."""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.hetero_options import HeteroOptions
from .flags import declared_flags


@click.command()
@click.argument("source", metavar="PARTICLES_OR_RUN",
                type=click.Path(exists=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory (a stopped run there is resumed).")
@declared_flags(HeteroOptions)
def main(source: Path, out_dir: Path, **values) -> None:
    """Train an encoder and a GMM decoder per half set on PARTICLES_OR_RUN (a STAR / .cs, or a
    refinement's run directory) at the poses given; write each particle's latent point,
    principal axes and maps along the first one."""
    options = HeteroOptions(**values)      # refuses a bad value before TensorFlow loads
    from ..pipeline.hetero_run import run_hetero

    result = run_hetero(source, out_dir, options)
    click.echo(f"Latents: {result.latent_csv} (and {result.particles_cs.name}: CryoSPARC's "
               "components_mode_K/value)")
    click.echo(f"Maps along PC1: {result.out_dir / 'series'} (open the .cxc in ChimeraX)")
