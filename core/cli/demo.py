"""``gmmrefine demo``: simulate a small realistic data set and run the main job on it."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from . import reconstruct, refine, simulate

FSC_PNG = "fsc.png"
POSE_ERRORS_PNG = "pose_errors.png"


def _pose_errors(path: Path, truth) -> tuple[np.ndarray, np.ndarray]:
    """Each particle's angle (deg) and shift (px) error to its true pose, by row."""
    from ..data.rotations import angle_between_deg
    from ..io.particles import read_particles

    ps = read_particles(path)
    apix = ps.output_grid()[1]
    return (angle_between_deg(ps.rotation, truth.rotation),
            np.linalg.norm(ps.shift_A - truth.shift_A, axis=1) / apix)


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
    start_err = _pose_errors(data / "particles.star", truth)
    end_err = _pose_errors(run / "particles.star", truth)
    _plot_fsc(out_dir, run, truth_dir)
    if bound:
        _plot_against_bound(out_dir / POSE_ERRORS_PNG, bound["per_particle"], start_err, end_err)
    click.echo("== summary")
    click.echo(f"gold-standard resolution: start {record['start_resolution_A']:.2f} A, refined "
               f"{record['resolution_A']:.2f} A, true poses {true_res:.2f} A")
    click.echo(f"median error to the true poses: start {np.median(start_err[0]):.2f} deg / "
               f"{np.median(start_err[1]):.2f} px, refined {np.median(end_err[0]):.2f} deg / "
               f"{np.median(end_err[1]):.2f} px"
               + (f" (Cramer-Rao bound {bound['rotation_bound_deg_median']:.2f} deg / "
                  f"{bound['shift_bound_px_median']:.2f} px)" if bound else ""))
    click.echo(f"look at {out_dir / FSC_PNG} (start, refined and true poses)"
               + (f", {out_dir / POSE_ERRORS_PNG} (errors against the bound)" if bound else "")
               + f" and {run / 'slices.png'}; refined particles: {run / 'particles.star'} and "
               f"{run / 'particles.cs'}")


def _plot_fsc(out_dir: Path, run: Path, truth_dir: Path) -> None:
    """The FSC at the start poses, the refined poses and the true poses, on one plot."""
    from ..io.mrc import read_map
    from ..io.tables import read_fsc_csv
    from ..pipeline.run_directory import FSC_CSV, RunLayout
    from ..report.plots import plot_fsc

    volume, apix = read_map(run / "map.mrc")
    curves = {"start poses": read_fsc_csv(RunLayout(run).iteration_dir(0) / FSC_CSV),
              "refined poses": read_fsc_csv(run / FSC_CSV),
              "true poses": read_fsc_csv(truth_dir / FSC_CSV)}
    plot_fsc(out_dir / FSC_PNG, curves, volume.shape[0], apix)


def _plot_against_bound(path: Path, per_particle: dict, start_err, end_err) -> None:
    """Errors of the particles the simulator bounded, before and after, against their bounds."""
    from ..report.pose_errors import plot_pose_errors_against_bound

    rows = np.asarray(per_particle["row"], int)
    plot_pose_errors_against_bound(
        path, (per_particle["rotation_bound_deg"], start_err[0][rows], end_err[0][rows]),
        (per_particle["shift_bound_px"], start_err[1][rows], end_err[1][rows]),
        title=f"{len(rows)} particles: pose error against the Cramer-Rao bound")


def _last_resolution(directory: Path) -> float:
    from ..io.mrc import read_map
    from ..io.tables import read_fsc_csv
    from ..reconstruct.fsc import resolution_at

    volume, apix = read_map(directory / "map.mrc")
    return resolution_at(read_fsc_csv(directory / "fsc.csv"), volume.shape[0], apix)
