"""`gmmrefine simulate`: a particle data set with known truth and its Cramer-Rao bound."""

from __future__ import annotations

import click

from ..report.progress import Progress
from ..simulate.dataset import simulate_dataset


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Output directory (created if needed).")
@click.option("--n", default=4000, show_default=True, help="Number of particles.")
@click.option("--box", default=96, show_default=True, help="Box size, pixels (even).")
@click.option("--apix", default=1.3, show_default=True, help="Pixel size, Angstrom.")
@click.option("--snr", default=0.05, show_default=True,
              help="Signal variance over the footprint (before CTF) / noise variance; inf: no noise.")
@click.option("--angle-rms-deg", default=3.0, show_default=True,
              help="RMS rotation error of the start poses.")
@click.option("--shift-rms-px", default=0.8, show_default=True,
              help="RMS 2D shift error of the start poses, pixels.")
@click.option("--flexible", is_flag=True, help="Turn the domain about its hinge per particle.")
@click.option("--flex-amplitude-A", "flex_amplitude_A", default=10.0, show_default=True,
              help="Travel of the domain tip over the range of motion, Angstrom.")
@click.option("--bfactor", "bfactor_A2", default=20.0, show_default=True,
              help="B-factor of every atom, A^2.")
@click.option("--seed", default=0, show_default=True, help="Random seed (model and data).")
@click.option("--crb-sample", default=200, show_default=True,
              help="Particles sampled for the Cramer-Rao bound (0: skip).")
@click.option("--sym", default="C1", show_default=True,
              help="Point group of a symmetric assembly of smaller subunits (RELION's names "
                   "and axes: Cn, Dn, T, O, I); C1: the default asymmetric model.")
def main(out_dir: str, n: int, box: int, apix: float, snr: float, angle_rms_deg: float,
         shift_rms_px: float, flexible: bool, flex_amplitude_A: float, bfactor_A2: float,
         seed: int, crb_sample: int, sym: str) -> None:
    """Simulate particles of a ~90 kDa model with known poses, CTF and noise."""
    progress = Progress(n, "simulate")
    truth = simulate_dataset(out_dir, progress=progress, n=n, box=box, apix=apix, snr=snr,
                             angle_rms_deg=angle_rms_deg, shift_rms_px=shift_rms_px,
                             flexible=flexible, flex_amplitude_A=flex_amplitude_A,
                             bfactor_A2=bfactor_A2, seed=seed, crb_sample=crb_sample, sym=sym)
    click.echo(f"wrote {out_dir}: " + ", ".join(truth["files"]))
    model = truth["model"]
    if "sym" in model:
        click.echo(f"model: {model['sym']} assembly of {model['copies']} subunits, "
                   f"{model['n_atoms']} atoms, {model['mass_kda']:.1f} kDa, "
                   f"radius {model['radius_A']:.0f} A")
    else:
        click.echo(f"model: {model['n_atoms']} atoms, {model['mass_kda']:.1f} kDa, "
                   f"domain {100 * model['domain_mass_fraction']:.0f}% of the mass")
    realised = truth["snr_realised"]
    click.echo(f"SNR requested {snr:g}, realised "
               f"{'inf' if realised is None else f'{realised:.4f}'}; noise sd "
               f"{truth['noise_sd']:.4g} (model units; 1 on disk)")
    crb = truth["cramer_rao"]
    if crb:
        click.echo(f"Cramer-Rao bound, median over {crb['n_sampled']} particles: rotation "
                   f"{crb['rotation_bound_deg_median']:.2f} deg "
                   f"({crb['rotation_bound_per_axis_deg_median']:.2f} deg per axis), shift "
                   f"{crb['shift_bound_px_median']:.2f} px")
    click.echo(f"took {truth['total_seconds']:.1f} s (rendering {truth['render_seconds']:.1f} s)")
