"""A finished run's logfile.pdf: its table of iterations, its FSC curves, its pose changes.

The same figures as the run's PNGs, gathered into the one file RELION's GUI
opens for a job (gmmrefine.report.logfile_pdf); every run directory gets one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..report.logfile_pdf import table_figure, write_logfile_pdf
from ..report.plots import fsc_figure, pose_change_figure

LOGFILE_PDF = "logfile.pdf"


def _cell(value, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def iteration_rows(summaries: list[dict]) -> list[dict[str, str]]:
    """One table row per iteration record (run.json's "iterations"), iteration 0 first."""
    masked = any(s.get("masked_resolution_A") is not None for s in summaries)
    rows = []
    for s in summaries:
        halves = s.get("halves", {}).values()
        rate = [h["particles_per_s"] for h in halves if "particles_per_s" in h]
        row = {"iteration": str(s["iteration"]),
               "target (A)": _cell(s.get("target_resolution_A")),
               "FSC 0.143 (A)": _cell(s.get("resolution_A"))}
        if masked:
            row["within mask (A)"] = _cell(s.get("masked_resolution_A"))
        row.update({
            "Gaussians": "/".join(str(h["n_gauss"]) for h in halves if "n_gauss" in h),
            "median change (deg)": _cell(s.get("angle_change_deg", {}).get("median")),
            "median shift (px)": _cell(s.get("shift_change_px", {}).get("median")),
            "particles/s": _cell(np.mean(rate) if rate else None, 0),
            "time (s)": _cell(s.get("seconds"), 0)})
        rows.append(row)
    return rows


def write_refinement_logfile(path: Path, summaries: list[dict], curves: dict[str, np.ndarray],
                             changes: list[tuple[str, np.ndarray, np.ndarray]], box: int,
                             apix: float, notes: list[str]) -> Path:
    """Write ``path``: the iteration table (with ``notes`` under it), the FSC curves, and
    one page of pose-change histograms per (title, angle_deg, shift_px) in ``changes``."""
    pages = [table_figure("gmmrefine: gold-standard GMM refinement", iteration_rows(summaries),
                          notes),
             fsc_figure(curves, box, apix)]
    pages += [pose_change_figure(angle, shift, title) for title, angle, shift in changes]
    write_logfile_pdf(path, pages)
    return Path(path)


def write_patch_logfile(path: Path, rows: list[dict[str, str]], curves: dict[str, np.ndarray],
                        box: int, apix: float, notes: list[str]) -> Path:
    """Write ``path`` for a patch run: the table of patches and the composite's FSC curves."""
    write_logfile_pdf(path, [table_figure("gmmrefine: patch-by-patch refinement", rows, notes),
                             fsc_figure(curves, box, apix)])
    return Path(path)
