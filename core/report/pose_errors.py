"""Pose errors against the physical limit: each particle's error before and after refinement
beside its Cramer-Rao bound (simulated data, where the truth and the bound are known)."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.atomic import atomic_path

_START_COLOUR, _REFINED_COLOUR = "#999999", "#3366aa"


def rms_over_bound(errors: np.ndarray, bounds: np.ndarray) -> float:
    """rms error / rms bound: the bound limits the error covariance, so 1.0 is the best an
    unbiased estimator can do on average (DESIGN.md, "the physical limit")."""
    errors, bounds = np.asarray(errors, float), np.asarray(bounds, float)
    return float(np.sqrt(np.mean(errors ** 2) / np.mean(bounds ** 2)))


def plot_pose_errors_against_bound(path_png: str | os.PathLike,
                                   rotation: tuple[np.ndarray, np.ndarray, np.ndarray],
                                   shift: tuple[np.ndarray, np.ndarray, np.ndarray],
                                   title: str = "") -> None:
    """Per particle, the error of the start and refined poses against its Cramer-Rao bound.

    Parameters
    ----------
    path_png : path-like
        Output PNG, written through a temporary name.
    rotation : (bound, start error, refined error), each (n,), degrees
        Rotation bound and geodesic angle errors to the true poses.
    shift : (bound, start error, refined error), each (n,), pixels
        Shift bound and shift-error lengths.
    title : str
        Figure title.

    Notes
    -----
    Log-log axes, the bound's diagonal drawn: a particle below it did better
    than the bound in that draw (the bound limits the rms over draws, not one
    draw); each panel's title gives rms error / rms bound at start and after.
    """
    figure = Figure(figsize=(10, 4.4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, (bound, start, refined), unit in ((axes[0], rotation, "deg"),
                                               (axes[1], shift, "px")):
        bound, start, refined = (np.asarray(a, float) for a in (bound, start, refined))
        # Log axes cannot show an exact 0 (a shift error can be one): drawn at a tenth of
        # the smallest bound instead.
        floor = 0.1 * max(float(bound.min()), 1e-12)
        ax.scatter(bound, np.maximum(start, floor), s=9, color=_START_COLOUR, label="start")
        ax.scatter(bound, np.maximum(refined, floor), s=9, color=_REFINED_COLOUR, label="refined")
        values = np.concatenate([bound, np.maximum(start, floor), np.maximum(refined, floor)])
        lo, hi = values.min() / 1.3, values.max() * 1.3
        ax.plot([lo, hi], [lo, hi], color="0.3", ls="--", lw=0.9, label="error = bound")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel(f"Cramer-Rao bound ({unit})")
        ax.set_ylabel(f"error to the true pose ({unit})")
        ax.set_title(f"{'rotation' if unit == 'deg' else 'shift'}: rms error / rms bound "
                     f"{rms_over_bound(start, bound):.2f} -> {rms_over_bound(refined, bound):.2f}",
                     fontsize=10)
        ax.grid(True, color="0.92", which="both")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png")
