"""``gmmrefine qscore``: Q-score per residue of an atomic model in a map (Pintilie 2020)."""

from __future__ import annotations

from pathlib import Path

import click

from ..pipeline.qscore import QSCORE_CSV, QSCORE_PNG, QscoreOptions
from .flags import declared_flags


@click.command()
@click.argument("map_path", metavar="MAP", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("model", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help=f"Output directory for {QSCORE_CSV} and {QSCORE_PNG}.")
@declared_flags(QscoreOptions)
def main(map_path: Path, model: Path, out_dir: Path, **values) -> None:
    """Q-score of each residue of MODEL (PDB or mmCIF, fitted to MAP with MRC origin 0) in MAP."""
    from ..pipeline.qscore import run_qscore

    run_qscore(map_path, model, out_dir, QscoreOptions(**values))
    click.echo(f"wrote {out_dir / QSCORE_CSV} and {out_dir / QSCORE_PNG}")
