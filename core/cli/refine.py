"""``gmmrefine refine``: gold-standard GMM pose refinement of a STAR or .cs particle set.

Its refinement options are made from the option table
(gmmrefine.pipeline.options), as are ``gmmrefine cryosparc``'s and the RELION
External job's labels, so all three spell and default them alike.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.options import RefineOptions, option_fields


def refine_flags(command):
    """Add one click option per RefineOptions field, as the option table declares it.

    Values are parsed by the table (``auto`` / ``none`` included), so a bad
    one stops with the same one-line InputError every front end gives.
    """
    return table_flags(*[name for name, _, _ in option_fields()])(command)


def table_flags(*names: str):
    """A decorator adding the click options of these RefineOptions fields (another
    command sharing options with refine declares none of its own)."""
    fields = {name: (option, default) for name, option, default in option_fields()}

    def decorate(command):
        for name in reversed(names):
            option, default = fields[name]
            command = click.option(f"--{option.flag}", name, type=option.parse, default=default,
                                   metavar=option.value_name,
                                   help=option.command_line_help(default))(command)
        return command

    return decorate


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
