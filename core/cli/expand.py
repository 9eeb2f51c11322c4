"""``gmmrefine expand``: symmetry expansion, one copy of every particle per
operator of a point group (what relion_particle_symmetry_expand writes), so
that focused work can run in C1."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("particles", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--sym", required=True,
              help="Point group (RELION's names and axes: Cn, Dn, T, O, I or I1-I4).")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Expanded particle file: .star (RELION) or .cs (CryoSPARC), by suffix.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory that image paths resolve against (default: as the host does).")
def main(particles: Path, sym: str, out_path: Path, root: Path | None) -> None:
    """Write PARTICLES (STAR or .cs) expanded by symmetry SYM to OUT."""
    from ..data.symmetry_groups import symmetry_order
    from ..errors import InputError
    from ..io.expand import expand_particles
    from ..io.particles import SUFFIXES, read_particles, require_poses, write_particles

    order = symmetry_order(sym)
    if out_path.suffix.lower() not in SUFFIXES:
        raise InputError(f"{out_path}: unknown particle file type {out_path.suffix!r}; "
                         "expected .star (RELION) or .cs (CryoSPARC)")
    if out_path.resolve() == Path(particles).resolve():
        raise InputError(f"{out_path}: is the input file; expected a new file (inputs are never "
                         "overwritten)")
    ps = read_particles(particles, root=root)
    require_poses(ps)
    expanded = expand_particles(ps, sym)
    write_particles(expanded, out_path)
    click.echo(f"{len(ps)} particles x {order} operators of {sym} = {len(expanded)} "
               f"particles written to {out_path}")
