"""`gmmrefine locres`: local-resolution map of two half maps by windowed FSC."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import InputError
from ..io.mrc import read_half_maps

PERCENTILES = (5, 25, 50, 75, 95)


@click.command()
@click.argument("half1", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("half2", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for locres.mrc and locres.png.")
@click.option("--mask", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Soft mask in [0, 1]: resolution is measured where it is >= 0.5 [default: a central sphere].")
@click.option("--window-A", "window_A", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Window diameter at half height, in A [default: 50 A as RELION, at least 16 voxels].")
@click.option("--step-px", type=click.IntRange(min=1), default=None,
              help="Sampling step in voxels [default: a quarter of the window].")
def main(half1: Path, half2: Path, out_dir: Path, mask: Path | None, window_A: float | None,
         step_px: int | None) -> None:
    """Local resolution of half maps HALF1 and HALF2 (MRC), as relion_postprocess --locres."""
    from ..io.mrc import read_mask, write_local_resolution
    from ..reconstruct.locres import (
        default_step_px,
        local_resolution,
        sampling_region,
        window_geometry,
    )
    from ..report.progress import Progress
    from ..report.slices import plot_local_resolution

    map1, map2, apix = read_half_maps(half1, half2)
    box = map1.shape[0]
    mask_map = read_mask(mask, box, apix) if mask is not None else None
    window = window_geometry(box, apix, window_A)
    step = step_px or default_step_px(window)
    click.echo(f"box {box}, {apix:.4g} A/px; window {window.diameter_A:.1f} A at half height "
               f"(crop {window.crop_box} px), sampling every {step} px")

    progress: list[Progress] = []

    def report(done: int, total: int) -> None:
        if not progress:
            progress.append(Progress(total, "local resolution", unit="points"))
        progress[0].update(done - progress[0].done)

    # Everything that can fail happens before the first file is written.
    try:
        locres = local_resolution(map1, map2, apix, mask=mask_map, window_A=window_A, step_px=step,
                                  progress=report)
    except ValueError as err:
        raise InputError(f"{mask or half1}: {err}") from None
    if progress:
        progress[0].finish()

    inside = sampling_region(box, window, mask_map)
    values = locres[inside]
    out_dir = Path(out_dir)
    write_local_resolution(out_dir / "locres.mrc", locres, apix)
    plot_local_resolution(out_dir / "locres.png", 0.5 * (map1 + map2), locres, apix, mask_map)
    where = "inside the mask" if mask is not None else "inside the central sphere"
    quantiles = np.percentile(values, PERCENTILES)
    click.echo(f"local resolution {where}: median {np.median(values):.2f} A; percentiles "
               + ", ".join(f"{p}%: {q:.2f} A" for p, q in zip(PERCENTILES, quantiles)))
    click.echo(f"wrote {out_dir / 'locres.mrc'} and {out_dir / 'locres.png'}")
