"""The latent space of a heterogeneity run, drawn: principal components per half."""

from __future__ import annotations

import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.atomic import atomic_path


def plot_latent_pca(path_png: str | os.PathLike, scores: np.ndarray, explained: np.ndarray,
                    title: str) -> None:
    """Scatter of the first two principal components, and a histogram of the first.

    scores (n, >= 1) principal-component coordinates; explained the share of the
    variance each component holds.
    """
    scores = np.asarray(scores, float)
    fig = Figure(figsize=(9, 4))
    FigureCanvasAgg(fig)
    ax_scatter, ax_hist = fig.subplots(1, 2)
    second = scores[:, 1] if scores.shape[1] > 1 else np.zeros(len(scores))
    ax_scatter.scatter(scores[:, 0], second, s=3, alpha=0.4, linewidths=0)
    ax_scatter.set_xlabel(f"PC1 ({100 * explained[0]:.0f}% of the variance)")
    ax_scatter.set_ylabel(f"PC2 ({100 * explained[1]:.0f}%)" if len(explained) > 1 else "")
    ax_hist.hist(scores[:, 0], bins=50)
    ax_hist.set_xlabel("PC1")
    ax_hist.set_ylabel("particles")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
