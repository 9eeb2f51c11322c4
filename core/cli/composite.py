"""``gmmrefine composite``: the mask-weighted composite of focused runs."""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.hetero_options import CompositeOptions
from .flags import declared_flags


@click.command()
@click.argument("runs", nargs=-1, required=True,
                type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output directory for the composite maps, FSC and per-region table.")
@declared_flags(CompositeOptions)
def main(runs: tuple[Path, ...], out_dir: Path, **values) -> None:
    """Compose the final maps of focused RUNS (patch runs, conf2pose runs, `refine --mask`
    runs) per half, each weighted by its mask; FSC of the composite halves."""
    options = CompositeOptions(**values)
    from ..pipeline.composite import run_composite

    result = run_composite(list(runs), out_dir, options)
    click.echo(f"Composite: {result.resolution_A:.2f} A (within the masks "
               f"{result.masked_resolution_A:.2f} A); maps in {out_dir}")
