"""``gmmrefine refine``: gold-standard GMM pose refinement of a STAR or .cs particle set."""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.options import RefineOptions


@click.command()
@click.argument("particles", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Run directory (an existing run there is resumed).")
@click.option("--iter", "iterations", default=5, show_default=True, help="Iterations.")
@click.option("--res", "res_A", type=float, default=None,
              help="Target resolution of the first iteration, A (default: from the start FSC).")
@click.option("--n-gauss", type=int, default=None, help="Gaussians per GMM (default: automatic).")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="PDB or mmCIF model to seed the GMMs (one Gaussian per non-H atom; "
                   "it must overlay a map of these particles).")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Map for the first iteration's GMMs instead of the half maps.")
@click.option("--mask", type=click.Path(dir_okay=False), default=None,
              help="Soft mask of a region: focused refinement (Gaussians outside it widened or "
                   "faded, --outside), "
                   "FSC within it reported too; with --patches, where patches go.")
@click.option("--outside", type=click.Choice(["widen", "fade"]), default="widen",
              show_default=True,
              help="Gaussians outside --mask: widen (coarse shape kept) or fade (amplitude x "
                   "mask value: the region aligned alone).")
@click.option("--sym", default="C1", show_default=True,
              help="Point group (RELION's names: Cn, Dn, T, O, I); focused and patch runs "
                   "expand to C1 and re-impose it.")
@click.option("--patches", type=click.IntRange(min=1), default=None,
              help="Patch-by-patch: K focused patch runs after the global ones, and a "
                   "composite map (8 is usual; default: global only).")
@click.option("--patch-iter", "patch_iterations", type=click.IntRange(min=1), default=3,
              show_default=True, help="Focused iterations per patch.")
@click.option("--low-cut", "low_cut_A", default=25.0, show_default=True,
              help="Lowest resolution the alignment uses, A.")
@click.option("--score", type=click.Choice(["cc", "frc"]), default="cc", show_default=True,
              help="cc: CTF-weighted correlation over all rings; frc: the paper's ring-normalised FRC.")
@click.option("--prior-deg", type=float, default=3.0, show_default=True,
              help="RMS rotation error expected of the input poses: a Gaussian prior (score cc).")
@click.option("--prior-px", type=float, default=1.0, show_default=True,
              help="RMS shift error expected of the input poses, pixels (score cc).")
@click.option("--no-prior", is_flag=True, help="Pure likelihood: no prior around the input poses.")
@click.option("--align-fsc", type=float, default=RefineOptions.align_fsc,
              help="Next target resolution where the FSC falls below this "
                   "[default: 0.9 x where it falls below 0.1].")
@click.option("--steps", type=int, default=None,
              help="Optimiser steps per particle [default: 4 Gauss-Newton (cc), 10 Adam (frc)].")
@click.option("--step-deg", type=float, default=None,
              help="Largest rotation step, degrees [default: 2 (cc), 0.5 (frc)].")
@click.option("--step-px", type=float, default=None,
              help="Largest shift step, pixels [default: 1 (cc), 0.25 (frc)].")
@click.option("--coarse-passes", type=click.IntRange(min=0), default=0, show_default=True,
              help="Alignment passes over coarser rings before the target's, for poses far "
                   "off.")
@click.option("--batch", default=16, show_default=True, help="Particles aligned at once (GPU memory).")
@click.option("--chunk", default=20000, show_default=True, help="Particles read at once (host memory).")
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Directory image paths resolve against (default: as the host does).")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
def main(particles: Path, out_dir: Path, no_prior: bool, **kwargs) -> None:
    """Refine particle poses against per-half GMMs, iterating with reconstruction and FSC."""
    from ..pipeline.run import run_refinement

    if no_prior:
        kwargs.update(prior_deg=None, prior_px=None)
    result = run_refinement(particles, out_dir, RefineOptions(**kwargs))
    click.echo(f"Gold-standard resolution: {result.start_resolution_A:.2f} A -> "
               f"{result.resolution_A:.2f} A")
    click.echo(f"Refined particles: {result.particles_star} and {result.particles_cs}")
