"""`gmmrefine fsc`: gold-standard FSC of two half maps, optionally mask-corrected."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import InputError
from ..io.mrc import read_half_maps, read_mask
from ..io.tables import write_fsc_csv
from ..reconstruct.fsc import fsc_curve, masked_fsc_corrected, resolution_at
from ..report.plots import plot_fsc

THRESHOLD = 0.143


def _output_prefix(out: str | None, out_dir: str | None) -> Path:
    if out and out_dir:
        raise click.UsageError("give --out or --out-dir, not both")
    if out_dir:
        return Path(out_dir) / "fsc"
    return Path(out or "fsc")



@click.command()
@click.argument("half1", type=click.Path(dir_okay=False))
@click.argument("half2", type=click.Path(dir_okay=False))
@click.option("--mask", type=click.Path(dir_okay=False), default=None,
              help="Soft mask in [0, 1]: adds the masked and phase-randomisation-corrected FSC.")
@click.option("--out", default=None, help="Output prefix: writes PREFIX.csv and PREFIX.png [default: fsc].")
@click.option("--out-dir", default=None, help="Output directory: writes DIR/fsc.csv and DIR/fsc.png.")
@click.option("--seed", default=0, show_default=True, help="Seed of the phase randomisation.")
def main(half1: str, half2: str, mask: str | None, out: str | None, out_dir: str | None, seed: int) -> None:
    """Gold-standard FSC between half maps HALF1 and HALF2 (MRC)."""
    prefix = _output_prefix(out, out_dir)
    map1, map2, apix = read_half_maps(half1, half2)
    box = map1.shape[0]
    if mask is None:
        fsc = fsc_curve(map1, map2)
        extra = {}
        plotted = {"FSC": fsc}
    else:
        mask_map = read_mask(mask, box, apix)
        try:
            result = masked_fsc_corrected(map1, map2, mask_map, apix, seed=seed)
        except InputError as err:
            raise InputError(f"{half1}, {half2}: {err}") from None
        fsc = result.corrected
        extra = {"fsc_unmasked": result.unmasked, "fsc_masked": result.masked,
                 "fsc_randomised": result.phase_randomised_masked, "fsc_corrected": result.corrected}
        plotted = {"unmasked": result.unmasked, "masked": result.masked,
                   "phase-randomised masked": result.phase_randomised_masked,
                   "corrected": result.corrected}
        shell = result.randomisation_shell
        click.echo(f"phase randomisation from: {box * apix / shell:.2f} A (shell {shell})")
        for name in ("unmasked", "masked"):
            click.echo(f"{name} resolution (FSC = {THRESHOLD}): "
                       f"{resolution_at(extra['fsc_' + name], box, apix, THRESHOLD):.2f} A")
        if resolution_at(result.unmasked, box, apix) < resolution_at(result.corrected, box, apix):
            click.echo("warning: the unmasked FSC extends beyond the corrected one; check the mask",
                       err=True)

    csv_path, png_path = prefix.with_name(prefix.name + ".csv"), prefix.with_name(prefix.name + ".png")
    write_fsc_csv(csv_path, fsc, box, apix, extra)
    plot_fsc(png_path, plotted, box, apix, thresholds=(THRESHOLD,))
    label = "corrected resolution" if mask else "resolution"
    click.echo(f"{label} (FSC = {THRESHOLD}): {resolution_at(fsc, box, apix, THRESHOLD):.2f} A")
    click.echo(f"wrote {csv_path} and {png_path}")
