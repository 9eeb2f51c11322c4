"""``gmmrefine demo``: simulate a small realistic data set and run the main job on it."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from . import reconstruct, refine, simulate


def _median_errors(path: Path, truth) -> tuple[float, float]:
    from ..data.rotations import angle_between_deg
    from ..io.particles import read_particles

    ps = read_particles(path)
    apix = ps.output_grid()[1]
    angle = np.median(angle_between_deg(ps.rotation, truth.rotation))
    shift = np.median(np.linalg.norm(ps.shift_A - truth.shift_A, axis=1)) / apix
    return float(angle), float(shift)


@click.command()
@click.option("--out", "out_dir", default="gmmrefine_demo", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Directory for everything.")
@click.option("--n", default=2000, show_default=True, help="Number of particles to simulate.")
@click.option("--box", default=64, show_default=True, help="Box size, pixels.")
@click.option("--apix", default=1.6, show_default=True, help="Pixel size, Angstrom.")
@click.option("--snr", default=0.3, show_default=True, help="Signal-to-noise ratio of the particles.")
@click.option("--angle-rms-deg", default=4.0, show_default=True,
              help="RMS error of the start poses, degrees.")
@click.option("--iter", "iterations", default=3, show_default=True, help="Refinement iterations.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
@click.pass_context
def main(ctx: click.Context, out_dir: Path, n: int, box: int, apix: float, snr: float,
         angle_rms_deg: float, iterations: int, seed: int) -> None:
    """Simulate particles with imperfect start poses, refine them, and compare with the truth."""
    from ..io.particles import read_particles

    data = out_dir / "data"
    click.echo(f"== simulating {n} particles into {data}")
    ctx.invoke(simulate.main, out_dir=str(data), n=n, box=box, apix=apix, snr=snr, seed=seed,
               angle_rms_deg=angle_rms_deg, crb_sample=min(n, 100))
    truth_dir = out_dir / "truth_reconstruction"
    click.echo(f"== reconstructing at the true poses into {truth_dir} (what perfect poses give)")
    ctx.invoke(reconstruct.main, particles=data / "truth.star", out_dir=truth_dir)
    run = out_dir / "refine"
    click.echo(f"== refining the start poses into {run}")
    ctx.invoke(refine.main, particles=data / "particles.star", out_dir=run, iterations=iterations)

    truth = read_particles(data / "truth.star")
    record = json.loads((run / "run.json").read_text())
    true_res = _last_resolution(truth_dir)
    bound = json.loads((data / "truth.json").read_text()).get("cramer_rao") or {}
    start_err = _median_errors(data / "particles.star", truth)
    end_err = _median_errors(run / "particles.star", truth)
    click.echo("== summary")
    click.echo(f"gold-standard resolution: start {record['start_resolution_A']:.2f} A, refined "
               f"{record['resolution_A']:.2f} A, true poses {true_res:.2f} A")
    click.echo(f"median error to the true poses: start {start_err[0]:.2f} deg / {start_err[1]:.2f} px, "
               f"refined {end_err[0]:.2f} deg / {end_err[1]:.2f} px"
               + (f" (Cramer-Rao bound {bound['rotation_bound_deg_median']:.2f} deg / "
                  f"{bound['shift_bound_px_median']:.2f} px)" if bound else ""))
    click.echo(f"look at {run / 'fsc.png'} and {run / 'pose_changes.png'}; refined particles: "
               f"{run / 'particles.star'} and {run / 'particles.cs'}")


def _last_resolution(directory: Path) -> float:
    import pandas as pd

    from ..io.mrc import read_map
    from ..reconstruct.fsc import resolution_at

    table = pd.read_csv(directory / "fsc.csv")
    volume, apix = read_map(directory / "map.mrc")
    return resolution_at(table["fsc"].to_numpy(float), volume.shape[0], apix)
