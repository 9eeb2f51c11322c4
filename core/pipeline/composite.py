"""The mask-weighted composite of focused runs, per half, with its FSC and per-region table.

Used by patch runs (pipeline.patch_run) and by ``gmmrefine composite RUN...``,
which takes any focused runs (patch runs, conf2pose runs, runs made by hand):

DIR/half1.mrc, half2.mrc, map.mrc, fsc.csv, fsc.png
                     the composite halves (each from that half's maps only)
                     and their FSC, unmasked and within the union of the masks
DIR/regions.csv      per region: run, mask centre, resolution within its mask
                     before (its first reconstruction) and after its run
DIR/comparison.png   that table as bars, and the start and final maps
DIR/composite.json   the runs, their masks and the figures
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fourier.filters import lowpass
from ..gmm.focus import mask_centroid_A
from ..gmm.patches import composite_map
from ..io.atomic import write_text_atomic
from ..io.mrc import read_map, read_mask
from ..reconstruct.fsc import fsc_curve, masked_fsc_corrected, resolution_at
from ..report import log as report_log
from ..report.plots import plot_fsc
from ..report.slices import plot_run_comparison
from .hetero_options import CompositeOptions
from .options import table_identity
from .ownership import claimed
from .run_directory import FSC_PNG, LOG, RECORD, Maps, RunLayout, read_final_maps, write_maps

log = logging.getLogger(__name__)

REGIONS_CSV = "regions.csv"
COMPARISON_PNG = "comparison.png"
COMPOSITE_RECORD = "composite.json"


@dataclass(frozen=True)
class FocusedRun:
    """One region's finished focused run: its maps, its mask and its masked resolutions."""

    name: str
    path: Path
    maps: tuple[np.ndarray, np.ndarray, np.ndarray]
    mask: np.ndarray
    before_A: float
    after_A: float


@dataclass(frozen=True)
class Composite:
    """The composite halves, full map and figures."""

    maps: Maps
    resolution_A: float
    masked_resolution_A: float


def composite_of(runs: list[FocusedRun], fill: tuple[np.ndarray, np.ndarray] | None,
                 apix: float) -> Composite:
    """Per half, sum_i M_i V_i (+ w0 fill) / (sum_i M_i + w0), from that half's maps only."""
    masks = [r.mask for r in runs]
    halves = [composite_map([r.maps[h] for r in runs], masks,
                            fill=None if fill is None else fill[h]) for h in (0, 1)]
    fsc = fsc_curve(*halves)
    union = np.clip(np.sum(masks, axis=0), 0.0, 1.0)
    masked = masked_fsc_corrected(halves[0], halves[1], union, apix).corrected
    box = halves[0].shape[0]
    return Composite(Maps(halves[0], halves[1], 0.5 * (halves[0] + halves[1]), fsc, masked),
                     resolution_at(fsc, box, apix), resolution_at(masked, box, apix))


def write_composite(out: Path, runs: list[FocusedRun], fill_maps, start_map: np.ndarray,
                    start_resolution_A: float, apix: float, title: str,
                    region_rows: list[dict] | None = None) -> Composite:
    """Compose ``runs`` and write the maps, FSC, table and comparison view into ``out``."""
    result = composite_of(runs, None if fill_maps is None else fill_maps[:2], apix)
    write_maps(out, result.maps, apix)
    curves = {"composite": result.maps.fsc, "composite, within the masks":
              result.maps.fsc_masked}
    if fill_maps is not None:
        curves = {"fill (global)": fsc_curve(fill_maps[0], fill_maps[1]), **curves}
    box = result.maps.half1.shape[0]
    plot_fsc(out / FSC_PNG, curves, box, apix)
    rows = region_rows or [{"region": r.name} for r in runs]
    _write_table(out / REGIONS_CSV, runs, rows, apix)
    table = [{"patch": row["region"], "before_A": r.before_A, "after_A": r.after_A}
             for r, row in zip(runs, rows)]
    final = lowpass(result.maps.full, apix, result.resolution_A)
    plot_run_comparison(out / COMPARISON_PNG, table,
                        lowpass(start_map, apix, start_resolution_A), final, apix,
                        masks=[r.mask for r in runs], title=title)
    for r in runs:
        log.info(f"{r.name}: {r.before_A:.2f} A -> {r.after_A:.2f} A within its mask")
    log.info(f"composite: {result.resolution_A:.2f} A, within the masks "
             f"{result.masked_resolution_A:.2f} A")
    return result


