"""FSC curves as CSV tables: the human-facing record of a reconstruction."""

from __future__ import annotations

import csv
import io
import os

import numpy as np

from .atomic import write_text_atomic


def read_fsc_csv(path: str | os.PathLike, column: str = "fsc") -> np.ndarray:
    """One curve of a table :func:`write_fsc_csv` wrote (KeyError if it has no such column)."""
    import pandas as pd

    return pd.read_csv(path)[column].to_numpy(float)


def write_fsc_csv(path: str | os.PathLike, fsc: np.ndarray, box: int, apix: float,
                  extra: dict[str, np.ndarray] | None = None) -> None:
    """Write an FSC curve as CSV: shell, resolution_A, fsc [, one column per extra curve].

    Parameters
    ----------
    path : path-like
        Output file, written through a temporary name.
    fsc : (n,) array
        The main curve (the corrected one when a mask was used).
    box, apix : int, float
        Box size and voxel size in Angstrom; resolution_A = box * apix / shell
        ("inf" at shell 0).
    extra : dict, optional
        Further curves of the same length, column name -> values.
    """
    columns = {"fsc": np.asarray(fsc, float)}
    for name, values in (extra or {}).items():
        values = np.asarray(values, float)
        if values.shape != columns["fsc"].shape:
            raise ValueError(f"curve {name!r} has {values.shape[0]} shells; expected {len(fsc)}")
        columns[name] = values
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["shell", "resolution_A", *columns])
    for shell in range(len(columns["fsc"])):
        res = f"{box * apix / shell:.4f}" if shell > 0 else "inf"
        writer.writerow([shell, res, *(f"{c[shell]:.6f}" for c in columns.values())])
    write_text_atomic(path, buffer.getvalue())
