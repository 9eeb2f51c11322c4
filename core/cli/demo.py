"""``gmmrefine demo``: simulate a small realistic data set and run the main job on it."""

from __future__ import annotations

from pathlib import Path

import click

from . import reconstruct, simulate


@click.command()
@click.option("--out", "out_dir", default="gmmrefine_demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Directory for everything.")
@click.option("--n", default=2000, show_default=True, help="Number of particles to simulate.")
@click.option("--box", default=64, show_default=True, help="Box size, pixels.")
@click.option("--apix", default=1.6, show_default=True, help="Pixel size, Angstrom.")
@click.option("--snr", default=0.1, show_default=True, help="Signal-to-noise ratio of the particles.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.pass_context
def main(ctx: click.Context, out_dir: Path, n: int, box: int, apix: float, snr: float,
         seed: int) -> None:
    """Simulate particles with imperfect start poses, then reconstruct and measure them."""
    data = out_dir / "data"
    click.echo(f"== simulating {n} particles into {data}")
    ctx.invoke(simulate.main, out_dir=str(data), n=n, box=box, apix=apix, snr=snr, seed=seed,
               crb_sample=min(n, 100))
    start = out_dir / "start_reconstruction"
    click.echo(f"== reconstructing from the start poses into {start}")
    ctx.invoke(reconstruct.main, particles=data / "particles.star", out_dir=start)
    truth = out_dir / "truth_reconstruction"
    click.echo(f"== reconstructing from the true poses into {truth} (what perfect poses give)")
    ctx.invoke(reconstruct.main, particles=data / "truth.star", out_dir=truth)
    click.echo(f"== done: look at {start / 'fsc.png'} and {truth / 'fsc.png'}")