def _write_table(path: Path, runs: list[FocusedRun], rows: list[dict], apix: float) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = [k for k in rows[0] if k != "region"]
    writer.writerow(["region", "run", "centre_x_A", "centre_y_A", "centre_z_A", *extra,
                     "resolution_before_A", "resolution_after_A"])
    for r, row in zip(runs, rows):
        centre = mask_centroid_A(r.mask, apix)
        writer.writerow([row["region"], str(r.path), *(f"{c:.2f}" for c in centre),
                         *(row[k] for k in extra), f"{r.before_A:.3f}", f"{r.after_A:.3f}"])
    write_text_atomic(path, buffer.getvalue())


# --- any runs, as `gmmrefine composite` takes them ---------------------------------------------

def _record(run: Path) -> dict:
    path = run / RECORD
    if not path.is_file():
        raise InputError(f"{run}: no {RECORD}; expected a finished gmmrefine run directory")
    return json.loads(path.read_text())


def focused_run(run: Path, name: str, box: int | None = None,
                apix: float | None = None) -> FocusedRun:
    """A finished focused run directory: its final maps, its mask (from its record) and its
    resolutions within the mask before and after."""
    record = _record(run)
    mask_path = record.get("options", {}).get("mask")
    if not mask_path:
        raise InputError(f"{run}: the run has no mask; expected a focused run (refine --mask, "
                         "a patch run's patch, conf2pose)")
    maps = read_final_maps(run)
    _, run_apix = read_map(run / "half1.mrc")
    mask = read_mask(mask_path, maps[0].shape[0], run_apix)
    if box is not None and (maps[0].shape[0] != box or abs(run_apix - apix) > 1e-3 * apix):
        raise InputError(f"{run}: maps of box {maps[0].shape[0]} at {run_apix:.4g} A/px; "
                         f"expected box {box} at {apix:.4g} A/px like the other runs")
    return FocusedRun(name, run, maps, mask, float(record.get("start_masked_resolution_A", "nan")),
                      float(record.get("masked_resolution_A", "nan")))


def is_patch_run(run: Path) -> bool:
    return (run / "global").is_dir() and any(run.glob("patch_*/run.json"))


def expand_runs(runs: list[Path]) -> tuple[list[tuple[str, Path]], Path | None]:
    """Each focused run as (name, directory), a patch run's patches one by one; and a
    patch run's global run, the fill unless the user names one."""
    named, fill = [], None
    for run in runs:
        run = Path(run)
        if is_patch_run(run):
            fill = fill or run / "global"
            named += [(f"{run.name}/{p.name}", p) for p in sorted(run.glob("patch_*"))
                      if (p / RECORD).is_file()]
        else:
            named.append((run.name, run))
    return named, fill


def run_composite(runs: list[Path], out_dir: Path, options: CompositeOptions) -> Composite:
    """The composite of focused runs (patch runs expanded into their patches) into ``out_dir``."""
    out = Path(out_dir)
    if not runs:
        raise InputError("composite: no runs given; expected one or more run directories")
    with report_log.held() as early:
        named, fill_dir = expand_runs(runs)
        if options.fill is not None:
            fill_dir = Path(options.fill)
        first = focused_run(named[0][1], named[0][0])
        box = first.maps[0].shape[0]
        _, apix = read_map(named[0][1] / "half1.mrc")
        focused = [first] + [focused_run(p, n, box, apix) for n, p in named[1:]]
        if fill_dir is not None:
            fill = read_final_maps(fill_dir)
        else:
            # No global run to fill with: the runs' own mean, which no mask weights.
            fill = tuple(np.mean([r.maps[h] for r in focused], axis=0) for h in range(3))
        start_dir = fill_dir if fill_dir is not None else named[0][1]
        start = RunLayout(start_dir).iteration_map(0)
        start_res = float(_record(start_dir).get("start_resolution_A", 2 * apix))
        # The composite owns its directory (pipeline.ownership); its inputs are the runs'
        # records, which change whenever a run's maps do.
        sources = {name: path / RECORD for name, path in named}
        if fill_dir is not None:
            sources["fill"] = Path(fill_dir) / RECORD
        identity = table_identity("composite", sources, options)
        with claimed(out, identity), report_log.to_file(out / LOG) as file_log:
            early.replay(file_log)
            result = write_composite(out, focused, fill, start, start_res, apix,
                                     "composite of focused runs")
            write_text_atomic(out / COMPOSITE_RECORD, json.dumps(
                {"runs": [str(r.path.resolve()) for r in focused],
                 "fill": None if fill_dir is None else str(Path(fill_dir).resolve()),
                 "options": options.to_dict(), "resolution_A": result.resolution_A,
                 "masked_resolution_A": result.masked_resolution_A,
                 "regions": [{"region": r.name, "before_A": r.before_A, "after_A": r.after_A}
                             for r in focused]}, indent=2) + "\n")
    return result
