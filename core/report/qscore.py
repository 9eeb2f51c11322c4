"""The Q-score figure: Q per residue along each chain, one or more maps overlaid."""

from __future__ import annotations

import os
from typing import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.atomic import atomic_path
from ..io.model import Residues

# Beyond this many chains the figure would be a wall of panels; the CSV has them all.
MAX_CHAINS = 12
# Start pale, final strong, as the run's other before/after figures; one map alone is strong.
_COLOURS = ("#999999", "#3366aa", "#cc6633", "#339966")


def _colours(n: int) -> tuple[str, ...]:
    return _COLOURS[1:] if n == 1 else _COLOURS


def _chain_order(residues: Residues) -> list[str]:
    return list(dict.fromkeys(residues.chain.tolist()))


def _with_gaps(number: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaN where the numbering jumps (forward past a gap, or back, as ligands and
    waters numbered apart do), so no line is drawn across missing residues."""
    step = np.diff(number)
    jumps = np.flatnonzero((step > 1) | (step < 0)) + 1
    return (np.insert(number.astype(float), jumps, np.nan),
            np.insert(values.astype(float), jumps, np.nan))


def plot_qscore_per_chain(path_png: str | os.PathLike, residues: Residues,
                          q_by_map: Mapping[str, np.ndarray], *,
                          expected: Mapping[str, float] | None = None, title: str = "") -> None:
    """Q per residue against residue number, one panel per chain, every map overlaid.

    Parameters
    ----------
    path_png : path-like
        Output PNG, written through a temporary name.
    residues : Residues
        The model's residues (gmmrefine.io.model.residues_of).
    q_by_map : mapping
        Legend label -> (R,) Q per residue (NaN: no atom scored), in drawing order.
    expected : mapping, optional
        Legend label -> the Q expected at that map's resolution, drawn as a dashed
        line in the map's colour.
    title : str
        Figure title; the first :data:`MAX_CHAINS` chains are drawn, and the title
        says so when there are more.
    """
    chains = _chain_order(residues)
    shown = chains[:MAX_CHAINS]
    figure = Figure(figsize=(11, 1.2 + 2.0 * len(shown)), dpi=100)
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(len(shown), 1, squeeze=False)[:, 0])
    finite = np.concatenate([np.asarray(q, float)[np.isfinite(q)] for q in q_by_map.values()]
                            + [np.zeros(1)])
    low = min(0.0, float(finite.min())) - 0.05
    for ax, chain in zip(axes, shown):
        rows = np.flatnonzero(residues.chain == chain)
        for (label, q), colour in zip(q_by_map.items(), _colours(len(q_by_map))):
            x, y = _with_gaps(residues.number[rows], np.asarray(q, float)[rows])
            ax.plot(x, y, color=colour, lw=1.0, marker=".", ms=2.5, label=label)
            if expected and label in expected:
                ax.axhline(expected[label], color=colour, ls="--", lw=0.8,
                           label=f"expected for a protein: {expected[label]:.2f}"
                           if ax is axes[0] else None)
        ax.set_ylim(low, 1.0)
        ax.set_ylabel(f"chain {chain}\nQ")
        ax.grid(True, color="0.92")
    axes[-1].set_xlabel("residue number")
    axes[0].legend(loc="lower right", fontsize=8, frameon=False, ncols=2)
    more = f" (first {MAX_CHAINS} of {len(chains)} chains; all in the CSV)" \
        if len(chains) > MAX_CHAINS else ""
    if title or more:
        figure.suptitle(title + more, fontsize=11)
    figure.tight_layout()
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png")
