"""Figures gmmrefine writes: FSC curves (one or one per iteration) and pose changes.

Each figure is built by a ``*_figure`` function (for a PNG, a page of a PDF
log, or a host's event log) and written by a ``plot_*`` one.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter

from ..io.atomic import atomic_path
from ..reconstruct.fsc import resolution_at

# Beyond this many curves a sequential colour map reads better than distinct
# colours (e.g. one curve per refinement iteration: early pale, late dark).
_MAX_QUALITATIVE = 6


def _colours(n: int) -> list:
    from matplotlib import colormaps

    if n <= _MAX_QUALITATIVE:
        return [colormaps["tab10"](i) for i in range(n)]
    cmap = colormaps["viridis"]
    return [cmap(0.9 * i / (n - 1)) for i in range(n)]


def _resolution_label(inverse_A: float, _pos=None) -> str:
    if inverse_A <= 0:
        return "inf"
    res = 1.0 / inverse_A
    return f"{res:.0f}" if res >= 10 else f"{res:.1f}"


def plot_fsc(path_png: str | os.PathLike, curves: dict[str, np.ndarray], box: int, apix: float,
             thresholds: tuple[float, ...] = (0.143,)) -> None:
    """Plot FSC curves against spatial frequency and write a PNG (through a temporary
    name); the arguments after the path are :func:`fsc_figure`'s."""
    save_png(fsc_figure(curves, box, apix, thresholds), path_png)


def save_png(figure: Figure, path_png: str | os.PathLike) -> None:
    """Write ``figure`` as a PNG through a temporary name."""
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png")


def fsc_figure(curves: dict[str, np.ndarray], box: int, apix: float,
               thresholds: tuple[float, ...] = (0.143,)) -> Figure:
    """FSC curves against spatial frequency, resolution in Angstrom on the top axis.

    Parameters
    ----------
    curves : dict
        Legend name -> FSC per shell 0 .. box // 2 (insertion order is kept;
        more than six curves are drawn in a sequential colour map).
    box, apix : int, float
        Box size and voxel size in Angstrom.
    thresholds : tuple of float
        Horizontal reference lines; the legend gives each curve's resolution
        at the first one.
    """
    figure = Figure(figsize=(7.5, 4.8), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    first = thresholds[0] if thresholds else 0.143
    for (name, fsc), colour in zip(curves.items(), _colours(len(curves))):
        fsc = np.asarray(fsc, float)
        inverse_A = np.arange(len(fsc)) / (box * apix)
        res = resolution_at(fsc, box, apix, first)
        ax.plot(inverse_A, fsc, color=colour, lw=1.4, label=f"{name}: {res:.2f} Å")
    for t in thresholds:
        ax.axhline(t, color="0.4", ls="--", lw=0.8)
        ax.annotate(f"{t:g}", xy=(1.0, t), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", va="center", fontsize=8, color="0.3")
    ax.axhline(0, color="0.8", lw=0.6)

    nyquist = 1.0 / (2 * apix)
    ax.set_xlim(0, nyquist)
    ax.set_ylim(min(-0.1, ax.get_ylim()[0]), 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.grid(True, color="0.92")
    # The same axis, labelled in Angstrom on top: people read resolutions.
    top = ax.secondary_xaxis("top")
    ticks = ax.get_xticks()
    top.xaxis.set_major_locator(FixedLocator([t for t in ticks if 0 < t <= nyquist]))
    top.xaxis.set_major_formatter(FuncFormatter(_resolution_label))
    top.set_xlabel("resolution (Å)")

    many = len(curves) > _MAX_QUALITATIVE
    ax.legend(loc="upper left" if many else "upper right", bbox_to_anchor=(1.06, 1.0) if many else None,
              fontsize=8 if many else 9, ncol=2 if len(curves) > 16 else 1, frameon=False)
    figure.tight_layout()
    return figure


def plot_pose_changes(path_png: str | os.PathLike, angle_deg: np.ndarray, shift_px: np.ndarray,
                      title: str = "") -> None:
    """Write :func:`pose_change_figure` as a PNG."""
    save_png(pose_change_figure(angle_deg, shift_px, title), path_png)


def pose_change_figure(angle_deg: np.ndarray, shift_px: np.ndarray, title: str = "") -> Figure:
    """Histograms of each particle's angle change (deg) and shift change (px), mean and sd shown."""
    figure = Figure(figsize=(9, 3.6))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, values, label in ((axes[0], angle_deg, "angle change (deg)"),
                              (axes[1], shift_px, "shift change (px)")):
        values = np.asarray(values, float)
        ax.hist(values, bins=60, color="#4477aa")
        ax.set_xlabel(label)
        ax.set_ylabel("particles")
        ax.set_title(f"mean {values.mean():.3g}, sd {values.std():.3g}", fontsize=10)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
