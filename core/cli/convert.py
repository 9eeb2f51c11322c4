"""``gmmrefine convert IN OUT``: particles between RELION STAR and CryoSPARC .cs."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ..io.particles import describe, read_particles, write_particles


@click.command()
@click.argument("in_path", metavar="IN", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out_path", metavar="OUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory the image paths resolve against (default: as the host does).")
@click.option("--apix", type=float, default=None,
              help="Pixel size in A, for a .cs file without blob/psize_A.")
def main(in_path: Path, out_path: Path, root: Path | None, apix: float | None) -> None:
    """Convert a particle file (.star or .cs, by suffix) into the other format or the same.

    Poses, shifts, CTF, half sets and image references are converted; every
    other column or field is carried so that a round trip keeps it.
    """
    if out_path.exists() and in_path.exists() and out_path.resolve() == in_path.resolve():
        raise InputError(f"{out_path}: is the input file; expected a new output path "
                         "(inputs are never overwritten)")
    if apix is not None and apix <= 0:
        raise InputError(f"--apix {apix}: expected a positive pixel size in A")
    ps = read_particles(in_path, root=root, apix=apix)
    write_particles(ps, out_path)
    click.echo(f"{in_path} -> {out_path}: {describe(ps)}")
