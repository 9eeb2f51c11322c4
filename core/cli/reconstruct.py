"""``gmmrefine reconstruct``: half maps, full map and gold-standard FSC at the
particles' poses (direct Fourier inversion with CTF correction)."""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.options import RefineOptions
from .flags import declared_flags


@click.command()
@click.argument("particles", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for half1.mrc, half2.mrc, map.mrc, fsc.csv, fsc.png.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory that image paths resolve against (default: as the host does).")
@click.option("--chunk", type=click.IntRange(min=1), default=2000, show_default=True,
              help="Particles read at a time (bounds memory).")
@click.option("--sym", default="C1", show_default=True,
              help="Point group imposed on the maps (RELION's names and axes: Cn, Dn, T, O, I).")
@declared_flags(RefineOptions, names=("apix", "box"))
def main(particles: Path, out_dir: Path, root: Path | None, chunk: int, sym: str,
         apix: float | None, box: int | None) -> None:
    """Reconstruct half maps and the full map from PARTICLES (STAR or .cs) at their poses.

    Optics groups of other pixel or box sizes are rescaled onto the maps'
    grid, and each group's magnification, beam tilt and Zernike aberrations
    are applied, as relion_reconstruct --ctf does.
    """
    from ..data.symmetry_groups import symmetry_order
    from ..io.mrc import write_map
    from ..io.particles import read_particles, require_poses
    from ..io.stack import StackReader
    from ..io.tables import write_fsc_csv
    from ..pipeline.inputs import report_optics
    from ..pipeline.ownership import RunIdentity, check_claim, claimed
    from ..reconstruct.backproject import reconstruct_halves
    from ..reconstruct.fsc import fsc_curve, resolution_at
    from ..report.plots import plot_fsc
    from ..report.progress import Progress

    order = symmetry_order(sym)     # a bad name fails before anything is read
    RefineOptions(apix=apix, box=box)       # the table's checks of --apix and --box
    ps = read_particles(particles, root=root)
    require_poses(ps)
    ps, note = ps.with_halves()
    box, apix = ps.output_grid(box, apix)
    n1, n2 = ps.split_balance()
    if note:
        click.echo(note)
    click.echo(f"{len(ps)} particles (half 1: {n1}, half 2: {n2}), maps of box {box}, "
               f"{apix:.4g} A/px" + (f", symmetry {sym} ({order} operators)" if order > 1 else ""))
    report_optics(ps, box, apix)

    # The directory belongs to this reconstruction: never a refinement's (whose maps it
    # would replace) nor one of another input's. Checked now, claimed once the maps exist.
    out_dir = Path(out_dir)
    identity = RunIdentity("reconstruct", {"particles": Path(particles)},
                           {"sym": sym, "root": None if root is None else str(root),
                            "apix": apix, "box": box},
                           resumable=frozenset({"root"}))
    check_claim(out_dir, identity)
    # Everything that can fail (reading every image) happens before the
    # first file is written, so an error leaves no partial output.
    progress = Progress(len(ps), "reconstruct")
    with StackReader(ps.root, source=ps.source) as reader:
        half1, half2, full = reconstruct_halves(ps, reader, chunk=chunk, progress=progress,
                                                sym=sym, box=box, apix=apix)
    fsc = fsc_curve(half1, half2)
    res_A = resolution_at(fsc, box, apix, 0.143)

    files = {"half1.mrc": half1, "half2.mrc": half2, "map.mrc": full}
    with claimed(out_dir, identity):
        for name, volume in files.items():
            write_map(out_dir / name, volume, apix)
        write_fsc_csv(out_dir / "fsc.csv", fsc, box, apix)
        plot_fsc(out_dir / "fsc.png", {"half 1 vs half 2": fsc}, box, apix)
    progress.finish()
    click.echo(f"Gold-standard resolution (FSC 0.143): {res_A:.2f} A")
    click.echo(f"Wrote {', '.join(list(files) + ['fsc.csv', 'fsc.png'])} to {out_dir}")
