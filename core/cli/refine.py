"""``gmmrefine refine``: gold-standard GMM pose refinement of a STAR or .cs particle set.

Its refinement options are made from the option table
(gmmrefine.pipeline.options), as are ``gmmrefine cryosparc``'s and the RELION
External job's labels, so all three spell and default them alike.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.options import RefineOptions
from .flags import option_flags

# One click option per RefineOptions field, as the option table declares it.
refine_flags = option_flags(RefineOptions)


@click.command()
@click.argument("particles", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (an existing run there is resumed).")
@refine_flags
def main(particles: Path, out_dir: Path, **values) -> None:
    """Refine particle poses against per-half GMMs, iterating with reconstruction and FSC."""
    options = RefineOptions(**values)      # refuses a bad value before TensorFlow loads
    from ..pipeline.run import run_refinement

    result = run_refinement(particles, out_dir, options)
    click.echo(f"Gold-standard resolution: {result.start_resolution_A:.2f} A -> "
               f"{result.resolution_A:.2f} A")
    click.echo(f"Refined particles: {result.particles_star} and {result.particles_cs}")
