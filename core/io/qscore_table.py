"""Per-residue Q-scores as a CSV table: one row per residue, one Q column per map."""

from __future__ import annotations

import csv
import io
import os
from typing import Mapping

import numpy as np

from .atomic import write_text_atomic
from .model import Residues

RESIDUE_COLUMNS = ("chain", "residue_number", "insertion_code", "residue_name", "atoms")


def write_qscore_csv(path: str | os.PathLike, residues: Residues,
                     q_by_map: Mapping[str, np.ndarray]) -> None:
    """Write per-residue Q-scores: chain, residue_number, insertion_code, residue_name, atoms,
    then one column per map.

    Parameters
    ----------
    path : path-like
        Output CSV, written through a temporary name.
    residues : Residues
        The model's residues (gmmrefine.io.model.residues_of), in file order.
    q_by_map : mapping
        Column name (e.g. "q", or "q_start" and "q_final") -> (R,) Q per residue;
        NaN (no atom with a Q) is written as "nan".
    """
    columns = {name: np.asarray(values, float) for name, values in q_by_map.items()}
    for name, values in columns.items():
        if values.shape != (len(residues),):
            raise ValueError(f"column {name!r} has shape {values.shape}; expected "
                             f"({len(residues)},), one value per residue")
    counts = residues.atom_counts()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*RESIDUE_COLUMNS, *columns])
    for r in range(len(residues)):
        writer.writerow([residues.chain[r], int(residues.number[r]), residues.ins_code[r],
                         residues.name[r], int(counts[r]),
                         *(f"{values[r]:.4f}" for values in columns.values())])
    write_text_atomic(path, buffer.getvalue())


def read_qscore_csv(path: str | os.PathLike):
    """The table :func:`write_qscore_csv` wrote, as a pandas DataFrame: names as text
    (a chain called "NA" stays "NA"), numbers as numbers, "nan" as NaN."""
    import pandas as pd

    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for name in table.columns:
        if name in ("residue_number", "atoms"):
            table[name] = table[name].astype(np.int64)
        elif name not in RESIDUE_COLUMNS:
            table[name] = table[name].astype(float)
    return table
