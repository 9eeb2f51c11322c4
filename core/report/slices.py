"""Central slices of maps: start and final side by side, local resolution, a patch-by-patch run.

Slices are the three central orthogonal planes of a [z, y, x] map, each
drawn as a person looks at a map: xy seen down z, xz and yz with z up.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..io.atomic import atomic_path

# (label, function of a [z, y, x] array giving the central plane as [row, column] with row 0 at the bottom)
_PLANES = (
    ("xy (z = centre)", lambda v: v[v.shape[0] // 2, :, :]),
    ("xz (y = centre)", lambda v: v[:, v.shape[1] // 2, :]),
    ("yz (x = centre)", lambda v: v[:, :, v.shape[2] // 2]),
)

# Blue for fine, red for coarse, as ChimeraX's and RELION's local-resolution colourings.
_LOCRES_CMAP = "turbo"
_BEFORE_COLOUR, _AFTER_COLOUR = "#bbbbbb", "#3366aa"


def _grey_limits(*volumes: np.ndarray) -> tuple[float, float]:
    """One grey scale for all central slices: 1st to 99.5th percentile of their values."""
    values = np.concatenate([np.ravel(plane(np.asarray(v))) for v in volumes for _, plane in _PLANES])
    lo, hi = np.percentile(values, [1.0, 99.5])
    return float(lo), float(hi) if hi > lo else float(lo) + 1.0


def _show_slice(ax, image: np.ndarray, apix: float, **kwargs):
    box = image.shape[0]
    lo, hi = -(box // 2) * apix, (box - box // 2) * apix
    extent = (lo, hi, lo, hi)
    handle = ax.imshow(image, origin="lower", extent=extent, interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    return handle, extent


def plot_local_resolution(path_png: str | os.PathLike, volume: np.ndarray, locres: np.ndarray, apix: float,
                          mask: np.ndarray | None = None) -> None:
    """Three central slices of a map in grey with its local resolution as a colour overlay.

    Parameters
    ----------
    path_png : path-like
        Output PNG, written through a temporary name.
    volume : (B, B, B) array
        The map (e.g. the mean of the half maps), indexed [z, y, x].
    locres : (B, B, B) array
        Local resolution in Angstrom.
    apix : float
        Voxel size in Angstrom (scale bar in the axes' extent).
    mask : (B, B, B) array, optional
        Only voxels with mask >= 0.5 are coloured; the colour scale spans the
        2nd to 98th percentile of the local resolution there.
    """
    volume, locres = np.asarray(volume, float), np.asarray(locres, float)
    inside = np.ones(volume.shape, bool) if mask is None else np.asarray(mask) >= 0.5
    values = locres[inside] if inside.any() else locres.ravel()
    vmin, vmax = np.percentile(values, [2.0, 98.0])
    vmax = vmax if vmax > vmin else vmin + 0.1
    grey_lo, grey_hi = _grey_limits(volume)

    figure = Figure(figsize=(12, 4.4), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3)
    for ax, (label, plane) in zip(axes, _PLANES):
        _show_slice(ax, plane(volume), apix, cmap="gray", vmin=grey_lo, vmax=grey_hi)
        # Colour only inside the mask, half transparent, so the density stays readable beneath.
        overlay = np.ma.masked_where(~plane(inside), plane(locres))
        colour, _ = _show_slice(ax, overlay, apix, cmap=_LOCRES_CMAP, vmin=vmin, vmax=vmax, alpha=0.55)
        ax.set_title(label, fontsize=10)
    bar = figure.colorbar(colour, ax=list(axes), shrink=0.85, pad=0.02)
    bar.set_label("local resolution (Å)")
    box = volume.shape[0]
    figure.suptitle(f"local resolution: median {np.median(values):.2f} Å "
                    f"(5-95%: {np.percentile(values, 5):.2f}-{np.percentile(values, 95):.2f} Å); "
                    f"box {box}, {apix:.3g} Å/px", fontsize=11)
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png")


def _check_patch_table(patch_table: Sequence[Mapping]) -> list[tuple[str, float, float]]:
    rows = []
    for i, row in enumerate(patch_table):
        try:
            name, before, after = str(row["patch"]), float(row["before_A"]), float(row["after_A"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"patch table row {i}: {row!r}; expected keys patch, before_A, after_A "
                             "with numbers in Angstrom") from None
        if not (np.isfinite(before) and np.isfinite(after) and before > 0 and after > 0):
            raise ValueError(f"patch table row {i} ({name}): resolutions {before}, {after}; "
                             "expected positive Angstrom values")
        rows.append((name, before, after))
    if not rows:
        raise ValueError("patch table is empty; expected one row per patch")
    return rows


def _patch_masks(masks, names: list[str]) -> list[tuple[str, np.ndarray]]:
    if masks is None:
        return []
    if isinstance(masks, Mapping):
        return [(str(name), np.asarray(m)) for name, m in masks.items()]
    return [(name, np.asarray(m)) for name, m in zip(names, masks)]


def _draw_patch_bars(ax, rows: list[tuple[str, float, float]], colours: dict[str, tuple]) -> None:
    names = [r[0] for r in rows]
    before = np.array([r[1] for r in rows])
    after = np.array([r[2] for r in rows])
    x = np.arange(len(rows))
    width = 0.38
    ax.bar(x - width / 2, before, width, color=_BEFORE_COLOUR, label="before")
    ax.bar(x + width / 2, after, width, color=_AFTER_COLOUR, label="after")
    for xi, b, a in zip(x, before, after):
        # The change in percent of the starting value: finer resolution is a negative change.
        ax.annotate(f"{a:.2f} Å\n({100 * (a - b) / b:+.0f}%)", xy=(xi + width / 2, a), xytext=(0, 2),
                    textcoords="offset points", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=30 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center")
    for tick, name in zip(ax.get_xticklabels(), names):
        if name in colours:
            tick.set_color(colours[name])
    ax.set_ylabel("resolution (Å), lower is better")
    ax.set_ylim(0, 1.35 * max(before.max(), after.max()))
    ax.grid(True, axis="y", color="0.92")
    ax.set_axisbelow(True)
    ax.legend(loc="upper right", frameon=False, fontsize=9, ncols=2)


def plot_run_comparison(path_png: str | os.PathLike, patch_table: Sequence[Mapping], initial_map: np.ndarray,
                        final_map: np.ndarray, apix: float, *,
                        masks: Mapping[str, np.ndarray] | Sequence[np.ndarray] | None = None,
                        title: str = "") -> None:
    """Per-patch resolution before and after refinement, and the maps' central slices side by side.

    Parameters
    ----------
    path_png : path-like
        Output PNG, written through a temporary name.
    patch_table : sequence of dict
        One row per patch: {"patch": name, "before_A": float, "after_A": float}.
    initial_map, final_map : (B, B, B) arrays
        Maps before and after refinement, drawn on one grey scale.
    apix : float
        Voxel size in Angstrom.
    masks : dict name -> (B, B, B) array, or a sequence in ``patch_table`` order, optional
        Patch masks; their 0.5 contours are drawn on every slice in the
        colour of the patch's label.
    title : str
        Figure title.

    Raises
    ------
    ValueError
        On a malformed table or maps of different boxes.
    """
    rows = _check_patch_table(patch_table)
    initial_map, final_map = np.asarray(initial_map, float), np.asarray(final_map, float)
    if initial_map.shape != final_map.shape or initial_map.ndim != 3:
        raise ValueError(f"initial and final maps have shapes {initial_map.shape} and {final_map.shape}; "
                         "expected one 3D box")
    patch_masks = _patch_masks(masks, [r[0] for r in rows])
    for name, m in patch_masks:
        if m.shape != initial_map.shape:
            raise ValueError(f"mask of patch {name}: shape {m.shape}; expected {initial_map.shape}")
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    colours = {name: cmap(i % 10) for i, (name, _) in enumerate(patch_masks)}

    figure = Figure(figsize=(12, 11), dpi=100)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(3, 3, height_ratios=(1.0, 1.15, 1.15))
    _draw_patch_bars(figure.add_subplot(grid[0, :]), rows, colours)
    _draw_slice_rows(figure, grid, 1, {"initial": initial_map, "final": final_map}, apix,
                     [(m, colours[name]) for name, m in patch_masks])
    if title:
        figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png")


def _draw_slice_rows(figure, grid, first_row: int, volumes: Mapping[str, np.ndarray], apix: float,
                     contours: Sequence[tuple[np.ndarray, object]] = ()) -> None:
    """One row of the three central slices per map, all on one grey scale, with the 0.5
    contour of each (mask, colour) drawn where it crosses a slice."""
    grey_lo, grey_hi = _grey_limits(*volumes.values())
    for r, (label, volume) in enumerate(volumes.items(), start=first_row):
        for c, (plane_label, plane) in enumerate(_PLANES):
            ax = figure.add_subplot(grid[r, c])
            _, extent = _show_slice(ax, plane(volume), apix, cmap="gray", vmin=grey_lo,
                                    vmax=grey_hi)
            for mask, colour in contours:
                section = plane(mask)
                if section.min() < 0.5 <= section.max():
                    ax.contour(section, levels=[0.5], colors=[colour], linewidths=1.0,
                               extent=extent, origin="lower")
            ax.set_title(f"{label}: {plane_label}", fontsize=10)


def plot_map_slices(path_png: str | os.PathLike, volumes: Mapping[str, np.ndarray], apix: float, *,
                    title: str = "") -> None:
    """The three central orthogonal slices of each map, one row per map, one grey scale.

    Parameters
    ----------
    path_png : path-like
        Output PNG, written through a temporary name.
    volumes : mapping
        Row label -> (B, B, B) map indexed [z, y, x], in drawing order (e.g.
        start and final, each low-passed to its own resolution).
    apix : float
        Voxel size in Angstrom.
    title : str
        Figure title.

    Raises
    ------
    ValueError
        When there is no map, or the maps are not 3D of one shape.
    """
    volumes = {label: np.asarray(v, float) for label, v in volumes.items()}
    shapes = {v.shape for v in volumes.values()}
    if not volumes or len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"maps of shapes {sorted(shapes)}; expected one or more 3D maps of "
                         "one box")
    figure = Figure(figsize=(12, 0.6 + 4.0 * len(volumes)), dpi=100)
    FigureCanvasAgg(figure)
    _draw_slice_rows(figure, figure.add_gridspec(len(volumes), 3), 0, volumes, apix)
    if title:
        figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    with atomic_path(path_png) as tmp:
        figure.savefig(tmp, format="png")
